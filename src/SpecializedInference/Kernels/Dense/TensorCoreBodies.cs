using ILGPU;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// The projection on tensor cores (<see cref="TensorCores.Mma16816"/>), for f16 weights and from
/// <see cref="DenseKernels.TensorCoreMinTokens"/> tokens on: <c>y[t, n] (+)= Σ_k f16(x[t, k]) · W[n, k]</c>, the
/// activations rounded to f16 (as every f16 inference engine feeds tensor cores), the sums in f32.
///
/// <para><b>Layout.</b> A group is <see cref="Warps"/> warps on one tile of <see cref="TileRows"/> = 64 weight rows (16
/// per warp, the mma's M) × <see cref="TileTokens"/> = 64 tokens (8 mma column tiles of 8), over one of
/// <c>kSplit</c> equal ranges of the columns. It walks its range in blocks of <see cref="BlockCols"/> = 32 columns:
/// the group rounds the block's activations to f16 into shared memory once (each thread 16 of them), and every warp
/// takes its mma operands from there. Per block, lane (g, t) of a warp loads one 16-byte chunk, columns 8t .. 8t+7, of
/// its weight rows g and g + 8, and reads the same 8 columns of token g of each column tile from shared memory (one
/// 16-byte read). The chunk feeds two mma k-steps: columns 8t + 0..3, then 8t + 4..7, stand for the k indices 2t,
/// 2t+1, 2t+8, 2t+9 of the mma's fragments. That renumbering of k is the same for weights and activations (it depends
/// on t only), so the sums are those of the matrix product, and every weight load is a whole 16-byte chunk: a warp's
/// load reads 64 contiguous bytes of each of its 16 rows. The next block's weights and activations are loaded into
/// registers while this block's mma run.</para>
///
/// <para><b>Sizes.</b> From ~13 tokens on, the f32 FMAs of <see cref="BatchedKernelBodies"/> bound the step, not HBM (the
/// 8B shape at batch 64: ~19 ms of FMAs against 3.1 ms of weight reads); an H200's tensor cores do f16 products at
/// ~15× that rate. What is left to bound it is traffic: per block a group reads 4 KB of weights from HBM and 8 KB of
/// f32 activations, mostly from L2 (every row tile reads them). 64 rows per group keep that ratio at 2 (16 rows, with
/// the warps splitting the columns, made it 8). With few row tiles (the 8B shape's 4096-row o_proj has 64), the
/// columns are split over <c>kSplit</c> groups whose sums meet in <c>y</c> through atomic adds (the host zeroes
/// <c>y</c> first for a store), so the grid still covers the GPU.</para>
///
/// Rows past the matrix and tokens past the batch are clamped for loads and skipped when writing; column tiles wholly
/// past the batch are skipped (a branch the same for the whole group). The columns must be a multiple of
/// <see cref="BlockCols"/>.
/// </summary>
public static class TensorCoreBodies
{
    /// <summary>Warps per group; each owns 16 of the tile's rows.</summary>
    public const int Warps = 4;

    /// <summary>Weight rows per group: 16 (the mma's M) per warp.</summary>
    public const int TileRows = 16 * Warps;

    /// <summary>Tokens per group: 8 mma column tiles of 8.</summary>
    public const int TileTokens = 64;

    /// <summary>Columns per step: one 16-byte weight chunk per lane and row, two mma k-steps.</summary>
    public const int BlockCols = 32;

    /// <summary>Launch with groups of <see cref="Warps"/> × 32 threads and
    /// <c>ceil(rows / 64) × ceil(tokens / 64) × kSplit</c> groups (a row tile's token tiles and column ranges adjacent,
    /// so its weights come from L2 after the first read). With <paramref name="kSplit"/> above 1 the sums are added to
    /// <paramref name="y"/> atomically: zero it first for a store.</summary>
    /// <param name="w">[rows, cols] f16 weights as 16-byte chunks</param>
    /// <param name="x">[tokens, cols] f32 as Vec4</param>
    /// <param name="y">[tokens, rows] f32</param>
    /// <param name="kSplit">groups that split each tile's columns (at most cols / 32)</param>
    public static void LinearMma<TE>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens, int kSplit)
        where TE : struct, IEpilogue
    {
        var xs = SharedMemory.Allocate<Bits128>(TileTokens * BlockCols / 8); // [token, 8-column chunk] this block's activations as f16
        int lane = Warp.LaneIdx;
        int warp = Group.IdxX / Warp.WarpSize;
        int g = lane >> 2, t = lane & 3;
        int tokenTiles = (tokens + TileTokens - 1) / TileTokens;
        int split = Grid.IdxX % kSplit;
        int tile = Grid.IdxX / kSplit;
        int row0 = tile / tokenTiles * TileRows + warp * 16;   // this warp's 16 rows
        int token0 = tile % tokenTiles * TileTokens;
        int chunksPerRow = cols / 8;
        int vecsPerToken = cols / 4;
        int blocks = cols / BlockCols;
        int firstBlock = (int)((long)blocks * split / kSplit);
        int endBlock = (int)((long)blocks * (split + 1) / kSplit);

        // Weight rows g and g + 8 of this warp (clamped: their sums are never written).
        long rowG = (long)Math.Min(row0 + g, rows - 1) * chunksPerRow;
        long rowG8 = (long)Math.Min(row0 + g + 8, rows - 1) * chunksPerRow;
        // Staging: thread s rounds token s / 2's columns 16 (s % 2) .. + 15 of each block (tokens past the batch: its last).
        int stageToken = Group.IdxX >> 1, stageHalf = Group.IdxX & 1;
        long stageAt = (long)Math.Min(token0 + stageToken, tokens - 1) * vecsPerToken + stageHalf * 4;
        int tiles = Math.Min(8, (tokens - token0 + 7) / 8);

        MmaTile d0 = default, d1 = default, d2 = default, d3 = default, d4 = default, d5 = default, d6 = default, d7 = default;
        Bits128 wg = default, wg8 = default;   // [8] f16 of rows g, g + 8: the block's columns 8t .. 8t+7
        Vec4 s0 = default, s1 = default, s2 = default, s3 = default; // [16] f32: this thread's share of the block's activations
        if (firstBlock < endBlock)
        {
            wg = w[rowG + firstBlock * 4 + t];
            wg8 = w[rowG8 + firstBlock * 4 + t];
            long at = stageAt + (long)firstBlock * 8;
            s0 = x[at];
            s1 = x[at + 1];
            s2 = x[at + 2];
            s3 = x[at + 3];
        }

        for (int b = firstBlock; b < endBlock; b++)
        {
            // Stage: the block's activations as f16, [token, chunk of 8 columns].
            Group.Barrier(); // the previous block's readers are done
            xs[stageToken * 4 + stageHalf * 2] = Pack(s0, s1);
            xs[stageToken * 4 + stageHalf * 2 + 1] = Pack(s2, s3);
            Group.Barrier();

            // Prefetch: the next block's weights and activations, in flight while this block's mma run.
            var cg = wg;
            var cg8 = wg8;
            if (b + 1 < endBlock)
            {
                wg = w[rowG + (b + 1) * 4 + t];
                wg8 = w[rowG8 + (b + 1) * 4 + t];
                long at = stageAt + (long)(b + 1) * 8;
                s0 = x[at];
                s1 = x[at + 1];
                s2 = x[at + 2];
                s3 = x[at + 3];
            }

            // Accumulate: column tile j takes token 8j + g's columns 8t .. 8t+7 from shared memory.
            Step(ref d0, cg, cg8, xs[g * 4 + t]);
            if (tiles > 1) Step(ref d1, cg, cg8, xs[(8 + g) * 4 + t]);
            if (tiles > 2) Step(ref d2, cg, cg8, xs[(16 + g) * 4 + t]);
            if (tiles > 3) Step(ref d3, cg, cg8, xs[(24 + g) * 4 + t]);
            if (tiles > 4) Step(ref d4, cg, cg8, xs[(32 + g) * 4 + t]);
            if (tiles > 5) Step(ref d5, cg, cg8, xs[(40 + g) * 4 + t]);
            if (tiles > 6) Step(ref d6, cg, cg8, xs[(48 + g) * 4 + t]);
            if (tiles > 7) Step(ref d7, cg, cg8, xs[(56 + g) * 4 + t]);
        }

        // Write: tile j holds rows g, g + 8 × tokens 8j + 2t, 8j + 2t + 1.
        bool atomic = kSplit > 1;
        Write<TE>(y, d0, row0, token0, g, t, rows, tokens, atomic);
        Write<TE>(y, d1, row0, token0 + 8, g, t, rows, tokens, atomic);
        Write<TE>(y, d2, row0, token0 + 16, g, t, rows, tokens, atomic);
        Write<TE>(y, d3, row0, token0 + 24, g, t, rows, tokens, atomic);
        Write<TE>(y, d4, row0, token0 + 32, g, t, rows, tokens, atomic);
        Write<TE>(y, d5, row0, token0 + 40, g, t, rows, tokens, atomic);
        Write<TE>(y, d6, row0, token0 + 48, g, t, rows, tokens, atomic);
        Write<TE>(y, d7, row0, token0 + 56, g, t, rows, tokens, atomic);
    }

    /// <summary>Eight f32 activations as four f16 pairs: one chunk of 8 columns.</summary>
    private static Bits128 Pack(Vec4 lo, Vec4 hi) => new()
    {
        X = TensorCores.PackHalf2(lo.X, lo.Y),
        Y = TensorCores.PackHalf2(lo.Z, lo.W),
        Z = TensorCores.PackHalf2(hi.X, hi.Y),
        W = TensorCores.PackHalf2(hi.Z, hi.W),
    };

    /// <summary>Two mma k-steps of one column tile: the chunk's columns 8t + 0..3, then 8t + 4..7.</summary>
    private static void Step(ref MmaTile d, Bits128 wg, Bits128 wg8, Bits128 xt)
    {
        TensorCores.Mma16816(ref d, wg.X, wg8.X, wg.Y, wg8.Y, xt.X, xt.Y);
        TensorCores.Mma16816(ref d, wg.Z, wg8.Z, wg.W, wg8.W, xt.Z, xt.W);
    }

    private static void Write<TE>(ArrayView<float> y, MmaTile d, int row0, int token0, int g, int t, int rows, int tokens, bool atomic)
        where TE : struct, IEpilogue
    {
        int token = token0 + 2 * t;
        int row = row0 + g;
        if (row < rows)
        {
            if (token < tokens) Put<TE>(y, (long)token * rows + row, d.C0, atomic);
            if (token + 1 < tokens) Put<TE>(y, (long)(token + 1) * rows + row, d.C1, atomic);
        }

        if (row + 8 < rows)
        {
            if (token < tokens) Put<TE>(y, (long)token * rows + row + 8, d.C2, atomic);
            if (token + 1 < tokens) Put<TE>(y, (long)(token + 1) * rows + row + 8, d.C3, atomic);
        }
    }

    /// <summary>One column range's sum: through the epilogue when the group has the whole row, else added atomically.</summary>
    private static void Put<TE>(ArrayView<float> y, long index, float value, bool atomic)
        where TE : struct, IEpilogue
    {
        if (atomic) Atomic.Add(ref y[index], value);
        else default(TE).Write(y, index, value);
    }
}
