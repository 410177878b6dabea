using ILGPU;
using ILGPU.Algorithms;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// The decoder's non-attention kernels. Two schedules of the reductions:
/// <list type="bullet">
/// <item><b>Warp</b> (GPUs): a warp per output row reading the weight row once, coalesced, in 16-byte chunks, for up
/// to four tokens at a time; a shared-memory tiled matmul when many tokens share the weights; a group per row
/// for RMSNorm.</item>
/// <item><b>Serial</b> (ILGPU's CPU accelerator, where each simulated GPU thread is an OS thread and warp shuffles
/// cost about a millisecond): a few threads, each looping over whole rows.</item>
/// </list>
/// Element-wise kernels are grid-stride loops that serve both, launched with as many threads as suit the device.
/// </summary>
public static class DenseKernelBodies
{
    /// <summary>Tokens a warp carries through one pass over a weight row.</summary>
    public const int WarpTokens = 4;

    /// <summary>Tiled matmul: tokens and rows per tile, k per step, threads per group (16 × 16, 4 × 4 outputs each).</summary>
    public const int TileTokens = 64;
    public const int TileRows = 64;
    public const int TileK = 32;
    public const int TileThreads = 256;

    /// <summary>Threads per group of the group-per-row RMSNorm.</summary>
    public const int NormThreads = 256;

    // ---------------------------------------------------------------- embedding

    /// <summary>x[t, :] = table[ids[t], :] (converted to f32).</summary>
    /// <param name="table">[vocab, hidden] weights, as 16-byte chunks</param>
    /// <param name="ids">[tokens] token ids (checked on the host)</param>
    /// <param name="x">[tokens, hidden] f32</param>
    public static void Embedding<TW>(Index1D thread, ArrayView<Bits128> table, ArrayView<int> ids, ArrayView<float> x,
        int tokens, int hidden, int stride)
        where TW : struct, IWeightFormat
    {
        int e = default(TW).ElementsPerChunk;
        int chunksPerRow = hidden / e;
        long total = (long)tokens * chunksPerRow;
        for (long item = thread; item < total; item += stride)
        {
            int t = (int)(item / chunksPerRow);
            int c = (int)(item % chunksPerRow);
            var w = table[(long)ids[t] * chunksPerRow + c];
            default(TW).Unpack(w, x, (long)t * hidden + (long)c * e, 1);
        }
    }

    // ---------------------------------------------------------------- RMSNorm

    /// <summary>Warp schedule: one group per output row. y[r] = x[rows[r]] / sqrt(mean(x²) + eps) * weight.</summary>
    /// <param name="x">[*, hidden] f32 input rows</param>
    /// <param name="rowMap">[rows] which input row each output row normalizes</param>
    /// <param name="weight">[hidden] f32</param>
    /// <param name="y">[rows, hidden] f32</param>
    public static void RmsNormGroup(ArrayView<Vec4> x, ArrayView<int> rowMap, ArrayView<Vec4> weight, ArrayView<Vec4> y, int hidden, float eps)
    {
        var partial = SharedMemory.Allocate<float>(32); // one sum per warp
        int r = Grid.IdxX;
        int vecs = hidden / 4;
        long src = (long)rowMap[r] * vecs;
        long dst = (long)r * vecs;

        // Sum of squares: each thread strides over the row, then warps reduce, then the group.
        float sum = 0;
        for (int v = Group.IdxX; v < vecs; v += Group.DimX)
        {
            var a = x[src + v];
            sum += a.X * a.X + a.Y * a.Y + a.Z * a.Z + a.W * a.W;
        }

        sum = WarpSum(sum);
        if (Warp.LaneIdx == 0) partial[Warp.WarpIdx] = sum;
        Group.Barrier();
        float total = 0;
        int warps = Group.DimX / Warp.WarpSize;
        for (int w = 0; w < warps; w++) total += partial[w];
        float scale = XMath.Rsqrt(total / hidden + eps);

        // Normalize and scale.
        for (int v = Group.IdxX; v < vecs; v += Group.DimX)
        {
            var a = x[src + v];
            var g = weight[v];
            y[dst + v] = new Vec4(a.X * scale * g.X, a.Y * scale * g.Y, a.Z * scale * g.Z, a.W * scale * g.W);
        }
    }

    /// <summary>Serial schedule: each thread normalizes whole rows.</summary>
    public static void RmsNormSerial(Index1D thread, ArrayView<Vec4> x, ArrayView<int> rowMap, ArrayView<Vec4> weight, ArrayView<Vec4> y,
        int rows, int hidden, float eps, int stride)
    {
        int vecs = hidden / 4;
        for (int r = thread; r < rows; r += stride)
        {
            long src = (long)rowMap[r] * vecs;
            long dst = (long)r * vecs;
            float sum = 0;
            for (int v = 0; v < vecs; v++)
            {
                var a = x[src + v];
                sum += a.X * a.X + a.Y * a.Y + a.Z * a.Z + a.W * a.W;
            }

            float scale = XMath.Rsqrt(sum / hidden + eps);
            for (int v = 0; v < vecs; v++)
            {
                var a = x[src + v];
                var g = weight[v];
                y[dst + v] = new Vec4(a.X * scale * g.X, a.Y * scale * g.Y, a.Z * scale * g.Z, a.W * scale * g.W);
            }
        }
    }

    // ---------------------------------------------------------------- projections: y[t, n] (+)= Σ_k x[t, k] · W[n, k]

    /// <summary>
    /// Warp schedule for few tokens (decode): warp (row n, token group g) reads W[n, :] once, coalesced, 16 bytes
    /// per lane per load, and accumulates it against up to <see cref="WarpTokens"/> tokens' activations (which
    /// stay in L1/L2). Consecutive warps take consecutive rows, so the weight matrix streams once per token group.
    /// </summary>
    /// <param name="w">[rows, cols] weights as 16-byte chunks</param>
    /// <param name="x">[tokens, cols] f32 as Vec4</param>
    /// <param name="y">[tokens, rows] f32</param>
    /// <param name="prefetch">the next projection's weights the grid's first or last warps pull into L2, and under
    /// <typeparamref name="TP"/> this matrix's address for the warp's own row (<see cref="L2Prefetch"/>)</param>
    public static void LinearWarp<TW, TE, TD, TP>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens,
        L2Prefetch prefetch)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
        => LinearWarpAt<TW, TE, TD, TP>((Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize, w, x, y, rows, cols, tokens, prefetch);

    /// <summary>
    /// <see cref="LinearWarp{TW, TE, TD, TP}"/> for a programmatic dependent launch (<see cref="DecodeLaunches.PerStageProgrammatic"/>):
    /// it lets the next kernel start at once, loads its row's first step (weights, which no kernel writes), and only then
    /// waits for the kernel before it, whose output x is. Elsewhere than CUDA the two marks are nothing and the kernel is
    /// the carried-step matvec.
    /// </summary>
    public static void LinearWarpProgrammatic<TW, TE, TD, TP>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens,
        L2Prefetch prefetch)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
    {
        int warp = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        ProgrammaticDependency.LetTheNextStart();
        var carried = FirstStep<TW, TD>(warp, w, rows, cols, tokens);
        ProgrammaticDependency.WaitForThePrevious();
        LinearWarpAt<TW, TE, TD, TP, CarryFirstStep>(warp, w, x, y, rows, cols, tokens, prefetch, carried);
    }

    /// <summary>Warp <paramref name="warp"/>'s share of <see cref="LinearWarp{TW, TE, TD, TP}"/> (nothing past the last row
    /// of the last token group): the launch's own warp, or one of the work items a grid-synced launch's warps loop over
    /// (<see cref="LayerTailBodies"/>).</summary>
    public static void LinearWarpAt<TW, TE, TD, TP>(int warp, ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens,
        L2Prefetch prefetch)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
        => LinearWarpAt<TW, TE, TD, TP, NoCarry>(warp, w, x, y, rows, cols, tokens, prefetch, default);

    /// <summary><see cref="LinearWarpAt{TW, TE, TD, TP}"/> whose first step may arrive loaded: under
    /// <typeparamref name="TK"/> = <see cref="CarryFirstStep"/>, <paramref name="carried"/> from <see cref="FirstStep{TW, TD}"/>
    /// for this warp, where it loaded one.</summary>
    public static void LinearWarpAt<TW, TE, TD, TP, TK>(int warp, ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens,
        L2Prefetch prefetch, CarriedStep carried)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
        where TK : struct, IStepCarry
    {
        int lane = Warp.LaneIdx;
        int groups = (tokens + WarpTokens - 1) / WarpTokens;
        if (warp >= rows * groups) return; // uniform across the warp
        prefetch.Issue(warp, lane, starting: true); // PrefetchPoint.Start: the next matrix's lines, before this row's

        int n = warp % rows;
        int t0 = warp / rows * WarpTokens;
        int chunks = cols / default(TW).ElementsPerChunk;
        int vecsPerToken = cols / 4;
        bool has1 = t0 + 1 < tokens, has2 = t0 + 2 < tokens, has3 = t0 + 3 < tokens;
        long x0 = (long)t0 * vecsPerToken;

        long row = (long)n * chunks;
        // TD chunks per lane per step, all loaded before any is used: the warp waits one memory round trip per
        // 1, 2 or 4 KB (2, 4, 8 chunks) of its row, not per 512 B. (One chunk per step kept too few bytes in flight for
        // a 4096-row matrix, whose 4096 warps leave half an H200's warp slots empty.) A row that is not a whole number
        // of steps ends with one more step whose overrunning lanes reload the row's last chunk: one round trip, where
        // a chunk-at-a-time remainder took one per chunk.
        int step = default(TD).PerLane * Warp.WarpSize;
        int whole = chunks / step * step;
        if (default(TP).PullsOwnRows) prefetch.IssueRow(row, step, chunks, lane); // the later steps' lines, before the first step's loads
        var sums = default(WarpTokenSums);
        int c = lane;
        if (default(TK).Carries && carried.Loaded != 0)
        {
            sums = sums.AddLoaded<TW, TD, WholeStep>(carried.A, c, chunks, x, x0, vecsPerToken, has1, has2, has3);   // the first step, loaded ahead
            c += step;
        }
        for (; c - lane < whole; c += step) // c - lane: the step's first chunk, uniform across the warp
            sums = sums.Add<TW, TD, WholeStep>(w, row, c, chunks, x, x0, vecsPerToken, has1, has2, has3);
        if (whole < chunks)
            sums = sums.Add<TW, TD, LastStep>(w, row, c, chunks, x, x0, vecsPerToken, has1, has2, has3);
        prefetch.Issue(warp, lane, starting: false); // PrefetchPoint.End: the row's loads are used; the next matrix's lines while the grid drains

        sums.Write<TE>(y, rows, n, t0, has1, has2, has3, lane);
    }

    /// <summary>The first whole load step of warp <paramref name="warp"/>'s row in <see cref="LinearWarpAt{TW, TE, TD, TP, TK}"/>
    /// over a [<paramref name="rows"/>, <paramref name="cols"/>] matrix: weights only, so a grid-synced stage's warps load it
    /// before the barrier that starts the stage. Not loaded when the warp has no row there or the row is shorter than a step.</summary>
    public static CarriedStep FirstStep<TW, TD>(int warp, ArrayView<Bits128> w, int rows, int cols, int tokens)
        where TW : struct, IWeightFormat
        where TD : struct, IRowChunks
    {
        var carried = default(CarriedStep);
        int chunks = cols / default(TW).ElementsPerChunk;
        if (warp >= rows * ((tokens + WarpTokens - 1) / WarpTokens) || chunks < default(TD).PerLane * Warp.WarpSize) return carried;
        carried.A = LaneChunks.Load<TD, WholeStep>(w, (long)(warp % rows) * chunks, Warp.LaneIdx, chunks);
        carried.Loaded = 1;
        return carried;
    }

    /// <summary>The dot products of a warp's tokens in one lane of <see cref="LinearWarp{TW, TE, TD, TP}"/>.</summary>
    internal struct WarpTokenSums : ILaneSums<WarpTokenSums>
    {
        public float A0, A1, A2, A3;

        /// <summary>The sums with one step of the row: the lane's chunks c, c + 32, … loaded first, then each token's
        /// dot products (the first token's in one block, so ptxas issues its activation loads with the weights'; the
        /// other tokens reuse the chunks from registers).</summary>
        public readonly WarpTokenSums Add<TW, TD, TE>(ArrayView<Bits128> w, long row, int c, int chunks, ArrayView<Vec4> x, long x0, int vecsPerToken,
            bool has1, bool has2, bool has3)
            where TW : struct, IWeightFormat
            where TD : struct, IRowChunks
            where TE : struct, IStepEdge
            => AddLoaded<TW, TD, TE>(LaneChunks.Load<TD, TE>(w, row, c, chunks), c, chunks, x, x0, vecsPerToken, has1, has2, has3);

        /// <summary><see cref="Add{TW, TD, TE}"/> with the step's chunks already loaded.</summary>
        public readonly WarpTokenSums AddLoaded<TW, TD, TE>(LaneChunks chunk, int c, int chunks, ArrayView<Vec4> x, long x0, int vecsPerToken,
            bool has1, bool has2, bool has3)
            where TW : struct, IWeightFormat
            where TD : struct, IRowChunks
            where TE : struct, IStepEdge
        {
            var r = this;
            r.A0 += chunk.Dot<TW, TD, TE>(x, x0, c, chunks);
            if (has1) r.A1 += chunk.Dot<TW, TD, TE>(x, x0 + vecsPerToken, c, chunks);
            if (has2) r.A2 += chunk.Dot<TW, TD, TE>(x, x0 + 2L * vecsPerToken, c, chunks);
            if (has3) r.A3 += chunk.Dot<TW, TD, TE>(x, x0 + 3L * vecsPerToken, c, chunks);
            return r;
        }

        public readonly WarpTokenSums Plus(WarpTokenSums o) => new() { A0 = A0 + o.A0, A1 = A1 + o.A1, A2 = A2 + o.A2, A3 = A3 + o.A3 };

        /// <summary>The sums reduced across the warp, written by lane 0 as row <paramref name="n"/> of y ([tokens, rows]) for
        /// tokens t0 … t0 + 3 (those present). At batch 1 only the first token's sum is reduced (a uniform condition);
        /// otherwise the four cross the warp together.</summary>
        public readonly void Write<TE>(ArrayView<float> y, int rows, int n, int t0, bool has1, bool has2, bool has3, int lane)
            where TE : struct, IEpilogue
        {
            var total = has1 ? WarpSum(this) : new WarpTokenSums { A0 = WarpSum(A0) };
            if (lane != 0) return;
            default(TE).Write(y, (long)t0 * rows + n, total.A0);
            if (has1) default(TE).Write(y, (long)(t0 + 1) * rows + n, total.A1);
            if (has2) default(TE).Write(y, (long)(t0 + 2) * rows + n, total.A2);
            if (has3) default(TE).Write(y, (long)(t0 + 3) * rows + n, total.A3);
        }
    }

    /// <summary>
    /// Warp schedule for many tokens (prefill): a group computes a <see cref="TileTokens"/> × <see cref="TileRows"/>
    /// tile of y, staging <see cref="TileK"/>-wide slices of X and W (converted to f32) in shared memory; each
    /// thread owns a 4 × 4 block of outputs. cols must be a multiple of <see cref="TileK"/>.
    /// <para>Shared memory, not FMAs, bounds such a tile, so every shared access is 16 bytes and conflict-free. Per
    /// k a thread reads its 4 tokens and 4 rows as two 16-byte loads (a warp: 1 + 2 wavefronts of 128 B) for 16
    /// FMAs: 3 wavefronts (of 128 B/clk/SM) per 4 cycles of the warp's FMAs (4 warp-FMAs/clk/SM); scalar loads
    /// took 12. Staging: a thread loads a 4 × 4 block (4 tokens' or 4 rows' 16 bytes) and stores it transposed as
    /// four 16-byte stores. The slices are [k, quad] with the quad index XORed with (k / 4) mod 8, so the 8 lanes of a
    /// 16-byte access phase (which store 8 different k quads of one token quad, or of two row quads) hit 8 different
    /// bank groups; the reads, 16 consecutive row quads or 2 token quads per k, stay conflict-free under the XOR.</para>
    /// </summary>
    /// <param name="w">[rows, cols] weights as 16-byte chunks</param>
    /// <param name="x">[tokens, cols] f32 as Vec4</param>
    /// <param name="y">[tokens, rows] f32</param>
    public static void LinearTiled<TW, TE>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
    {
        const int quads = TileTokens / 4; // token quads per k, and row quads (TileRows == TileTokens)
        var xs = SharedMemory.Allocate<Vec4>(TileK * quads); // [k, token quad ^ swizzle(k)]: X slice, transposed
        var ws = SharedMemory.Allocate<Vec4>(TileK * quads); // [k, row quad ^ swizzle(k)]: W slice, transposed
        int tid = Group.IdxX;
        int tx = tid % quads; // owns rows n0 + 4 tx .. + 3
        int ty = tid / quads; // owns tokens t0 + 4 ty .. + 3
        int rowTiles = (rows + TileRows - 1) / TileRows;
        int n0 = Grid.IdxX % rowTiles * TileRows;
        int t0 = Grid.IdxX / rowTiles * TileTokens;
        int e = default(TW).ElementsPerChunk;
        int chunkQuads = default(TW).QuadsPerChunk;
        int chunksPerRow = cols / e;
        int vecsPerToken = cols / 4;
        const int kQuads = TileK / 4;
        int wChunks = TileK / e; // chunks per row of the slice

        var acc = default(Tile4x4); // acc.Ri: token t0 + 4 ty + i × rows n0 + 4 tx .. + 3
        for (int k0 = 0; k0 < cols; k0 += TileK)
        {
            // Stage X[t0.., k0..k0+TileK): thread (token quad tq, k quad kq) loads 4 tokens × 4 columns (8 lanes
            // read 128 contiguous bytes of a token row) and stores them as 4 columns × 4 tokens. Tokens past the
            // end are zeros.
            for (int v = tid; v < quads * kQuads; v += TileThreads)
            {
                int kq = v % kQuads;
                int tq = v / kQuads;
                int t = t0 + 4 * tq;
                long col = k0 / 4 + kq;
                var a0 = t < tokens ? x[(long)t * vecsPerToken + col] : default;
                var a1 = t + 1 < tokens ? x[(long)(t + 1) * vecsPerToken + col] : default;
                var a2 = t + 2 < tokens ? x[(long)(t + 2) * vecsPerToken + col] : default;
                var a3 = t + 3 < tokens ? x[(long)(t + 3) * vecsPerToken + col] : default;
                StoreTransposed(xs, 4 * kq, tq, a0, a1, a2, a3);
            }

            // Stage W[n0.., k0..k0+TileK): thread (row quad rq, chunk cc) loads the chunk of 4 rows (16 bytes
            // each) and stores its quads as 4 columns × 4 rows. The upper half of the group starts, so that X (128
            // blocks) and W (64 or 128) load in parallel.
            for (int v = (tid + TileThreads / 2) % TileThreads; v < quads * wChunks; v += TileThreads)
            {
                int cc = v % wChunks;
                int rq = v / wChunks;
                int n = n0 + 4 * rq;
                long chunk = k0 / e + cc;
                var w0 = n < rows ? w[(long)n * chunksPerRow + chunk] : default;
                var w1 = n + 1 < rows ? w[(long)(n + 1) * chunksPerRow + chunk] : default;
                var w2 = n + 2 < rows ? w[(long)(n + 2) * chunksPerRow + chunk] : default;
                var w3 = n + 3 < rows ? w[(long)(n + 3) * chunksPerRow + chunk] : default;
                int k = cc * e;
                StoreTransposed(ws, k, rq, default(TW).Quad(w0, 0), default(TW).Quad(w1, 0), default(TW).Quad(w2, 0), default(TW).Quad(w3, 0));
                if (chunkQuads == 2)
                    StoreTransposed(ws, k + 4, rq, default(TW).Quad(w0, 1), default(TW).Quad(w1, 1), default(TW).Quad(w2, 1), default(TW).Quad(w3, 1));
            }

            Group.Barrier();

            // Accumulate the 4 × 4 outer products of this k slice, 4 k at a time (one swizzle per k quad).
            for (int kq = 0; kq < kQuads; kq++)
            {
                int xb = 4 * kq * quads + (ty ^ kq);
                int wb = 4 * kq * quads + (tx ^ kq);
                acc = Outer(acc, xs[xb], ws[wb]);
                acc = Outer(acc, xs[xb + quads], ws[wb + quads]);
                acc = Outer(acc, xs[xb + 2 * quads], ws[wb + 2 * quads]);
                acc = Outer(acc, xs[xb + 3 * quads], ws[wb + 3 * quads]);
            }

            Group.Barrier(); // the slices are overwritten next step
        }

        int tt = t0 + ty * 4;
        int nn = n0 + tx * 4;
        WriteRow<TE>(y, rows, tokens, tt, nn, acc.R0);
        WriteRow<TE>(y, rows, tokens, tt + 1, nn, acc.R1);
        WriteRow<TE>(y, rows, tokens, tt + 2, nn, acc.R2);
        WriteRow<TE>(y, rows, tokens, tt + 3, nn, acc.R3);
    }

    /// <summary>
    /// Stores a 4 × 4 block given as 4 quads (a0..a3: one token's or row's columns k .. k+3) as 4 column vectors
    /// into a [k, quad] slice: slice[k + j, quad ^ ((k / 4) mod 8)] = (a0[j], a1[j], a2[j], a3[j]).
    /// </summary>
    private static void StoreTransposed(ArrayView<Vec4> slice, int k, int quad, Vec4 a0, Vec4 a1, Vec4 a2, Vec4 a3)
    {
        const int quads = TileTokens / 4;
        int b = k * quads + (quad ^ (k / 4 % 8));
        slice[b] = new Vec4(a0.X, a1.X, a2.X, a3.X);
        slice[b + quads] = new Vec4(a0.Y, a1.Y, a2.Y, a3.Y);
        slice[b + 2 * quads] = new Vec4(a0.Z, a1.Z, a2.Z, a3.Z);
        slice[b + 3 * quads] = new Vec4(a0.W, a1.W, a2.W, a3.W);
    }

    /// <summary>acc[i] += a[i] · b: the outer product of 4 tokens' and 4 rows' values at one k (16 FMAs).</summary>
    private static Tile4x4 Outer(Tile4x4 acc, Vec4 a, Vec4 b) => new()
    {
        R0 = new Vec4(acc.R0.X + a.X * b.X, acc.R0.Y + a.X * b.Y, acc.R0.Z + a.X * b.Z, acc.R0.W + a.X * b.W),
        R1 = new Vec4(acc.R1.X + a.Y * b.X, acc.R1.Y + a.Y * b.Y, acc.R1.Z + a.Y * b.Z, acc.R1.W + a.Y * b.W),
        R2 = new Vec4(acc.R2.X + a.Z * b.X, acc.R2.Y + a.Z * b.Y, acc.R2.Z + a.Z * b.Z, acc.R2.W + a.Z * b.W),
        R3 = new Vec4(acc.R3.X + a.W * b.X, acc.R3.Y + a.W * b.Y, acc.R3.Z + a.W * b.Z, acc.R3.W + a.W * b.W),
    };

    private static void WriteRow<TE>(ArrayView<float> y, int rows, int tokens, int t, int n, Vec4 v)
        where TE : struct, IEpilogue
        => WriteRow<TE>(y, rows, tokens, t, n, v.X, v.Y, v.Z, v.W);

    private static void WriteRow<TE>(ArrayView<float> y, int rows, int tokens, int t, int n, float v0, float v1, float v2, float v3)
        where TE : struct, IEpilogue
    {
        if (t >= tokens) return;
        long b = (long)t * rows + n;
        if (n < rows) default(TE).Write(y, b, v0);
        if (n + 1 < rows) default(TE).Write(y, b + 1, v1);
        if (n + 2 < rows) default(TE).Write(y, b + 2, v2);
        if (n + 3 < rows) default(TE).Write(y, b + 3, v3);
    }

    /// <summary>Serial schedule: each thread computes whole rows of W against every token.</summary>
    public static void LinearSerial<TW, TE>(Index1D thread, ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y,
        int rows, int cols, int tokens, int stride)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
    {
        int e = default(TW).ElementsPerChunk;
        int chunks = cols / e;
        int vecsPerToken = cols / 4;
        int vecsPerChunk = e / 4;
        for (int n = thread; n < rows; n += stride)
        {
            long row = (long)n * chunks;
            for (int t = 0; t < tokens; t++)
            {
                long xv = (long)t * vecsPerToken;
                float acc = 0;
                for (int c = 0; c < chunks; c++)
                    acc += default(TW).Dot(w[row + c], x, xv + (long)c * vecsPerChunk);
                default(TE).Write(y, (long)t * rows + n, acc);
            }
        }
    }

    // ---------------------------------------------------------------- rotary embedding

    /// <summary>
    /// Splits the fused projection into q, k, v and rotates q and k (Hugging Face's rotate_half pairing: element i
    /// with i + head_dim/2): out[i] = x[i]·cos − x[i+h]·sin, out[i+h] = x[i+h]·cos + x[i]·sin. The rotation and the
    /// writes are <see cref="RopeSplitOutput{TKv}.Write"/>, the fused projection's epilogue.
    /// </summary>
    /// <param name="qkv">[tokens, (heads + 2 kv_heads) * head_dim] f32: q | k | v per token</param>
    /// <param name="output">q, k, v ([tokens, (kv_)heads, head_dim] each), positions and the rotary tables</param>
    public static void RopeSplit<TKv>(Index1D thread, ArrayView<float> qkv, RopeSplitOutput<TKv> output, int tokens, int stride)
        where TKv : struct, IKvRowTarget
    {
        int half = output.HeadDim / 2;
        int allHeads = output.Heads + 2 * output.KvHeads;
        long total = (long)tokens * allHeads * half;
        for (long item = thread; item < total; item += stride)
        {
            int unit = (int)(item % ((long)allHeads * half)); // head * half + i: the pair (i, i + half) of one head
            int t = (int)(item / ((long)allHeads * half));
            long src = (long)t * allHeads * output.HeadDim + unit / half * output.HeadDim + unit % half;
            output.Write(unit, t, qkv[src], qkv[src + half]);
        }
    }

    // ---------------------------------------------------------------- MLP activation

    /// <summary>a[t, j] = silu(gate[t, j]) · up[t, j], written by <see cref="SwiGluOutput.Write"/> (the fused epilogue's own).</summary>
    /// <param name="gateUp">[tokens, 2 * intermediate] f32: gate | up per token</param>
    /// <param name="output">a: [tokens, intermediate] f32</param>
    public static void SwiGlu(Index1D thread, ArrayView<float> gateUp, SwiGluOutput output, int tokens, int stride)
    {
        int intermediate = output.Intermediate;
        long total = (long)tokens * intermediate;
        for (long item = thread; item < total; item += stride)
        {
            int t = (int)(item / intermediate);
            int j = (int)(item % intermediate);
            long gate = (long)t * 2 * intermediate + j;
            output.Write(j, t, gateUp[gate], gateUp[gate + intermediate]);
        }
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Sum over the warp's lanes, in every lane.</summary>
    internal static float WarpSum(float v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            v += Warp.ShuffleXor(v, offset);
        return v;
    }

    /// <summary>
    /// A lane's several sums, each over the warp's lanes, in every lane: they cross the warp together, one shuffle of the
    /// struct per butterfly level (as the batched kernels' folds do). On CUDA that is a <c>shfl</c> per float all the
    /// same, in 5 dependent levels instead of 5 per sum; on ILGPU's CPU accelerator, where a shuffle of any size costs
    /// three barriers of the warp's 32 OS threads, it made the tests' decode steps 3.6 times faster.
    /// </summary>
    internal static T WarpSum<T>(T v)
        where T : unmanaged, ILaneSums<T>
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            v = v.Plus(Warp.ShuffleXor(v, offset));
        return v;
    }
}

/// <summary>Sums a lane holds that add field by field (<see cref="DenseKernelBodies.WarpSum{T}"/>).</summary>
internal interface ILaneSums<T>
    where T : struct
{
    T Plus(T other);
}
