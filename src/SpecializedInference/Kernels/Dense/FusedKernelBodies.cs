using ILGPU;
using ILGPU.Algorithms;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// Few-token (decode) projections with the RMSNorm before them and the element-wise step after them fused in, so
/// that a decoder layer's dense work is four launches instead of eight: at batch 1 a launch costs about as much as
/// streaming a few MB of weights, and the unfused steps moved only kilobytes each.
/// <code>
///   q, k, v = rope(split(norm(x) · Wqkvᵀ))      NormLinearWarp&lt;RopeSplitOutput&gt;  (was RmsNorm, Linear, RopeSplit; k, v into the cache)
///   a       = silu(norm(x) · Wgateᵀ) * (norm(x) · Wupᵀ)   NormLinearWarp&lt;SwiGluOutput&gt;  (was RmsNorm, Linear, SwiGlu)
///   logits  = norm(x[rows]) · Wheadᵀ             NormLinearWarp&lt;RowPairOutput&gt;  (was RmsNorm, Linear)
/// </code>
/// The warp-per-row matvec of <see cref="DenseKernelBodies.LinearWarp{TW, TE, TD, TP}"/>, with two changes:
/// <list type="bullet">
/// <item><b>Norm prologue, without a prologue.</b> norm(x)·wᵀ = (Σ_k w_k g_k x_k) / rms(x). The 1/rms factor moves to
/// the end, and rms(x) needs Σ x², which is made of exactly the activations the warp's lanes load anyway for the dot
/// product (together the 32 lanes walk the whole row of x for each of their tokens). So each warp adds x·x to its
/// own sum of squares as it goes and reduces it with the dot products: no extra read of x, no shared memory, no
/// barrier, no serial prologue before the weights start streaming. It costs one more FMA per activation per token
/// (the dot product does one per weight row): arithmetic the memory-bound loop has spare. The norm weight g is
/// folded into each weight chunk once (w∘g), whatever the number of tokens.</item>
/// <item><b>Row-pair epilogue.</b> RoPE mixes rows i and i + head_dim/2 of a head, SwiGLU rows j and j + intermediate
/// of gate|up: a warp computes both rows of its pair in one pass over x (two weight loads in flight per lane per
/// step instead of one, half the warps), then rotates or gates in registers and writes q/k/v or the activation.
/// The qkv and gate|up results never reach memory. The LM head pairs neighbouring rows for the loads' sake.</item>
/// </list>
/// Used for up to <see cref="DenseKernels.FusedMaxTokens"/> tokens; larger steps keep the unfused sequence
/// (batched projection or tiled matmul), where the norm and the element-wise kernels are a smaller share of the work.
/// The serial schedule (the CPU accelerator) fuses the same steps with <see cref="NormLinearSerial{TW, TO}"/>.
/// </summary>
public static class FusedKernelBodies
{
    /// <summary>
    /// output ← TO(RMSNorm(x[xRows[t]]) ∘ g · Wᵀ): warp (unit u, token group) computes the unit's two weight rows
    /// for up to <see cref="DenseKernelBodies.WarpTokens"/> tokens, reading each row once, 16 bytes per lane
    /// per step. The token groups of a unit are neighbouring warps, so when a step has two (5 to 8 tokens) the
    /// second reads the rows while they are still in L2 (or L1, in the same group).
    /// </summary>
    /// <param name="w">[rows, cols] weights as 16-byte chunks</param>
    /// <param name="x">[*, cols] f32 as Vec4: the residual stream (not normalized)</param>
    /// <param name="xRows">[tokens] which row of x each token reads (the identity in the layers; the logits rows for the head)</param>
    /// <param name="g">[cols] f32 as Vec4: the RMSNorm weight</param>
    /// <param name="output">where the unit's rows go (see <see cref="IProjectionOutput"/>)</param>
    /// <param name="prefetch">the next projection's weights the grid's first or last warps pull into L2, and under
    /// <typeparamref name="TP"/> this matrix's address for the warp's own rows (<see cref="L2Prefetch"/>)</param>
    public static void NormLinearWarp<TW, TO, TD, TP>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<int> xRows, ArrayView<Vec4> g,
        TO output, int cols, int tokens, float eps, L2Prefetch prefetch)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
        => NormLinearWarpAt<TW, TO, TD, TP>((Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize, w, x, xRows, g, output, cols, tokens, eps, prefetch);

    /// <summary><see cref="NormLinearWarp{TW, TO, TD, TP}"/> for a programmatic dependent launch, as
    /// <see cref="DenseKernelBodies.LinearWarpProgrammatic{TW, TE, TD, TP}"/>: both rows' first step loaded before the wait.</summary>
    public static void NormLinearWarpProgrammatic<TW, TO, TD, TP>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<int> xRows, ArrayView<Vec4> g,
        TO output, int cols, int tokens, float eps, L2Prefetch prefetch)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
    {
        int warp = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        ProgrammaticDependency.LetTheNextStart();
        var carried = FirstStep<TW, TO, TD>(warp, w, output, cols, tokens);
        ProgrammaticDependency.WaitForThePrevious();
        NormLinearWarpAt<TW, TO, TD, TP, CarryFirstStep>(warp, w, x, xRows, g, output, cols, tokens, eps, prefetch, carried);
    }

    /// <summary>Warp <paramref name="warp"/>'s share of <see cref="NormLinearWarp{TW, TO, TD, TP}"/> (nothing past the last
    /// unit of the last token group): the launch's own warp, or one of the work items a grid-synced launch's warps loop
    /// over (<see cref="LayerTailBodies"/>).</summary>
    public static void NormLinearWarpAt<TW, TO, TD, TP>(int warp, ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<int> xRows, ArrayView<Vec4> g,
        TO output, int cols, int tokens, float eps, L2Prefetch prefetch)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
        => NormLinearWarpAt<TW, TO, TD, TP, NoCarry>(warp, w, x, xRows, g, output, cols, tokens, eps, prefetch, default);

    /// <summary><see cref="NormLinearWarpAt{TW, TO, TD, TP}"/> whose first step may arrive loaded: under
    /// <typeparamref name="TK"/> = <see cref="CarryFirstStep"/>, <paramref name="carried"/> from <see cref="FirstStep{TW, TO, TD}"/>
    /// for this warp, where it loaded one.</summary>
    public static void NormLinearWarpAt<TW, TO, TD, TP, TK>(int warp, ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<int> xRows, ArrayView<Vec4> g,
        TO output, int cols, int tokens, float eps, L2Prefetch prefetch, CarriedStep carried)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
        where TK : struct, IStepCarry
    {
        const int warpTokens = DenseKernelBodies.WarpTokens;
        int lane = Warp.LaneIdx;
        int tokenGroups = (tokens + warpTokens - 1) / warpTokens;
        if (warp >= output.Units * tokenGroups) return; // uniform across the warp
        prefetch.Issue(warp, lane, starting: true); // PrefetchPoint.Start: the next matrix's lines, before these rows'

        var unit = WarpUnit.Of<TW, TO>(warp, tokenGroups, xRows, tokens, cols, output);
        int u = unit.U, t0 = unit.T0, chunks = unit.Chunks;
        var group = unit.Tokens;
        long rowA = unit.RowA, rowB = unit.RowB;

        // Per token: a = Σ w_A∘g·x, b = Σ w_B∘g·x, s = Σ x² (lane-partial until the reduction).
        // TD chunks of each row per lane per step, loaded before any is used (2 × TD 16-byte weight loads in flight per
        // lane): one memory round trip per 2 × TD × 512 B of the warp's rows. A row that is not a whole number of
        // steps ends with one more step whose overrunning lanes reload the row's last chunk (one round trip).
        int step = default(TD).PerLane * Warp.WarpSize;
        int whole = chunks / step * step;
        if (default(TP).PullsOwnRows)
        {
            // Both rows' later steps, before the first step's loads.
            prefetch.IssueRow(rowA, step, chunks, lane);
            prefetch.IssueRow(rowB, step, chunks, lane);
        }
        var sums = default(GroupSums);
        int c = lane;
        if (default(TK).Carries && carried.Loaded != 0)
        {
            sums = sums.StepLoaded<TW, TD, WholeStep>(carried.A, carried.B, c, chunks, g, x, group);   // the first step, loaded ahead
            c += step;
        }
        for (; c - lane < whole; c += step) // c - lane: the step's first chunk, uniform across the warp
            sums = sums.Step<TW, TD, WholeStep>(w, rowA, rowB, c, chunks, g, x, group);
        if (whole < chunks)
            sums = sums.Step<TW, TD, LastStep>(w, rowA, rowB, c, chunks, g, x, group);
        prefetch.Issue(warp, lane, starting: false); // PrefetchPoint.End: the rows' loads are used; the next matrix's lines while the grid drains

        sums.Write(output, u, t0, group, cols, eps, lane);
    }

    /// <summary>The first whole load step of both rows of warp <paramref name="warp"/>'s unit in
    /// <see cref="NormLinearWarpAt{TW, TO, TD, TP, TK}"/> over <paramref name="w"/> ([rows, <paramref name="cols"/>]): weights
    /// only, so a grid-synced stage's warps load it before the barrier that starts the stage. Not loaded when the warp has
    /// no unit there or the rows are shorter than a step.</summary>
    public static CarriedStep FirstStep<TW, TO, TD>(int warp, ArrayView<Bits128> w, TO output, int cols, int tokens)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
    {
        var carried = default(CarriedStep);
        int tokenGroups = (tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens;
        int chunks = cols / default(TW).ElementsPerChunk;
        if (warp >= output.Units * tokenGroups || chunks < default(TD).PerLane * Warp.WarpSize) return carried;
        int u = warp / tokenGroups;   // as WarpUnit.Of
        carried.A = LaneChunks.Load<TD, WholeStep>(w, (long)output.FirstRow(u) * chunks, Warp.LaneIdx, chunks);
        carried.B = LaneChunks.Load<TD, WholeStep>(w, (long)output.SecondRow(u) * chunks, Warp.LaneIdx, chunks);
        carried.Loaded = 1;
        return carried;
    }

    /// <summary>
    /// <see cref="NormLinearWarp{TW, TO, TD, TP}"/>'s work, warp (unit u, token group), with the unit's two rows streamed
    /// through the lane's ring of shared memory by asynchronous copies (<see cref="MatvecLoads.AsyncCopy"/>,
    /// <see cref="AsyncCopyBodies"/>): <see cref="AsyncCopyBodies.Stages"/> steps of both rows in flight, one chunk of each
    /// used per step (past a row's end its last chunk again, the sums left as they were).
    /// </summary>
    /// <param name="wAddress">the device address of <paramref name="w"/>'s first chunk (for the copies)</param>
    public static void NormLinearWarpAsync<TW, TO, TDependency>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<int> xRows, ArrayView<Vec4> g,
        TO output, int cols, int tokens, float eps, long wAddress)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TDependency : struct, ILaunchDependency
    {
        default(TDependency).LetTheNextStart();
        var ring = SharedMemory.Allocate<Bits128>(AsyncCopyBodies.PairRingChunks);   // [warp of group, stage, row of the pair, lane]
        const int warpTokens = DenseKernelBodies.WarpTokens;
        const int stages = AsyncCopyBodies.Stages;
        int lane = Warp.LaneIdx;
        int warp = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        int tokenGroups = (tokens + warpTokens - 1) / warpTokens;
        if (warp >= output.Units * tokenGroups) return; // uniform across the warp; no group barrier follows

        var unit = WarpUnit.Of<TW, TO>(warp, tokenGroups, xRows, tokens, cols, output);
        int u = unit.U, t0 = unit.T0, chunks = unit.Chunks;
        var group = unit.Tokens;
        long rowA = unit.RowA, rowB = unit.RowB;
        int steps = (chunks + Warp.WarpSize - 1) / Warp.WarpSize;
        int lane0 = Group.IdxX / Warp.WarpSize * stages * 2 * Warp.WarpSize + lane;   // the lane's row-A slot of stage 0; row B's is 32 on

        // Fill the ring: steps 0 … stages − 1 of both rows in flight, a commit group per step.
        for (int k = 0; k < stages; k++)
        {
            if (k < steps) SendPair(w, ring, wAddress, rowA, rowB, AsyncCopyBodies.ChunkAt(lane, k, chunks), lane0 + k * 2 * Warp.WarpSize);
            AsyncCopyBodies.Commit();
        }
        default(TDependency).WaitForThePrevious();                         // x is the previous kernel's output

        var sums = default(GroupSums);
        for (int k = 0; k < steps; k++)
        {
            AsyncCopyBodies.WaitOldest();                                   // step k's copies have landed
            int slot = lane0 + (k % stages) * 2 * Warp.WarpSize;
            sums = sums.Add<TW, LastStep>(ring[slot], ring[slot + Warp.WarpSize], g, x, group, lane + k * Warp.WarpSize, 0, chunks);
            // The slots are read (the sums depend on them): send step k + stages into them.
            if (k + stages < steps) SendPair(w, ring, wAddress, rowA, rowB, AsyncCopyBodies.ChunkAt(lane, k + stages, chunks), slot);
            AsyncCopyBodies.Commit();
        }
        AsyncCopyBodies.WaitAll();

        sums.Write(output, u, t0, group, cols, eps, lane);
    }

    /// <summary>Chunk <paramref name="c"/> of both rows into the slot pair at <paramref name="slot"/>.</summary>
    private static void SendPair(ArrayView<Bits128> w, ArrayView<Bits128> ring, long wAddress, long rowA, long rowB, int c, int slot)
    {
        AsyncCopyBodies.Send(w, ring, wAddress, rowA, c, slot);
        AsyncCopyBodies.Send(w, ring, wAddress, rowB, c, slot + Warp.WarpSize);
    }

    /// <summary>
    /// The serial schedule's fused projection (ILGPU's CPU accelerator): each of <paramref name="stride"/> threads
    /// computes whole units, both rows for one token at a time, accumulating the token's Σ x² beside the dot products
    /// as <see cref="NormLinearWarp{TW, TO, TD, TP}"/> does. Fusing pays there for another reason than on a GPU: every launch
    /// on the CPU accelerator wakes every OS thread it has started for its largest group so far (5 ms a launch once a
    /// 128-thread group has run, on 2 cores), and recomputing Σ x² per unit costs far less for a few tokens.
    /// </summary>
    /// <param name="w">[rows, cols] weights as 16-byte chunks</param>
    /// <param name="x">[*, cols] f32 as Vec4: the residual stream (not normalized)</param>
    /// <param name="xRows">[tokens] which row of x each token reads</param>
    /// <param name="g">[cols] f32 as Vec4: the RMSNorm weight</param>
    /// <param name="output">where the unit's rows go (see <see cref="IProjectionOutput"/>)</param>
    public static void NormLinearSerial<TW, TO>(Index1D thread, ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<int> xRows,
        ArrayView<Vec4> g, TO output, int cols, int tokens, float eps, int stride)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
    {
        int vecsPerChunk = default(TW).ElementsPerChunk / 4;
        int chunks = cols / default(TW).ElementsPerChunk;
        int vecsPerToken = cols / 4;
        long items = (long)output.Units * tokens;
        for (long item = thread; item < items; item += stride)
        {
            int u = (int)(item / tokens);
            int t = (int)(item % tokens);
            long xi = (long)xRows[t] * vecsPerToken;
            long rowA = (long)output.FirstRow(u) * chunks;
            long rowB = (long)output.SecondRow(u) * chunks;
            TokenSums sum = default;
            for (int c = 0; c < chunks; c++)
            {
                long xv = (long)c * vecsPerChunk;
                var gc = Load(g, xv, vecsPerChunk);
                sum = sum.Add(Scale(WeightChunks.Widen<TW>(w[rowA + c]), gc, vecsPerChunk),
                    Scale(WeightChunks.Widen<TW>(w[rowB + c]), gc, vecsPerChunk), x, xi + xv, vecsPerChunk);
            }

            float r = XMath.Rsqrt(sum.S / cols + eps);
            output.Write(u, t, sum.A * r, sum.B * r);
        }
    }

    /// <summary>What warp <c>warp</c> of a fused projection computes: unit <see cref="U"/> (rows <see cref="RowA"/> and
    /// <see cref="RowB"/>, as chunk offsets, <see cref="Chunks"/> long) for the token group from <see cref="T0"/>.</summary>
    private struct WarpUnit
    {
        public int U, T0, Chunks;
        public long RowA, RowB;
        public TokenGroup Tokens;

        /// <summary>Token groups are the inner index: a unit's groups are neighbouring warps, which read its rows while
        /// they are still in L2.</summary>
        public static WarpUnit Of<TW, TO>(int warp, int tokenGroups, ArrayView<int> xRows, int tokens, int cols, TO output)
            where TW : struct, IWeightFormat
            where TO : struct, IProjectionOutput
        {
            int u = warp / tokenGroups;
            int t0 = warp % tokenGroups * DenseKernelBodies.WarpTokens;
            int chunks = cols / default(TW).ElementsPerChunk;
            return new WarpUnit
            {
                U = u, T0 = t0, Chunks = chunks,
                RowA = (long)output.FirstRow(u) * chunks,
                RowB = (long)output.SecondRow(u) * chunks,
                Tokens = TokenGroup.At(xRows, t0, tokens, cols),
            };
        }
    }

    /// <summary>Which tokens a warp of <see cref="NormLinearWarp{TW, TO, TD, TP}"/> carries, and where each one's x row starts (Vec4).</summary>
    private struct TokenGroup
    {
        public long X0, X1, X2, X3;
        public bool Has1, Has2, Has3;

        /// <summary>Tokens t0 … t0 + 3 (those below <paramref name="tokens"/>) and their x rows of <paramref name="cols"/> columns.</summary>
        public static TokenGroup At(ArrayView<int> xRows, int t0, int tokens, int cols)
        {
            int vecsPerToken = cols / 4;
            var group = new TokenGroup
            {
                Has1 = t0 + 1 < tokens,
                Has2 = t0 + 2 < tokens,
                Has3 = t0 + 3 < tokens,
            };
            group.X0 = (long)xRows[t0] * vecsPerToken;
            group.X1 = group.Has1 ? (long)xRows[t0 + 1] * vecsPerToken : 0;
            group.X2 = group.Has2 ? (long)xRows[t0 + 2] * vecsPerToken : 0;
            group.X3 = group.Has3 ? (long)xRows[t0 + 3] * vecsPerToken : 0;
            return group;
        }
    }

    /// <summary>The running sums of a warp's tokens, in one lane.</summary>
    private struct GroupSums
    {
        public TokenSums T0, T1, T2, T3;

        /// <summary>The sums with one step of both rows: the lane's chunks c, c + 32, … of row A and of row B loaded
        /// first, then chunk by chunk every token's sums.</summary>
        public readonly GroupSums Step<TW, TD, TE>(ArrayView<Bits128> w, long rowA, long rowB, int c, int chunks, ArrayView<Vec4> g, ArrayView<Vec4> x,
            TokenGroup group)
            where TW : struct, IWeightFormat
            where TD : struct, IRowChunks
            where TE : struct, IStepEdge
            => StepLoaded<TW, TD, TE>(LaneChunks.Load<TD, TE>(w, rowA, c, chunks), LaneChunks.Load<TD, TE>(w, rowB, c, chunks), c, chunks, g, x, group);

        /// <summary><see cref="Step{TW, TD, TE}"/> with both rows' chunks already loaded.</summary>
        public readonly GroupSums StepLoaded<TW, TD, TE>(LaneChunks a, LaneChunks b, int c, int chunks, ArrayView<Vec4> g, ArrayView<Vec4> x, TokenGroup group)
            where TW : struct, IWeightFormat
            where TD : struct, IRowChunks
            where TE : struct, IStepEdge
        {
            var r = Add<TW, TE>(a.C0, b.C0, g, x, group, c, 0, chunks);
            r = r.Add<TW, TE>(a.C1, b.C1, g, x, group, c, 1, chunks);
            if (default(TD).PerLane >= 4)
            {
                r = r.Add<TW, TE>(a.C2, b.C2, g, x, group, c, 2, chunks);
                r = r.Add<TW, TE>(a.C3, b.C3, g, x, group, c, 3, chunks);
            }
            if (default(TD).PerLane == 8)
            {
                r = r.Add<TW, TE>(a.C4, b.C4, g, x, group, c, 4, chunks);
                r = r.Add<TW, TE>(a.C5, b.C5, g, x, group, c, 5, chunks);
                r = r.Add<TW, TE>(a.C6, b.C6, g, x, group, c, 6, chunks);
                r = r.Add<TW, TE>(a.C7, b.C7, g, x, group, c, 7, chunks);
            }
            return r;
        }

        /// <summary>
        /// The sums with chunk k of the lane's step of each row (raw <paramref name="rawA"/>, <paramref name="rawB"/>,
        /// widened and scaled by the norm weight here, once for all tokens: w·(g∘x) = (w∘g)·x). Past the row's end (a
        /// <see cref="LastStep"/>) the loads stay in bounds (the last chunk again) and the sums are left as they were.
        /// </summary>
        public readonly GroupSums Add<TW, TE>(Bits128 rawA, Bits128 rawB, ArrayView<Vec4> g, ArrayView<Vec4> x, TokenGroup group, int c, int k, int chunks)
            where TW : struct, IWeightFormat
            where TE : struct, IStepEdge
        {
            int vecs = default(TW).ElementsPerChunk / 4;
            bool valid = LaneChunks.Valid<TE>(c, k, chunks);
            long xv = LaneChunks.At<TE>(0, c, k, chunks, vecs);
            var gc = Load(g, xv, vecs);
            var wa = Scale(WeightChunks.Widen<TW>(rawA), gc, vecs);
            var wb = Scale(WeightChunks.Widen<TW>(rawB), gc, vecs);
            var r = this;
            r.T0 = T0.Add(wa, wb, x, group.X0 + xv, vecs, valid);
            if (group.Has1) r.T1 = T1.Add(wa, wb, x, group.X1 + xv, vecs, valid);
            if (group.Has2) r.T2 = T2.Add(wa, wb, x, group.X2 + xv, vecs, valid);
            if (group.Has3) r.T3 = T3.Add(wa, wb, x, group.X3 + xv, vecs, valid);
            return r;
        }

        /// <summary>Each token's sums reduced across the warp (absent tokens skipped: the conditions are uniform) and
        /// scaled by its 1/rms, written by lane 0 as unit <paramref name="u"/> of tokens t0 … t0 + 3.</summary>
        public readonly void Write<TO>(TO output, int u, int t0, TokenGroup group, int cols, float eps, int lane)
            where TO : struct, IProjectionOutput
        {
            var sum0 = T0.Reduced(cols, eps);
            var sum1 = group.Has1 ? T1.Reduced(cols, eps) : default;
            var sum2 = group.Has2 ? T2.Reduced(cols, eps) : default;
            var sum3 = group.Has3 ? T3.Reduced(cols, eps) : default;
            if (lane != 0) return;
            output.Write(u, t0, sum0.A, sum0.B);
            if (group.Has1) output.Write(u, t0 + 1, sum1.A, sum1.B);
            if (group.Has2) output.Write(u, t0 + 2, sum2.A, sum2.B);
            if (group.Has3) output.Write(u, t0 + 3, sum3.A, sum3.B);
        }
    }

    /// <summary>One token's running sums in a lane of <see cref="NormLinearWarp{TW, TO, TD, TP}"/>: A = Σ w_A∘g·x,
    /// B = Σ w_B∘g·x, S = Σ x².</summary>
    private struct TokenSums : ILaneSums<TokenSums>
    {
        public float A, B, S;

        /// <summary>The sums with one chunk of each row (<paramref name="wa"/>, <paramref name="wb"/>, already times g)
        /// against the token's activations at Vec4 <paramref name="xi"/>; unchanged when not <paramref name="valid"/>.</summary>
        public readonly TokenSums Add(Vec8 wa, Vec8 wb, ArrayView<Vec4> x, long xi, int vecs, bool valid = true)
        {
            var v = Load(x, xi, vecs);
            var added = new TokenSums { A = A + Dot(wa, v, vecs), B = B + Dot(wb, v, vecs), S = S + Dot(v, v, vecs) };
            return valid ? added : this;
        }

        public readonly TokenSums Plus(TokenSums o) => new() { A = A + o.A, B = B + o.B, S = S + o.S };

        /// <summary>A and B summed over the warp and scaled by the token's 1 / rms = 1 / sqrt(Σx² / cols + eps); the
        /// three sums cross the warp together (<see cref="DenseKernelBodies.WarpSum{T}"/>).</summary>
        public readonly TokenSums Reduced(int cols, float eps)
        {
            var total = DenseKernelBodies.WarpSum(this);
            float r = XMath.Rsqrt(total.S / cols + eps);
            return new TokenSums { A = total.A * r, B = total.B * r, S = S };
        }
    }

    /// <summary>One chunk's worth of activations: x[i] (and x[i + 1] when a chunk spans two Vec4).</summary>
    private static Vec8 Load(ArrayView<Vec4> x, long i, int vecs) => new(x[i], vecs == 2 ? x[i + 1] : default);

    private static Vec8 Scale(Vec8 w, Vec8 g, int vecs) => new(Mul(w.Lo, g.Lo), vecs == 2 ? Mul(w.Hi, g.Hi) : default);

    private static float Dot(Vec8 a, Vec8 b, int vecs) => vecs == 2 ? Dot(a.Lo, b.Lo) + Dot(a.Hi, b.Hi) : Dot(a.Lo, b.Lo);

    private static Vec4 Mul(Vec4 a, Vec4 b) => new(a.X * b.X, a.Y * b.Y, a.Z * b.Z, a.W * b.W);

    private static float Dot(Vec4 a, Vec4 b) => a.X * b.X + a.Y * b.Y + a.Z * b.Z + a.W * b.W;
}

/// <summary>
/// A fused projection's pair epilogue: which two weight rows one warp (one thread on the serial schedule) computes
/// together (a unit) and where their values go. A struct type parameter of
/// <see cref="FusedKernelBodies.NormLinearWarp{TW, TO, TD, TP}"/> and <see cref="FusedKernelBodies.NormLinearSerial{TW, TO}"/>,
/// passed by value with its output views. Every unit is a pair, even where no element-wise step combines the two (the LM head):
/// the pair shares each lane's loads of x and g between two weight chunks, which keeps the L1 traffic per weight
/// byte at the unfused matvec's (w 16 B + g 32 B + x 32 B per 16 B chunk would be 5× the weight bytes alone; a
/// pair makes it 3×) and puts two weight loads in flight per lane.
/// </summary>
public interface IProjectionOutput
{
    /// <summary>Units per token: the warps one token group needs.</summary>
    int Units { get; }

    /// <summary>Weight row of the unit's first value.</summary>
    int FirstRow(int unit);

    /// <summary>Weight row of the unit's second value.</summary>
    int SecondRow(int unit);

    /// <summary>Stores token <paramref name="token"/>'s two values of the unit.</summary>
    void Write(int unit, int token, float first, float second);
}

/// <summary>
/// The qkv projection's epilogue: unit (head h, i &lt; head_dim/2) computes rows i and i + head_dim/2 of head h of the
/// fused q | k | v matrix, rotates them (Hugging Face rotate_half pairing, as <see cref="DenseKernelBodies.RopeSplit"/>)
/// unless h is a value head, and writes q, or k and v to <typeparamref name="TKv"/>: f32 rows, or the paged cache.
/// </summary>
public struct RopeSplitOutput<TKv> : IProjectionOutput
    where TKv : struct, IKvRowTarget
{
    /// <summary>[tokens, heads, head_dim] f32</summary>
    public ArrayView<float> Q;
    /// <summary>Where k and v go</summary>
    public TKv Kv;
    /// <summary>[tokens] position of each token</summary>
    public ArrayView<int> Positions;
    /// <summary>[max_positions, head_dim / 2] f32</summary>
    public ArrayView<float> Cos;
    /// <summary>[max_positions, head_dim / 2] f32</summary>
    public ArrayView<float> Sin;
    public int Heads;
    public int KvHeads;
    public int HeadDim;

    public RopeSplitOutput(ArrayView<float> q, TKv kv, ArrayView<int> positions,
        ArrayView<float> cos, ArrayView<float> sin, int heads, int kvHeads, int headDim)
    {
        Q = q;
        Kv = kv;
        Positions = positions;
        Cos = cos;
        Sin = sin;
        Heads = heads;
        KvHeads = kvHeads;
        HeadDim = headDim;
    }

    /// <summary>Rows of the fused matrix: (heads + 2 kv_heads) · head_dim.</summary>
    public readonly int Rows => (Heads + 2 * KvHeads) * HeadDim;

    public readonly int Units => Rows / 2;

    public readonly int FirstRow(int unit)
    {
        int half = HeadDim / 2;
        return unit / half * HeadDim + unit % half;
    }

    public readonly int SecondRow(int unit) => FirstRow(unit) + HeadDim / 2;

    public readonly void Write(int unit, int token, float x1, float x2)
    {
        int half = HeadDim / 2;
        int h = unit / half;
        int i = unit % half;
        if (h >= Heads + KvHeads)
        {
            // Values are not rotated.
            Kv.StoreValue(token, h - Heads - KvHeads, i, x1);
            Kv.StoreValue(token, h - Heads - KvHeads, i + half, x2);
            return;
        }

        long angle = (long)Positions[token] * half + i;
        float c = Cos[angle];
        float s = Sin[angle];
        float r1 = x1 * c - x2 * s;
        float r2 = x2 * c + x1 * s;
        if (h < Heads)
        {
            long dq = ((long)token * Heads + h) * HeadDim;
            Q[dq + i] = r1;
            Q[dq + i + half] = r2;
        }
        else
        {
            Kv.StoreKey(token, h - Heads, i, r1);
            Kv.StoreKey(token, h - Heads, i + half, r2);
        }
    }
}

/// <summary>
/// The gate|up projection's epilogue: unit j computes gate row j and up row j (rows j and j + intermediate of the
/// fused matrix) and writes a[t, j] = silu(gate) · up.
/// </summary>
public struct SwiGluOutput : IProjectionOutput
{
    /// <summary>[tokens, intermediate] f32</summary>
    public ArrayView<float> A;
    public int Intermediate;

    public SwiGluOutput(ArrayView<float> a, int intermediate)
    {
        A = a;
        Intermediate = intermediate;
    }

    public readonly int Units => Intermediate;

    public readonly int FirstRow(int unit) => unit;

    public readonly int SecondRow(int unit) => unit + Intermediate;

    public readonly void Write(int unit, int token, float gate, float up) =>
        A[(long)token * Intermediate + unit] = gate / (1f + XMath.Exp(-gate)) * up;
}

/// <summary>
/// A plain projection's epilogue (the LM head): unit u computes rows 2u and 2u + 1 (the last unit of an odd row
/// count reads its single row twice and writes it once), y[t, n] = value.
/// </summary>
public struct RowPairOutput : IProjectionOutput
{
    /// <summary>[tokens, rows] f32</summary>
    public ArrayView<float> Y;
    public int Rows;

    public RowPairOutput(ArrayView<float> y, int rows)
    {
        Y = y;
        Rows = rows;
    }

    public readonly int Units => (Rows + 1) / 2;

    public readonly int FirstRow(int unit) => 2 * unit;

    public readonly int SecondRow(int unit) => 2 * unit + 1 < Rows ? 2 * unit + 1 : Rows - 1;

    public readonly void Write(int unit, int token, float first, float second)
    {
        long y = (long)token * Rows + 2 * unit;
        Y[y] = first;
        if (2 * unit + 1 < Rows) Y[y + 1] = second;
    }
}
