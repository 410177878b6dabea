using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels.Dense;

/// <summary>When a decode matvec pulls the next projection's weights into L2 (<see cref="WeightPrefetch"/>).</summary>
public enum PrefetchPoint
{
    /// <summary>The grid's last wave, as each warp finishes its rows: the lines arrive while the grid drains and through
    /// the gap between launches, after the current matrix has streamed through L2.</summary>
    End,

    /// <summary>The grid's first wave, before its own loads: the whole launch overlaps the pull, which competes with
    /// the current matrix for HBM (spare in the small matvecs) and for L2 (the current matrix streams after it).</summary>
    Start,
}

/// <summary>
/// How much of the next projection's weights each decode matvec pulls into L2, and when (<see cref="L2Prefetch"/>).
/// </summary>
/// <param name="Bytes">Bytes from the start of the next projection's matrix (whole 128-byte lines; at most the matrix).</param>
/// <param name="At">Which of the grid's warps issue the prefetches.</param>
public sealed record WeightPrefetch(long Bytes, PrefetchPoint At = PrefetchPoint.End)
{
    /// <summary>Parses <c>MiB</c> or <c>start:MiB</c> (e.g. <c>8</c>, <c>start:16</c>), as the benchmark options give it.</summary>
    public static WeightPrefetch Parse(string text)
    {
        var at = PrefetchPoint.End;
        string mib = text;
        if (text.StartsWith("start:", StringComparison.Ordinal)) (at, mib) = (PrefetchPoint.Start, text["start:".Length..]);
        else if (text.StartsWith("end:", StringComparison.Ordinal)) mib = text["end:".Length..];
        if (!int.TryParse(mib, out int m) || m <= 0)
            throw new ArgumentException($"weight prefetch '{text}': expected a positive number of MiB, optionally after start: or end: (e.g. 8, start:16)");
        return new WeightPrefetch((long)m << 20, at);
    }

    /// <summary>This prefetch, or a clear error when its size is not positive.</summary>
    public WeightPrefetch Validated()
    {
        if (Bytes <= 0) throw new ArgumentOutOfRangeException(nameof(Bytes), Bytes, "weight prefetch: Bytes must be positive (null options mean none)");
        return this;
    }

    public override string ToString() => $"{(Bytes % (1 << 20) == 0 ? $"{Bytes >> 20} MiB" : $"{Bytes} B")} at {At.ToString().ToLowerInvariant()}";
}

/// <summary>
/// The first bytes of the next projection's weights, pulled into L2 by one wave of a decode matvec's warps
/// (<c>prefetch.L2</c>, one per 128-byte line: no registers, no wait).
/// <para>Why: at batch 1 a small model's step is a chain of short launches (TinyLlama: five per layer, 8–19 µs each
/// for 8–47 MB, 1.3–2.4 TB/s in run 12), each of which starts with its warps waiting for their first weight loads from
/// HBM while the one before it drains. The next weights do not depend on anything the current launch computes, so its
/// warps can request them while the grid runs or drains and through the gap between launches; the next launch's first
/// loads then hit L2. <see cref="DenseKernels.PrefetchWarpsPerSm"/> warps per SM of the last wave
/// (<see cref="PrefetchPoint.End"/>) or the first (<see cref="PrefetchPoint.Start"/>) share the lines.</para>
/// <para>Off by default (<see cref="Runtime.ModelOptions.WeightPrefetch"/>) until a GPU run measures it
/// (<c>report --sections copy,e2e --prefetch-weights 8,16,start:8</c>). On ILGPU's CPU accelerator it does nothing.</para>
/// </summary>
public struct L2Prefetch
{
    /// <summary>Bytes per L2 line: one prefetch each.</summary>
    public const int LineBytes = 128;

    /// <summary>The device address of the next projection's first weight (ILGPU keeps a view's address to itself, so the
    /// host passes the buffer's).</summary>
    public long Next;

    /// <summary>Lines of <see cref="Next"/> to pull; 0: none.</summary>
    public long Lines;

    /// <summary>Warps FirstWarp … EndWarp − 1 of the grid split the lines between them.</summary>
    public int FirstWarp, EndWarp;

    /// <summary>1: they issue them before their own loads (<see cref="PrefetchPoint.Start"/>); 0: after (an int, since
    /// ILGPU passes only blittable fields).</summary>
    public int AtStart;

    /// <summary>Nothing to pull: the matvec runs as it would without this argument.</summary>
    public static L2Prefetch None => default;

    /// <summary>Warp <paramref name="warp"/>'s lanes request their share of the lines, if it is one of the sharers and
    /// this is the point (<paramref name="starting"/>: before the warp's loads; else after it has used them). Sharer s
    /// takes 32 neighbouring lines (4 KB) from line 32s, then the same every 32 × sharers lines: no division, which at
    /// 64 bits would cost the warp a long instruction sequence before its own loads.</summary>
    public readonly void Issue(int warp, int lane, bool starting)
    {
        if (!CudaAsm.IsSupported || starting != (AtStart != 0)) return; // the CPU accelerator has no L2 to warm
        if (warp < FirstWarp || warp >= EndWarp) return;
        long stride = (long)(EndWarp - FirstWarp) * Warp.WarpSize;
        for (long line = (long)(warp - FirstWarp) * Warp.WarpSize + lane; line < Lines; line += stride)
            CudaAsm.Emit("prefetch.L2 [%0];", Next + line * LineBytes);
    }
}
