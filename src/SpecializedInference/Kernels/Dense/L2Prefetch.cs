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
/// What each decode matvec pulls into L2 ahead of its own loads (<see cref="L2Prefetch"/>): the first bytes of the next
/// projection's weights, its own rows past the first load step, or both.
/// </summary>
/// <param name="Bytes">Bytes from the start of the next projection's matrix (whole 128-byte lines; at most the matrix); 0: none.</param>
/// <param name="At">Which of the grid's warps issue the next matrix's prefetches.</param>
/// <param name="OwnRows">Each warp first requests the lines of its own rows that its later load steps read, then loads its
/// first step: the row costs one HBM round trip and L2 round trips after it, where each step waited for HBM.</param>
public sealed record WeightPrefetch(long Bytes, PrefetchPoint At = PrefetchPoint.End, bool OwnRows = false)
{
    /// <summary>A warp's own rows only (<c>rows</c>).</summary>
    public static WeightPrefetch Rows { get; } = new(0, OwnRows: true);

    /// <summary>Parses <c>MiB</c> or <c>start:MiB</c> of the next matrix, <c>rows</c>, or both joined by <c>+</c> (e.g.
    /// <c>8</c>, <c>start:16</c>, <c>rows</c>, <c>rows+start:8</c>), as the benchmark options give it.</summary>
    public static WeightPrefetch Parse(string text)
    {
        var parts = text.Split('+');
        bool rows = parts.Contains("rows");
        var next = parts.Where(p => p != "rows").ToArray();
        if (next.Length == 0 && rows && parts.Length == 1) return Rows;
        if (next.Length != 1 || parts.Length > 2)
            throw new ArgumentException($"weight prefetch '{text}': {Expected}");
        var at = PrefetchPoint.End;
        string mib = next[0];
        if (mib.StartsWith("start:", StringComparison.Ordinal)) (at, mib) = (PrefetchPoint.Start, mib["start:".Length..]);
        else if (mib.StartsWith("end:", StringComparison.Ordinal)) mib = mib["end:".Length..];
        if (!int.TryParse(mib, out int m) || m <= 0)
            throw new ArgumentException($"weight prefetch '{text}': {Expected}");
        return new WeightPrefetch((long)m << 20, at, rows);
    }

    private const string Expected = "expected a positive number of MiB of the next matrix, optionally after start: or end: (e.g. 8, start:16), " +
        "or rows (each warp's own rows), or both joined by + (rows+start:8)";

    /// <summary>This prefetch, or a clear error when it pulls nothing or its size is negative.</summary>
    public WeightPrefetch Validated()
    {
        if (Bytes < 0 || (Bytes == 0 && !OwnRows))
            throw new ArgumentOutOfRangeException(nameof(Bytes), Bytes, "weight prefetch: Bytes must be positive, or 0 with OwnRows (null options mean none)");
        return this;
    }

    public override string ToString()
    {
        string next = Bytes % (1 << 20) == 0 ? $"{Bytes >> 20} MiB" : $"{Bytes} B";
        string nextAt = $"{next} at {At.ToString().ToLowerInvariant()}";
        return (OwnRows, Bytes > 0) switch
        {
            (true, true) => $"own rows + {nextAt}",
            (true, false) => "own rows",
            _ => nextAt,
        };
    }
}

/// <summary>
/// The first bytes of the next projection's weights, pulled into L2 by one wave of a decode matvec's warps, and each
/// warp's own rows past its first load step (<c>prefetch.L2</c>, one per 128-byte line: no registers, no wait).
/// <para>Why: at batch 1 a small model's step is a chain of short launches (TinyLlama: five per layer, 8–19 µs each
/// for 8–47 MB, 1.3–2.4 TB/s in run 12), each of which starts with its warps waiting for their first weight loads from
/// HBM while the one before it drains. The next weights do not depend on anything the current launch computes, so its
/// warps can request them while the grid runs or drains and through the gap between launches; the next launch's first
/// loads then hit L2. <see cref="DenseKernels.PrefetchWarpsPerSm"/> warps per SM of the last wave
/// (<see cref="PrefetchPoint.End"/>) or the first (<see cref="PrefetchPoint.Start"/>) share the lines.</para>
/// <para>Own rows: a warp's row is a chain of load steps (TinyLlama's qkv: 4 steps of 1 KB per 4 KB row pair at the
/// default depth), each a round trip to HBM, because a deeper step costs registers and with them occupancy (run 14).
/// A prefetch holds no register, so the warp can request every later step's lines at once, before its first step's
/// loads: the HBM latency is paid once per row and the later steps wait for L2.</para>
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

    /// <summary>The device address of the matrix the matvec reads (for <see cref="IssueRow"/>).</summary>
    public long Own;

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

    /// <summary>The lane's share (under <see cref="OwnRowPrefetch"/>) of the lines of the row at chunk <paramref name="rowChunk"/> (<paramref name="chunks"/>
    /// long) past its first <paramref name="firstStep"/> chunks, which the warp's first load step reads itself: lane l
    /// takes lines l, l + 32, …, so a 4 KB row's remaining lines go out in one instruction per lane.</summary>
    public readonly void IssueRow(long rowChunk, int firstStep, int chunks, int lane)
    {
        if (!CudaAsm.IsSupported) return; // the CPU accelerator has no L2 to warm
        var (first, end) = RowLines(Own, rowChunk, firstStep, chunks);
        for (long line = first + (long)lane * LineBytes; line < end; line += Warp.WarpSize * LineBytes)
            CudaAsm.Emit("prefetch.L2 [%0];", line);
    }

    /// <summary>The bytes [<c>First</c>, <c>End</c>) to pull for a row of a matrix at address <paramref name="matrix"/>:
    /// from the line holding the first chunk past the first step to the row's end (empty when the first step is the
    /// whole row).</summary>
    public static (long First, long End) RowLines(long matrix, long rowChunk, int firstStep, int chunks)
    {
        const int chunkBytes = 16;
        long end = matrix + (rowChunk + chunks) * chunkBytes;
        if (firstStep >= chunks) return (end, end);
        long from = matrix + (rowChunk + firstStep) * chunkBytes;
        return (from & ~(long)(LineBytes - 1), end);
    }
}

/// <summary>
/// Whether a decode matvec's warps pull their own rows into L2 before their first load step
/// (<see cref="WeightPrefetch.OwnRows"/>, <see cref="L2Prefetch.IssueRow"/>). A struct type parameter, so the kernels
/// without it stay as they were: as a run-time flag it cost the fused qkv matvec 4 registers (96 → 100, ptxas sm_90)
/// and made its 88-register launch spill. The kernels with it take 100–102 registers (at a cap of 96 they spill), so 4
/// groups of 4 warps fit an SM instead of 5: TinyLlama's gate|up runs in 2.7 waves instead of 2.1, its other matvecs
/// still in one. Whether fewer HBM round trips per row pay for that is the GPU run's to say.
/// </summary>
public interface IRowPrefetch
{
    bool PullsOwnRows { get; }
}

public struct NoRowPrefetch : IRowPrefetch
{
    public readonly bool PullsOwnRows => false;
}

public struct OwnRowPrefetch : IRowPrefetch
{
    public readonly bool PullsOwnRows => true;
}
