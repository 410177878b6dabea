using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// The first bytes of the next projection's weights, pulled into L2 by the last wave of a decode matvec's warps as they
/// finish (<c>prefetch.L2</c>, one per 128-byte line: no registers, no wait).
/// <para>Why: at batch 1 a small model's step is a chain of short launches (TinyLlama: five per layer, 8–19 µs each
/// for 8–47 MB, 1.3–2.4 TB/s in run 12), each of which starts with its warps waiting for their first weight loads from
/// HBM while the one before it drains. The next weights do not depend on anything the current launch computes, so the
/// warps that are done can request them while the rest of the grid finishes and through the gap between launches; the
/// next launch's first loads then hit L2. Only the grid's last <see cref="DenseKernels.PrefetchWarpsPerSm"/> warps per
/// SM pull a share: earlier ones would put the lines in L2 while the rest of the current matrix streams through it.</para>
/// <para>Off by default (<see cref="Runtime.ModelOptions.WeightPrefetchBytes"/>) until a GPU run measures it
/// (<c>report --sections copy,e2e --prefetch-weights 8,16</c>). On ILGPU's CPU accelerator it does nothing.</para>
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

    /// <summary>The first warp of the grid that pulls a share of the lines.</summary>
    public int FirstWarp;

    /// <summary>The grid's warps (with work): warps FirstWarp … Warps − 1 split the lines between them.</summary>
    public int Warps;

    /// <summary>Nothing to pull: the matvec runs as it would without this argument.</summary>
    public static L2Prefetch None => default;

    /// <summary>Warp <paramref name="warp"/>'s lanes request their share of the lines: [share · lines / sharers,
    /// (share + 1) · lines / sharers), lane by lane. Call it once the warp has used its loads.</summary>
    public readonly void Issue(int warp, int lane)
    {
        if (!CudaAsm.IsSupported) return; // the CPU accelerator has no L2 to warm
        int sharers = Warps - FirstWarp;
        if (warp < FirstWarp || sharers <= 0) return;
        long share = warp - FirstWarp;
        long first = Lines * share / sharers, end = Lines * (share + 1) / sharers;
        for (long line = first + lane; line < end; line += Warp.WarpSize)
            CudaAsm.Emit("prefetch.L2 [%0];", Next + line * LineBytes);
    }
}
