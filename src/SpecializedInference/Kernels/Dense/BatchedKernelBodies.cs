using ILGPU;

namespace SpecializedInference.Kernels.Dense;

/// <summary>Tokens a warp of <see cref="BatchedKernelBodies.LinearBatched{TW,TE,TG}"/> carries: a struct type parameter, so each size compiles unrolled.</summary>
public interface ITokenGroup
{
    /// <summary>8 or 16.</summary>
    int Tokens { get; }
}

/// <summary>Eight tokens per warp: decode batches of 5 to 8.</summary>
public struct EightTokens : ITokenGroup
{
    public readonly int Tokens => 8;
}

/// <summary>Sixteen tokens per warp: decode batches above 8, in groups of 16.</summary>
public struct SixteenTokens : ITokenGroup
{
    public readonly int Tokens => 16;
}

/// <summary>Partial sums of 4 rows × 4 tokens: row i in <c>Ri</c>, tokens 0..3 in X, Y, Z, W.</summary>
public struct Tile4x4
{
    public Vec4 R0, R1, R2, R3;
}

/// <summary>Partial sums of 2 rows × 4 tokens.</summary>
public struct Tile2x4
{
    public Vec4 R0, R1;
}

/// <summary>One lane's register accumulators: 4 rows × 16 tokens as four 4-token blocks (B2, B3 unused for 8 tokens).</summary>
public struct BatchedAccumulators
{
    public Tile4x4 B0, B1, B2, B3;
}

/// <summary>Offsets (in Vec4) of 4 tokens' activation rows; tokens past the batch point at its last token.</summary>
public struct TokenOffsets
{
    public int T0, T1, T2, T3;
}

/// <summary>
/// The projection for decode-sized batches (<see cref="DenseKernels.BatchedMinTokens"/> to
/// <see cref="DenseKernels.BatchedMaxTokens"/> tokens): <c>y[t, n] (+)= Σ_k x[t, k] · W[n, k]</c>.
///
/// <para><b>Layout.</b> A block is <see cref="Warps"/> warps. A warp owns <see cref="WarpRows"/> = 16 rows and
/// T tokens (8 or 16, <see cref="ITokenGroup"/>); its 32 lanes are 8 k-lanes × 4 row-lanes. Lane (kl, rl) owns rows
/// <c>4 rl .. 4 rl + 3</c> and all T tokens: 4 × T register accumulators. Per step each lane loads the 16-byte
/// chunk <c>c</c> (8 f16 or 4 f32 weights) of its 4 rows, converts each weight to f32 once and uses it against T
/// tokens (weight reuse T from registers); it loads x[t, chunk c] for the T tokens and uses each value against its
/// 4 rows (x reuse 4 from registers, and the load is a broadcast to the 4 row-lanes that share kl). The 8 k-lanes
/// read 8 consecutive chunks of a row: each weight load instruction reads 4 rows × 128 contiguous bytes. A block's
/// warps split its rows (8 / kSplit row-warps of 16 rows) and, when the grid would be too small to fill the GPU,
/// the columns (kSplit warps per row-warp, reduced through shared memory). Blocks of the same rows for successive
/// token groups are adjacent in the grid, so for batches over 16 the second and later reads of a weight tile come
/// from L2, not HBM. At the end the 8 k-lanes reduce by halving butterflies (each level exchanges half the
/// remaining sums, 56 shuffles for 64 sums) so each lane ends holding 8 (or 4) finished sums, which it writes.</para>
///
/// <para><b>Why these sizes</b> (H200: 4.8 TB/s HBM, 132 SMs, 128 f32 FMA/clk/SM ≈ 33.5 T FMA/s = 67 TFLOP/s,
/// 128 B/clk/SM of L1/shared). The Llama-3-8B step reads 7.5 G f16 weights = 15.0 GB (3.1 ms at 4.8 TB/s) and does
/// 7.5 G FMAs per token: 120 G at batch 16 (3.6 ms at peak), 480 G at batch 64 (14.3 ms). From batch ~13 on, f32
/// FMA throughput, not HBM, bounds the step, so the kernel must keep FMAs near peak: each FMA must come with
/// little else. Per lane and f16 chunk, T = 16: 512 FMAs against 4 weight loads, 32 x loads (16 bytes each), 32
/// f16→f32 conversions and ~40 address/loop instructions, so FMAs are ~80% of issued instructions. The L1 data
/// path per warp and chunk: weights 4 loads × 512 B = 16 wavefronts of 128 B; x 32 loads, each touching 2 lines
/// (8 k-lanes × 16 B at a 32-byte stride, broadcast to the 4 row-lanes) = 64 wavefronts; 80 cycles against the
/// 128 cycles the SM needs to issue the warp's 512 FMAs, so L1 is not the bound (a warp-per-row matvec, whose
/// lanes all read different x, needs 8 wavefronts per 16-byte x load: 68 per 512 bytes of weights at 4 tokens,
/// against the ~28 cycles an SM's share of HBM takes for them, so it is L1-bound from 2 tokens on). Registers:
/// 64 accumulators + 16 weight words + 16 prefetched + 16 converted weights + 16 token offsets + addresses ≈ 140:
/// one or two 256-thread blocks per SM; R × T = 4 × 16 is the largest tile within that budget with weight reuse 16,
/// so a batch of 16 reads the weights once. (R = 8, T = 8 would halve the x loads but read the weights twice at
/// batch 16; R = 2 would double them.) With 8 tokens (batches of 5 to 8) the tile is 4 × 8 and the step is
/// HBM-bound: a warp's chunk step reads 2 KB of weights (~110 SM cycles of its HBM share, 4.8 TB/s / 132 SMs /
/// 1.98 GHz ≈ 18 B/clk) against 256 FMAs (64 cycles).
/// x comes through L1 (no shared staging): all blocks read the same x, which stays in L1/L2 (64 tokens × 14336 × 4
/// B = 3.7 MB at most), and the x bytes a block reads (T × cols × 4) are at most 2 × its weight bytes (16 rows ×
/// cols × 2 per row-warp), L2 traffic that fits beside the FMA time.</para>
///
/// <para>Expected: batch 16 ≈ 3.6 ms of FMAs at peak, ~5 ms at the ~75% the instruction mix allows, against
/// ~124 ms for the padded tiled matmul; batch 64 ≈ 14.3 ms at peak, ~19 ms at 75%. Rows past the matrix and tokens
/// past the batch are clamped for loads (the loop has no bounds branches) and skipped when writing.</para>
/// </summary>
public static class BatchedKernelBodies
{
    /// <summary>Warps per block (256 threads).</summary>
    public const int Warps = 8;

    /// <summary>Lanes along the columns: 8 consecutive 16-byte chunks per row and step.</summary>
    public const int KLanes = 8;

    /// <summary>Rows per lane, and rows per warp (4 row-lanes × 4 rows).</summary>
    public const int LaneRows = 4;
    public const int WarpRows = 16;

    /// <summary>Per lane, the most sums left after the butterfly (16 tokens: 2 rows × 4 tokens).</summary>
    private const int LaneSums = 8;

    /// <summary>
    /// y[t, n] (+)= Σ_k x[t, k] · W[n, k] for a decode-sized batch. Launch with groups of
    /// <see cref="Warps"/> × 32 threads, <c>ceil(ceil(rows / 16) / (8 / kSplit)) × ceil(tokens / T)</c> groups.
    /// </summary>
    /// <param name="w">[rows, cols] weights as 16-byte chunks</param>
    /// <param name="x">[tokens, cols] f32 as Vec4</param>
    /// <param name="y">[tokens, rows] f32</param>
    /// <param name="kSplit">warps that split each row-warp's columns: 1, 2, 4 or 8</param>
    public static void LinearBatched<TW, TE, TG>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y,
        int rows, int cols, int tokens, int kSplit)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TG : struct, ITokenGroup
    {
        var partial = SharedMemory.Allocate<float>(Warps * LaneSums * 32); // [warp, sum, lane]: the k-split reduction
        int T = default(TG).Tokens;
        int lane = Warp.LaneIdx;
        int kl = lane % KLanes;
        int rl = lane / KLanes;
        int warp = Group.IdxX / Warp.WarpSize;
        int kw = warp % kSplit;
        int rowWarp = warp / kSplit;
        int groups = (tokens + T - 1) / T;
        int g = Grid.IdxX % groups;
        int n0 = ((Grid.IdxX / groups) * (Warps / kSplit) + rowWarp) * WarpRows + rl * LaneRows; // this lane's first row
        int t0 = g * T;

        int e = default(TW).ElementsPerChunk;
        int quads = default(TW).QuadsPerChunk;
        int chunks = cols / e;
        int vecsPerToken = cols / 4;

        // Rows past the matrix read its last row and tokens past the batch its last token: no bounds branches in
        // the loop; those sums are never written.
        int last = rows - 1;
        long w0 = (long)(n0 < last ? n0 : last) * chunks;
        long w1 = (long)(n0 + 1 < last ? n0 + 1 : last) * chunks;
        long w2 = (long)(n0 + 2 < last ? n0 + 2 : last) * chunks;
        long w3 = (long)(n0 + 3 < last ? n0 + 3 : last) * chunks;
        var oa = Offsets(t0, tokens, vecsPerToken);
        var ob = Offsets(t0 + 4, tokens, vecsPerToken);
        var oc = Offsets(t0 + 8, tokens, vecsPerToken);
        var od = Offsets(t0 + 12, tokens, vecsPerToken);

        // Stride over the row in steps of 8 chunks (× kSplit warps).
        var acc = default(BatchedAccumulators);
        int stride = KLanes * kSplit;
        int c = kw * KLanes + kl;
        Bits128 c0 = default, c1 = default, c2 = default, c3 = default;
        if (c < chunks)
        {
            c0 = w[w0 + c];
            c1 = w[w1 + c];
            c2 = w[w2 + c];
            c3 = w[w3 + c];
        }

        for (; c < chunks; c += stride)
        {
            // Issue the next step's weight loads first: they are in flight while this step's FMAs run.
            int next = c + stride;
            Bits128 n0w = default, n1w = default, n2w = default, n3w = default;
            if (next < chunks)
            {
                n0w = w[w0 + next];
                n1w = w[w1 + next];
                n2w = w[w2 + next];
                n3w = w[w3 + next];
            }

            // x[token, chunk c]: one 64-bit base per quad, the tokens at 32-bit offsets from it.
            var xq = x.SubView((long)c * quads);
            acc = Step<TW, TG>(acc, c0, c1, c2, c3, 0, xq, oa, ob, oc, od);
            if (quads == 2) acc = Step<TW, TG>(acc, c0, c1, c2, c3, 1, xq.SubView(1), oa, ob, oc, od);
            c0 = n0w;
            c1 = n1w;
            c2 = n2w;
            c3 = n3w;
        }

        // Sum over the 8 k-lanes (xor 4, 2, 1 stay within a row-lane's 8 lanes). Each level keeps half of the
        // remaining sums (the partner keeps the other half), so each lane ends with the finished sums of
        // rows nA (and nA + 1 for 16 tokens) × tokens tA .. tA + 3.
        bool u4 = (kl & 4) != 0, u2 = (kl & 2) != 0, u1 = (kl & 1) != 0;
        Vec4 sumA, sumB = default;
        int nA, tA;
        if (T == 16)
        {
            var b01 = Fold(acc.B0, acc.B2, u4, 4);         // tokens 0..7 or 8..15
            var b23 = Fold(acc.B1, acc.B3, u4, 4);
            var tile = Fold(b01, b23, u2, 2);               // 4 rows × 4 tokens
            var pair = FoldRows(tile, u1, 1);               // 2 rows × 4 tokens
            sumA = pair.R0;
            sumB = pair.R1;
            nA = n0 + (kl & 1) * 2;
            tA = t0 + (kl >> 1) * 4;
        }
        else
        {
            var tile = Fold(acc.B0, acc.B1, u4, 4);         // 4 rows × tokens 0..3 or 4..7
            var pair = FoldRows(tile, u2, 2);               // 2 rows
            sumA = FoldRow(pair, u1, 1);                    // 1 row
            nA = n0 + (kl & 3);
            tA = t0 + (kl >> 2) * 4;
        }

        // Sum over the kSplit warps that shared the row-warp's columns (kSplit is uniform over the group).
        if (kSplit > 1)
        {
            int s = warp * LaneSums * 32 + lane;
            partial[s] = sumA.X;
            partial[s + 32] = sumA.Y;
            partial[s + 64] = sumA.Z;
            partial[s + 96] = sumA.W;
            partial[s + 128] = sumB.X;
            partial[s + 160] = sumB.Y;
            partial[s + 192] = sumB.Z;
            partial[s + 224] = sumB.W;
            Group.Barrier();
            if (kw != 0) return;
            for (int k = 1; k < kSplit; k++)
            {
                int o = (warp + k) * LaneSums * 32 + lane;
                sumA = new Vec4(sumA.X + partial[o], sumA.Y + partial[o + 32], sumA.Z + partial[o + 64], sumA.W + partial[o + 96]);
                sumB = new Vec4(sumB.X + partial[o + 128], sumB.Y + partial[o + 160], sumB.Z + partial[o + 192], sumB.W + partial[o + 224]);
            }
        }

        Write4<TE>(y, rows, tokens, nA, tA, sumA);
        if (T == 16) Write4<TE>(y, rows, tokens, nA + 1, tA, sumB);
    }

    /// <summary>One quad (4 columns) of a step: the 4 rows' weights against each token's 4 activations.</summary>
    private static BatchedAccumulators Step<TW, TG>(BatchedAccumulators acc, Bits128 c0, Bits128 c1, Bits128 c2, Bits128 c3, int quad,
        ArrayView<Vec4> xq, TokenOffsets oa, TokenOffsets ob, TokenOffsets oc, TokenOffsets od)
        where TW : struct, IWeightFormat
        where TG : struct, ITokenGroup
    {
        // Each weight is converted once and used for every token.
        var r0 = default(TW).Quad(c0, quad);
        var r1 = default(TW).Quad(c1, quad);
        var r2 = default(TW).Quad(c2, quad);
        var r3 = default(TW).Quad(c3, quad);
        acc.B0 = Accumulate(acc.B0, r0, r1, r2, r3, xq, oa);
        acc.B1 = Accumulate(acc.B1, r0, r1, r2, r3, xq, ob);
        if (default(TG).Tokens == 16)
        {
            acc.B2 = Accumulate(acc.B2, r0, r1, r2, r3, xq, oc);
            acc.B3 = Accumulate(acc.B3, r0, r1, r2, r3, xq, od);
        }

        return acc;
    }

    /// <summary>4 rows × 4 tokens += W[rows, 4 columns] · x[tokens, same 4 columns]ᵀ: 64 FMAs for 4 loads.</summary>
    private static Tile4x4 Accumulate(Tile4x4 t, Vec4 r0, Vec4 r1, Vec4 r2, Vec4 r3, ArrayView<Vec4> xq, TokenOffsets o)
    {
        var x0 = xq[o.T0];
        var x1 = xq[o.T1];
        var x2 = xq[o.T2];
        var x3 = xq[o.T3];
        t.R0 = Row(t.R0, r0, x0, x1, x2, x3);
        t.R1 = Row(t.R1, r1, x0, x1, x2, x3);
        t.R2 = Row(t.R2, r2, x0, x1, x2, x3);
        t.R3 = Row(t.R3, r3, x0, x1, x2, x3);
        return t;
    }

    private static Vec4 Row(Vec4 acc, Vec4 w, Vec4 x0, Vec4 x1, Vec4 x2, Vec4 x3) =>
        new(Dot(acc.X, w, x0), Dot(acc.Y, w, x1), Dot(acc.Z, w, x2), Dot(acc.W, w, x3));

    private static float Dot(float acc, Vec4 w, Vec4 x) => acc + w.X * x.X + w.Y * x.Y + w.Z * x.Z + w.W * x.W;

    private static TokenOffsets Offsets(int t, int tokens, int vecsPerToken)
    {
        int last = tokens - 1;
        return new TokenOffsets
        {
            T0 = (t < last ? t : last) * vecsPerToken,
            T1 = (t + 1 < last ? t + 1 : last) * vecsPerToken,
            T2 = (t + 2 < last ? t + 2 : last) * vecsPerToken,
            T3 = (t + 3 < last ? t + 3 : last) * vecsPerToken,
        };
    }

    // ---------------------------------------------------------------- halving butterflies

    /// <summary>
    /// One butterfly level that halves the sums a lane holds: the lower lane of each pair keeps <paramref name="lower"/>
    /// and receives its partner's (returned here), the upper lane keeps <paramref name="upper"/>. What a lane sends moves
    /// in one shuffle, however many sums it holds (see <see cref="DenseKernelBodies.WarpSum"/>).
    /// </summary>
    private static T Received<T>(T lower, T upper, bool isUpper, int offset)
        where T : unmanaged =>
        Warp.ShuffleXor(isUpper ? lower : upper, offset);

    /// <summary>Two token blocks → one (lower lanes keep <paramref name="lower"/>'s tokens).</summary>
    private static Tile4x4 Fold(Tile4x4 lower, Tile4x4 upper, bool isUpper, int offset)
    {
        var keep = isUpper ? upper : lower;
        var received = Received(lower, upper, isUpper, offset);
        return new Tile4x4
        {
            R0 = Add(keep.R0, received.R0),
            R1 = Add(keep.R1, received.R1),
            R2 = Add(keep.R2, received.R2),
            R3 = Add(keep.R3, received.R3),
        };
    }

    /// <summary>4 rows → 2 (lower lanes keep rows 0, 1; upper lanes rows 2, 3).</summary>
    private static Tile2x4 FoldRows(Tile4x4 t, bool isUpper, int offset)
    {
        var lower = new Tile2x4 { R0 = t.R0, R1 = t.R1 };
        var upper = new Tile2x4 { R0 = t.R2, R1 = t.R3 };
        var keep = isUpper ? upper : lower;
        var received = Received(lower, upper, isUpper, offset);
        return new Tile2x4 { R0 = Add(keep.R0, received.R0), R1 = Add(keep.R1, received.R1) };
    }

    /// <summary>2 rows → 1 (lower lanes keep row 0).</summary>
    private static Vec4 FoldRow(Tile2x4 t, bool isUpper, int offset)
    {
        var keep = isUpper ? t.R1 : t.R0;
        return Add(keep, Received(t.R0, t.R1, isUpper, offset));
    }

    private static Vec4 Add(Vec4 a, Vec4 b) => new(a.X + b.X, a.Y + b.Y, a.Z + b.Z, a.W + b.W);

    private static void Write4<TE>(ArrayView<float> y, int rows, int tokens, int n, int t, Vec4 v)
        where TE : struct, IEpilogue
    {
        if (n >= rows) return;
        if (t < tokens) default(TE).Write(y, (long)t * rows + n, v.X);
        if (t + 1 < tokens) default(TE).Write(y, (long)(t + 1) * rows + n, v.Y);
        if (t + 2 < tokens) default(TE).Write(y, (long)(t + 2) * rows + n, v.Z);
        if (t + 3 < tokens) default(TE).Write(y, (long)(t + 3) * rows + n, v.W);
    }
}
