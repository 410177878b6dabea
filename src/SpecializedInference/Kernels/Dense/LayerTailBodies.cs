using ILGPU;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// A decoder layer's dense work after its attention, and the next layer's before its attention, in one launch
/// (<see cref="DecodeLaunches.GridSyncedTails"/>): the launch's warps loop over each stage's work items (the warps of the
/// per-stage launches, <see cref="DenseKernelBodies.LinearWarpAt{TW, TE, TD, TP}"/> and
/// <see cref="FusedKernelBodies.NormLinearWarpAt{TW, TO, TD, TP}"/>, unchanged) and meet at a <see cref="GridBarrier"/>
/// between stages, where the per-stage schedule ends a launch and starts the next.
/// <code>
///   x    += attn · Woᵀ                               o_proj
///   ── grid barrier ──
///   act   = silu(norm(x) · Wgateᵀ) ∘ (norm(x) · Wupᵀ)   gate|up + SwiGLU
///   ── grid barrier ──
///   x    += act · Wdownᵀ                             down_proj
///   ── grid barrier ── (not after the last layer)
///   q, k, v = rope(norm(x) · Wqkvᵀ) of the next layer, k and v into its cache
/// </code>
/// <see cref="Layer{TW, TKv, TDecode, TL, TF, TQ, TP, TC, TK}"/> puts the layer's decode attention before them, in the same launch
/// (<see cref="DecodeLaunches.GridSyncedLayers"/>).
/// Why: at batch 1 a small model's step is a chain of short launches, each paying a launch and a ramp before its bytes
/// count (TinyLlama: ~113 launches of 4–19 µs for a 509 µs weight-read floor, 1.28 ms a step on the H200). Per layer the
/// step becomes two launches (attention, this) instead of five. Whether a barrier (one atomic round trip per group to
/// L2 and a poll) costs less than the launch boundary it replaces is the GPU run's to say
/// (<c>report --decode-launches grid-synced-tails,grid-synced-layers</c>).
/// </summary>
public static class LayerTailBodies
{
    /// <summary>
    /// The layer tail (see the class). <typeparamref name="TL"/> is the load depth of o_proj's and down_proj's rows,
    /// <typeparamref name="TF"/> of gate|up's, <typeparamref name="TQ"/> of the next qkv's (<see cref="MatvecDepth"/>).
    /// <typeparamref name="TC"/> marks each group's <see cref="TailStage"/>s (the engine's: none). Under
    /// <typeparamref name="TK"/> = <see cref="CarryFirstStep"/> each warp loads its first rows of the next stage before
    /// each barrier (<see cref="DecodeLaunches.GridSyncedTailsPreloaded"/>): weights depend on nothing the barrier
    /// orders, so their first round trip overlaps the groups' meeting instead of following it.
    /// </summary>
    public static void LayerTail<TW, TKv, TL, TF, TQ, TP, TC, TK>(LayerTailArgs<TKv> a)
        where TW : struct, IWeightFormat
        where TKv : struct, IKvRowTarget
        where TL : struct, IRowChunks
        where TF : struct, IRowChunks
        where TQ : struct, IRowChunks
        where TP : struct, IRowPrefetch
        where TC : struct, IStageClock
        where TK : struct, IStepCarry
    {
        default(TC).Mark(a.StageTimes, TailStage.Entry);
        int first = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        int stride = Grid.DimX * Group.DimX / Warp.WarpSize;
        int tokenGroups = (a.Tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens;
        var x = a.X.Cast<Vec4>();                     // [tokens, hidden]
        var act = a.Act.A.Cast<Vec4>();               // [tokens, intermediate]

        // x += attn · Woᵀ: a row of o_proj per work item, as many items per token group.
        for (int w = first; w < a.Hidden * tokenGroups; w += stride)
            DenseKernelBodies.LinearWarpAt<TW, AddToOutput, TL, TP>(w, a.O, a.Attention, a.X, a.Hidden, a.QueryDim, a.Tokens, a.OPrefetch);
        var carried = default(TK).Carries ? FusedKernelBodies.FirstStep<TW, SwiGluOutput, TF>(first, a.GateUp, a.Act, a.Hidden, a.Tokens) : default;
        a.Barrier.Wait<TC>(a.StageTimes, TailStage.OArrive);

        // act = silu(norm(x) · Wgateᵀ) ∘ (norm(x) · Wupᵀ): gate row j and up row j per work item.
        for (int w = first; w < a.Act.Units * tokenGroups; w += stride)
        {
            FusedKernelBodies.NormLinearWarpAt<TW, SwiGluOutput, TF, TP, TK>(w, a.GateUp, x, a.Rows, a.PostNorm, a.Act, a.Hidden, a.Tokens, a.Eps, a.GateUpPrefetch,
                carried);
            carried.Loaded = 0;   // the warp's later items load all their steps
        }
        carried = default(TK).Carries ? DenseKernelBodies.FirstStep<TW, TL>(first, a.Down, a.Hidden, a.Act.Intermediate, a.Tokens) : default;
        a.Barrier.Wait<TC>(a.StageTimes, TailStage.GateUpArrive);

        // x += act · Wdownᵀ
        for (int w = first; w < a.Hidden * tokenGroups; w += stride)
        {
            DenseKernelBodies.LinearWarpAt<TW, AddToOutput, TL, TP, TK>(w, a.Down, act, a.X, a.Hidden, a.Act.Intermediate, a.Tokens, a.DownPrefetch, carried);
            carried.Loaded = 0;
        }
        if (a.HasNext != 0)
        {
            carried = default(TK).Carries ? FusedKernelBodies.FirstStep<TW, RopeSplitOutput<TKv>, TQ>(first, a.NextQkv, a.NextQkvOut, a.Hidden, a.Tokens) : default;
            a.Barrier.Wait<TC>(a.StageTimes, TailStage.DownArrive);

            // The next layer's q, k, v = rope(norm(x) · Wqkvᵀ): rows i and i + head_dim/2 of a head per work item.
            for (int w = first; w < a.NextQkvOut.Units * tokenGroups; w += stride)
            {
                FusedKernelBodies.NormLinearWarpAt<TW, RopeSplitOutput<TKv>, TQ, TP, TK>(w, a.NextQkv, x, a.Rows, a.NextInputNorm, a.NextQkvOut, a.Hidden, a.Tokens,
                    a.Eps, a.QkvPrefetch, carried);
                carried.Loaded = 0;
            }
        }
        if (default(TC).Records)
        {
            Group.Barrier();   // the group's last warp done
            default(TC).Mark(a.StageTimes, TailStage.Exit);
        }
    }

    /// <summary>
    /// The whole decoder layer in one launch (<see cref="DecodeLaunches.GridSyncedLayers"/>): the step's decode
    /// attention, its groups looping over the decode's (<typeparamref name="TDecode"/>, the kernel set's generated body;
    /// the launch's groups are the decode's size), then a grid barrier and the <see cref="LayerTail"/>'s stages. A step
    /// of TinyLlama's is then 26 launches instead of 113.
    /// </summary>
    public static void Layer<TW, TKv, TDecode, TL, TF, TQ, TP, TC, TK>(LayerArgs<TKv> a)
        where TW : struct, IWeightFormat
        where TKv : struct, IKvRowTarget
        where TDecode : struct, IDecodeGroups
        where TL : struct, IRowChunks
        where TF : struct, IRowChunks
        where TQ : struct, IRowChunks
        where TP : struct, IRowPrefetch
        where TC : struct, IStageClock
        where TK : struct, IStepCarry
    {
        // attn = attend(q, the layer's cache): every Grid.DimX-th decode group, from this group's index.
        for (int g = Grid.IdxX; g < a.DecodeGroups; g += Grid.DimX)
            default(TDecode).Run(g, a.Meta, a.Queries, a.KeyCache, a.ValueCache, a.Tail.Attention.Cast<float>());
        a.Tail.Barrier.Wait();
        LayerTail<TW, TKv, TL, TF, TQ, TP, TC, TK>(a.Tail);
    }
}

/// <summary>What <see cref="LayerTailBodies.LayerTail{TW, TKv, TL, TF, TQ, TP, TC, TK}"/> reads and writes: one layer's o_proj and
/// MLP, the next layer's input norm and qkv (absent after the last layer), the step's activations.</summary>
public struct LayerTailArgs<TKv>
    where TKv : struct, IKvRowTarget
{
    /// <summary>[tokens, heads · head_dim] the layer's attention output</summary>
    public ArrayView<Vec4> Attention;
    /// <summary>[hidden, heads · head_dim] o_proj</summary>
    public ArrayView<Bits128> O;
    /// <summary>[tokens, hidden] the residual stream</summary>
    public ArrayView<float> X;
    /// <summary>[tokens] 0, 1, 2, …: each token's row of <see cref="X"/></summary>
    public ArrayView<int> Rows;
    /// <summary>[hidden] post_attention_layernorm</summary>
    public ArrayView<Vec4> PostNorm;
    /// <summary>[2 · intermediate, hidden] gate | up</summary>
    public ArrayView<Bits128> GateUp;
    /// <summary>silu(gate) · up into [tokens, intermediate]</summary>
    public SwiGluOutput Act;
    /// <summary>[hidden, intermediate] down_proj</summary>
    public ArrayView<Bits128> Down;
    /// <summary>[hidden] the next layer's input_layernorm</summary>
    public ArrayView<Vec4> NextInputNorm;
    /// <summary>[(heads + 2 kv_heads) · head_dim, hidden] the next layer's q | k | v</summary>
    public ArrayView<Bits128> NextQkv;
    /// <summary>Where the next layer's q, k and v go (k and v into its paged cache)</summary>
    public RopeSplitOutput<TKv> NextQkvOut;
    /// <summary>1: the next layer's qkv runs; 0: this is the last layer</summary>
    public int HasNext;
    public int Hidden;
    public int QueryDim;
    public int Tokens;
    public float Eps;
    /// <summary>What each stage's warps pull into L2 (<see cref="L2Prefetch"/>), over the stage's work items</summary>
    public L2Prefetch OPrefetch, GateUpPrefetch, DownPrefetch, QkvPrefetch;
    public GridBarrier Barrier;
    /// <summary>[groups, StageRow.SlotsPerGroup] each group's <see cref="TailStage"/> marks, where the launch is clocked
    /// (<see cref="DenseKernels.ClockTails"/>); otherwise any allocated view, never written</summary>
    public ArrayView<long> StageTimes;
}

/// <summary>What <see cref="LayerTailBodies.Layer{TW, TKv, TDecode, TL, TF, TQ, TP, TC, TK}"/> reads and writes: the step's decode
/// (its plan, the layer's cache, q; the output is the tail's <see cref="LayerTailArgs{TKv}.Attention"/>) and the tail.</summary>
public struct LayerArgs<TKv>
    where TKv : struct, IKvRowTarget
{
    public AttentionMeta Meta;
    /// <summary>[tokens, heads, head_dim] f32</summary>
    public ArrayView<float> Queries;
    /// <summary>[num_blocks, kv_heads, block_size, head_dim] the layer's keys</summary>
    public ArrayView<Chunk16> KeyCache;
    /// <summary>[num_blocks, kv_heads, block_size, head_dim] the layer's values</summary>
    public ArrayView<Chunk16> ValueCache;
    /// <summary>Decode groups: work items × head groups</summary>
    public int DecodeGroups;
    public LayerTailArgs<TKv> Tail;
}
