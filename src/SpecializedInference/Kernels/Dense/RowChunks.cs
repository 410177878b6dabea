using ILGPU;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// How many 16-byte chunks of a weight row each lane of the warp matvecs loads before it uses any: the warp waits one
/// memory round trip per step, so the chunks per lane set how many round trips a row costs. A decode step's small
/// matvecs (TinyLlama's qkv is 10 MB over 1280 warps, 4 KB per row) are chains of those round trips rather than
/// bandwidth-bound streams; the 8B shape's large ones are bandwidth-bound either way.
/// </summary>
/// <param name="Linear">Chunks per lane per step of <see cref="DenseKernelBodies.LinearWarp{TW, TE, TD, TP}"/> (one row per warp): 2, 4 or 8.</param>
/// <param name="FusedPerRow">Chunks per lane per step of each of the two rows of <see cref="FusedKernelBodies.NormLinearWarp{TW, TO, TD, TP}"/>: 2, 4 or 8.</param>
/// <param name="Qkv">The fused qkv projection's own <paramref name="FusedPerRow"/>; null: the same. A small model's qkv
/// grid is under one wave at any depth (TinyLlama: 1280 warps, 9.7 per SM; 165 registers at depth 4 still fit 12), so a
/// deeper step halves its round trips at no cost in waves, where its gate|up (5632 warps) would go from 2.1 waves to 3.6.</param>
public sealed record MatvecDepth(int Linear = 4, int FusedPerRow = 2, int? Qkv = null)
{
    /// <summary>What the H200 runs measured: 4 chunks of o_proj's and down_proj's row and 2 of each row of the fused pairs
    /// (runs 9–13), and 4 of the qkv pair's (run 23: batch-1 steps of 5.19 ms against 5.61 for Llama-3-8B, 1.28 against
    /// 1.33 for TinyLlama, in one report).</summary>
    public static MatvecDepth Default { get; } = new(Qkv: 4);

    /// <summary>The fused qkv projection's chunks per lane per step of each row.</summary>
    public int QkvPerRow => Qkv ?? FusedPerRow;

    /// <summary>Parses <c>linear,fused</c> or <c>linear,fused,qkv</c> (e.g. <c>8,4</c>, <c>4,2,4</c>), as the benchmark options give it.</summary>
    public static MatvecDepth Parse(string text)
    {
        var parts = text.Split(',');
        int qkv = 0;
        if (parts.Length is not (2 or 3) || !int.TryParse(parts[0], out int linear) || !int.TryParse(parts[1], out int fused)
            || (parts.Length == 3 && !int.TryParse(parts[2], out qkv)))
            throw new ArgumentException($"matvec depth '{text}': expected <linear chunks>,<fused chunks per row>[,<qkv chunks per row>], e.g. 8,4 or 4,2,4");
        return new MatvecDepth(linear, fused, parts.Length == 3 ? qkv : null).Validated();
    }

    /// <summary>This depth, or a clear error when a count is not 2, 4 or 8.</summary>
    public MatvecDepth Validated()
    {
        if (Linear is not (2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(Linear), Linear, "matvec depth: Linear must be 2, 4 or 8 chunks per lane");
        if (FusedPerRow is not (2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(FusedPerRow), FusedPerRow, "matvec depth: FusedPerRow must be 2, 4 or 8 chunks per lane");
        if (Qkv is not (null or 2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(Qkv), Qkv, "matvec depth: Qkv must be 2, 4 or 8 chunks per lane (or null: FusedPerRow)");
        return this;
    }

    public override string ToString() => Qkv is { } qkv ? $"{Linear},{FusedPerRow},{qkv}" : $"{Linear},{FusedPerRow}";
}

/// <summary>A kernel's struct type parameter for a <see cref="MatvecDepth"/> count: each depth compiles to its own
/// kernel, the unused loads folded away.</summary>
public interface IRowChunks
{
    /// <summary>Chunks of a row a lane loads per step: 2, 4 or 8.</summary>
    int PerLane { get; }
}

public struct TwoChunks : IRowChunks
{
    public readonly int PerLane => 2;
}

public struct FourChunks : IRowChunks
{
    public readonly int PerLane => 4;
}

public struct EightChunks : IRowChunks
{
    public readonly int PerLane => 8;
}

/// <summary>
/// Whether a grid-synced stage's warps enter it with their first work item's first load step already in registers
/// (<see cref="CarriedStep"/>, loaded before the grid barrier that starts the stage, while the groups meet), or load it
/// after the barrier as the per-stage kernels do. A struct type parameter: without it the kernels are as they were.
/// </summary>
public interface IStepCarry
{
    bool Carries { get; }
}

/// <summary>Every step loaded where it is used.</summary>
public struct NoCarry : IStepCarry
{
    public readonly bool Carries => false;
}

/// <summary>The first step arrives loaded (<see cref="DecodeLaunches.GridSyncedTailsPreloaded"/>).</summary>
public struct CarryFirstStep : IStepCarry
{
    public readonly bool Carries => true;
}

/// <summary>A lane's chunks of the first whole load step of a warp's row (and of its second row, for the fused pairs),
/// loaded ahead of the work item that uses them; <see cref="Loaded"/> 0 when the warp has no item there or the row is
/// shorter than one step.</summary>
public struct CarriedStep
{
    public LaneChunks A, B;
    public int Loaded;
}

/// <summary>Whether a step of a warp matvec may run past the end of the row: only the last step of a row that is not a
/// whole number of steps does, and only it pays for clamped indices and dropped products (a struct type parameter, so
/// the whole steps keep constant address offsets).</summary>
public interface IStepEdge
{
    bool PastRowEnd { get; }
}

/// <summary>Every chunk of the step is inside the row.</summary>
public struct WholeStep : IStepEdge
{
    public readonly bool PastRowEnd => false;
}

/// <summary>The row's last step, which some lanes' chunks overrun.</summary>
public struct LastStep : IStepEdge
{
    public readonly bool PastRowEnd => true;
}

/// <summary>
/// One lane's chunks of a weight row for one step: chunk k is the row's chunk <c>c + 32k</c> (k &lt; PerLane), so the
/// warp's loads of each k are coalesced. In a <see cref="LastStep"/>, a chunk past the row's end loads the row's last
/// chunk again (in bounds, no branch around the loads, so they all go out together) and <see cref="Valid{TE}"/> drops
/// its products.
/// </summary>
public struct LaneChunks
{
    public Bits128 C0, C1, C2, C3, C4, C5, C6, C7;

    /// <summary>Chunks c, c + 32, … of the row starting at chunk <paramref name="row"/> (<paramref name="chunks"/> long).</summary>
    public static LaneChunks Load<TD, TE>(ArrayView<Bits128> w, long row, int c, int chunks)
        where TD : struct, IRowChunks
        where TE : struct, IStepEdge
    {
        var r = default(LaneChunks);
        r.C0 = w[At<TE>(row, c, 0, chunks)];
        r.C1 = w[At<TE>(row, c, 1, chunks)];
        if (default(TD).PerLane >= 4)
        {
            r.C2 = w[At<TE>(row, c, 2, chunks)];
            r.C3 = w[At<TE>(row, c, 3, chunks)];
        }
        if (default(TD).PerLane == 8)
        {
            r.C4 = w[At<TE>(row, c, 4, chunks)];
            r.C5 = w[At<TE>(row, c, 5, chunks)];
            r.C6 = w[At<TE>(row, c, 6, chunks)];
            r.C7 = w[At<TE>(row, c, 7, chunks)];
        }
        return r;
    }

    /// <summary>
    /// Where chunk k of the lane's step is: <paramref name="start"/> + (c + 32k) · <paramref name="unit"/>, or in a
    /// <see cref="LastStep"/> the row's last chunk once past its end. <paramref name="unit"/> is the elements of the
    /// view per chunk (1 for the weights; 1 or 2 Vec4 of activations). A whole step adds in 64 bits, term by term: an
    /// int sum first, sign-extended per load, took 4 more registers in <c>LinearWarp</c> (ptxas, sm_90).
    /// </summary>
    public static long At<TE>(long start, int c, int k, int chunks, int unit = 1)
        where TE : struct, IStepEdge
    {
        if (!default(TE).PastRowEnd) return start + (long)c * unit + (long)k * Warp.WarpSize * unit;
        int ck = c + k * Warp.WarpSize;
        return start + (long)(ck < chunks ? ck : chunks - 1) * unit;
    }

    /// <summary>Whether chunk k of the lane's step counts (always, outside a <see cref="LastStep"/>).</summary>
    public static bool Valid<TE>(int c, int k, int chunks)
        where TE : struct, IStepEdge
        => !default(TE).PastRowEnd || c + k * Warp.WarpSize < chunks;

    /// <summary>
    /// Σ_k w_k · x[token, chunk c + 32k] over the chunks inside the row, one token's activations starting at Vec4
    /// <paramref name="xRow"/>. Every activation load is in bounds (clamped as the weights were), so none waits on a
    /// branch; past the row's end the product is computed and dropped.
    /// </summary>
    public readonly float Dot<TW, TD, TE>(ArrayView<Vec4> x, long xRow, int c, int chunks)
        where TW : struct, IWeightFormat
        where TD : struct, IRowChunks
        where TE : struct, IStepEdge
    {
        float s = Term<TW, TE>(C0, x, xRow, c, 0, chunks) + Term<TW, TE>(C1, x, xRow, c, 1, chunks);
        if (default(TD).PerLane >= 4)
            s += Term<TW, TE>(C2, x, xRow, c, 2, chunks) + Term<TW, TE>(C3, x, xRow, c, 3, chunks);
        if (default(TD).PerLane == 8)
            s += Term<TW, TE>(C4, x, xRow, c, 4, chunks) + Term<TW, TE>(C5, x, xRow, c, 5, chunks)
                + Term<TW, TE>(C6, x, xRow, c, 6, chunks) + Term<TW, TE>(C7, x, xRow, c, 7, chunks);
        return s;
    }

    /// <summary>Chunk k's dot product with the token's activations (dropped past the row's end).</summary>
    private static float Term<TW, TE>(Bits128 chunk, ArrayView<Vec4> x, long xRow, int c, int k, int chunks)
        where TW : struct, IWeightFormat
        where TE : struct, IStepEdge
    {
        int vecs = default(TW).ElementsPerChunk / 4;
        float d = default(TW).Dot(chunk, x, At<TE>(xRow, c, k, chunks, vecs));
        return Valid<TE>(c, k, chunks) ? d : 0f;
    }
}
