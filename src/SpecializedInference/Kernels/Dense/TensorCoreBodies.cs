using ILGPU;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// The projection on tensor cores (<see cref="TensorCores.Mma16816"/>), for f16 weights and from
/// <see cref="DenseKernels.TensorCoreMinTokens"/> tokens on: <c>y[t, n] (+)= Σ_k f16(x[t, k]) · W[n, k]</c>, the
/// activations rounded to f16 (as every f16 inference engine feeds tensor cores), the sums in f32.
///
/// <para><b>Layout.</b> A group is <see cref="Warps"/> warps on one tile of <see cref="TileRows"/> = 16 weight rows (the
/// mma's M) × <see cref="TileTokens"/> = 64 tokens (8 mma column tiles of 8). The warps split the columns, in blocks of
/// <see cref="BlockCols"/> = 32 (warp w takes blocks w, w + 4, ...), and add their tiles up through shared memory at
/// the end. Per block, lane (g, t) loads one 16-byte chunk, columns 8t .. 8t+7, of weight rows g and g + 8, and of
/// each of the 8 column tiles' token g the same 8 activations (two 16-byte loads), which it rounds to f16 pairs. The
/// chunk feeds two mma k-steps: columns 8t + 0..3, then 8t + 4..7, stand for the k indices 2t, 2t+1, 2t+8, 2t+9 of
/// the mma's fragments. That renumbering of k is the same for weights and activations (it depends on t only), so the
/// sums are those of the matrix product, and every load is a whole 16-byte chunk: a warp's weight load reads 64
/// contiguous bytes of each of 16 rows.</para>
///
/// <para><b>Why.</b> From ~13 tokens on, the f32 FMAs of <see cref="BatchedKernelBodies"/> bound the step, not HBM (the
/// 8B shape at batch 64: ~19 ms of FMAs against 3.1 ms of weight reads). An H200's tensor cores do f16 products at
/// ~15× the f32 FMA rate, so the same step is bound by the weight reads again.</para>
///
/// Rows past the matrix and tokens past the batch are clamped for loads and skipped when writing. The columns must
/// be a multiple of <see cref="BlockCols"/>.
/// </summary>
public static class TensorCoreBodies
{
    /// <summary>Warps per group; they split the columns.</summary>
    public const int Warps = 4;

    /// <summary>Weight rows per group: the mma's M.</summary>
    public const int TileRows = 16;

    /// <summary>Tokens per group: 8 mma column tiles of 8.</summary>
    public const int TileTokens = 64;

    /// <summary>Columns per warp step: one 16-byte weight chunk per lane and row, two mma k-steps.</summary>
    public const int BlockCols = 32;

    /// <summary>Launch with groups of <see cref="Warps"/> × 32 threads, <c>ceil(rows / 16) × ceil(tokens / 64)</c> groups
    /// (a row tile's token tiles adjacent, so its weights come from L2 after the first).</summary>
    /// <param name="w">[rows, cols] f16 weights as 16-byte chunks</param>
    /// <param name="x">[tokens, cols] f32 as Vec4</param>
    /// <param name="y">[tokens, rows] f32</param>
    public static void LinearMma<TE>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens)
        where TE : struct, IEpilogue
    {
        var partial = SharedMemory.Allocate<float>((Warps - 1) * 32 * 32); // [warp - 1, accumulator, lane]: the column split's sums
        int lane = Warp.LaneIdx;
        int warp = Group.IdxX / Warp.WarpSize;
        int g = lane >> 2, t = lane & 3;
        int tokenTiles = (tokens + TileTokens - 1) / TileTokens;
        int row0 = Grid.IdxX / tokenTiles * TileRows;
        int token0 = Grid.IdxX % tokenTiles * TileTokens;
        int chunksPerRow = cols / 8;
        int vecsPerToken = cols / 4;

        // Weight rows g and g + 8 of the tile, token g of each column tile (clamped: their sums are never written).
        long rowG = (long)Math.Min(row0 + g, rows - 1) * chunksPerRow;
        long rowG8 = (long)Math.Min(row0 + g + 8, rows - 1) * chunksPerRow;
        int lastToken = tokens - 1;
        long x0 = (long)Math.Min(token0 + g, lastToken) * vecsPerToken;
        long x1 = (long)Math.Min(token0 + 8 + g, lastToken) * vecsPerToken;
        long x2 = (long)Math.Min(token0 + 16 + g, lastToken) * vecsPerToken;
        long x3 = (long)Math.Min(token0 + 24 + g, lastToken) * vecsPerToken;
        long x4 = (long)Math.Min(token0 + 32 + g, lastToken) * vecsPerToken;
        long x5 = (long)Math.Min(token0 + 40 + g, lastToken) * vecsPerToken;
        long x6 = (long)Math.Min(token0 + 48 + g, lastToken) * vecsPerToken;
        long x7 = (long)Math.Min(token0 + 56 + g, lastToken) * vecsPerToken;

        // Accumulate: this warp's column blocks, each one 16-byte chunk of rows g and g + 8 and two k-steps per tile.
        // Column tiles wholly past the batch are skipped (the same for the whole group: no divergence): a batch of 16
        // runs 2 of the 8.
        MmaTile d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default, d6 = default, d7 = default;
        int tiles = Math.Min(8, (tokens - token0 + 7) / 8);
        int blocks = cols / BlockCols;
        for (int b = warp; b < blocks; b += Warps)
        {
            int chunk = b * 4 + t;            // columns 8t .. 8t+7 of the block
            var wg = w[rowG + chunk];         // [8] f16 of row g
            var wg8 = w[rowG8 + chunk];       // [8] f16 of row g + 8
            long at = 2L * chunk;             // the same columns of a token's activations, in Vec4
            Step(ref d0, wg, wg8, x, x0 + at);
            if (tiles > 1) Step(ref d1, wg, wg8, x, x1 + at);
            if (tiles > 2) Step(ref d2, wg, wg8, x, x2 + at);
            if (tiles > 3) Step(ref d3, wg, wg8, x, x3 + at);
            if (tiles > 4) Step(ref d4, wg, wg8, x, x4 + at);
            if (tiles > 5) Step(ref d5, wg, wg8, x, x5 + at);
            if (tiles > 6) Step(ref d6, wg, wg8, x, x6 + at);
            if (tiles > 7) Step(ref d7, wg, wg8, x, x7 + at);
        }

        // Reduce the column split: warps 1.. leave their tiles in shared memory, warp 0 adds them and writes.
        if (warp > 0)
        {
            int s = (warp - 1) * 32 * 32 + lane;
            Keep(partial, s, 0, d0);
            Keep(partial, s, 4, d1);
            Keep(partial, s, 8, d2);
            Keep(partial, s, 12, d3);
            Keep(partial, s, 16, d4);
            Keep(partial, s, 20, d5);
            Keep(partial, s, 24, d6);
            Keep(partial, s, 28, d7);
        }

        Group.Barrier();
        if (warp > 0) return;
        for (int other = 0; other < Warps - 1; other++)
        {
            int s = other * 32 * 32 + lane;
            d0 = AddKept(partial, s, 0, d0);
            d1 = AddKept(partial, s, 4, d1);
            d2 = AddKept(partial, s, 8, d2);
            d3 = AddKept(partial, s, 12, d3);
            d4 = AddKept(partial, s, 16, d4);
            d5 = AddKept(partial, s, 20, d5);
            d6 = AddKept(partial, s, 24, d6);
            d7 = AddKept(partial, s, 28, d7);
        }

        // Write: tile j holds rows g, g + 8 × tokens 8j + 2t, 8j + 2t + 1.
        Write<TE>(y, d0, row0, token0, g, t, rows, tokens);
        Write<TE>(y, d1, row0, token0 + 8, g, t, rows, tokens);
        Write<TE>(y, d2, row0, token0 + 16, g, t, rows, tokens);
        Write<TE>(y, d3, row0, token0 + 24, g, t, rows, tokens);
        Write<TE>(y, d4, row0, token0 + 32, g, t, rows, tokens);
        Write<TE>(y, d5, row0, token0 + 40, g, t, rows, tokens);
        Write<TE>(y, d6, row0, token0 + 48, g, t, rows, tokens);
        Write<TE>(y, d7, row0, token0 + 56, g, t, rows, tokens);
    }

    /// <summary>Two mma k-steps of one column tile: the chunk's columns 8t + 0..3, then 8t + 4..7.</summary>
    private static void Step(ref MmaTile d, Bits128 wg, Bits128 wg8, ArrayView<Vec4> x, long at)
    {
        var lo = x[at];     // token's columns 8t .. 8t+3
        var hi = x[at + 1]; // 8t+4 .. 8t+7
        TensorCores.Mma16816(ref d, wg.X, wg8.X, wg.Y, wg8.Y, TensorCores.PackHalf2(lo.X, lo.Y), TensorCores.PackHalf2(lo.Z, lo.W));
        TensorCores.Mma16816(ref d, wg.Z, wg8.Z, wg.W, wg8.W, TensorCores.PackHalf2(hi.X, hi.Y), TensorCores.PackHalf2(hi.Z, hi.W));
    }

    private static void Keep(ArrayView<float> partial, int s, int accumulator, MmaTile d)
    {
        partial[s + accumulator * 32] = d.C0;
        partial[s + (accumulator + 1) * 32] = d.C1;
        partial[s + (accumulator + 2) * 32] = d.C2;
        partial[s + (accumulator + 3) * 32] = d.C3;
    }

    private static MmaTile AddKept(ArrayView<float> partial, int s, int accumulator, MmaTile d)
    {
        d.C0 += partial[s + accumulator * 32];
        d.C1 += partial[s + (accumulator + 1) * 32];
        d.C2 += partial[s + (accumulator + 2) * 32];
        d.C3 += partial[s + (accumulator + 3) * 32];
        return d;
    }

    private static void Write<TE>(ArrayView<float> y, MmaTile d, int row0, int token0, int g, int t, int rows, int tokens)
        where TE : struct, IEpilogue
    {
        int token = token0 + 2 * t;
        int row = row0 + g;
        if (row < rows)
        {
            if (token < tokens) default(TE).Write(y, (long)token * rows + row, d.C0);
            if (token + 1 < tokens) default(TE).Write(y, (long)(token + 1) * rows + row, d.C1);
        }

        if (row + 8 < rows)
        {
            if (token < tokens) default(TE).Write(y, (long)token * rows + row + 8, d.C2);
            if (token + 1 < tokens) default(TE).Write(y, (long)(token + 1) * rows + row + 8, d.C3);
        }
    }
}
