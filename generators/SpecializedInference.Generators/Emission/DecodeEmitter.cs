using System.Linq;
using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits split-K flash decode and the partition combine for one kernel set, grouped and expanded: head_dim,
/// heads, group size, block size, partition and warps are constants; loops over head_dim, the group and the
/// per-thread keys are written out; K/V move in 16-byte chunks; per-thread state stays in registers.
/// </summary>
internal static class DecodeEmitter
{
    /// <summary>P·V keys a thread loads before it uses them (memory-level parallelism).</summary>
    public const int ValueLoadsInFlight = 8;

    /// <summary>K units (8 elements) a thread loads before it uses them.</summary>
    public const int KeyLoadsInFlight = 16;

    /// <summary>Physical blocks a partition can touch: P / block_size when blocks tile partitions, else two more
    /// (a partition that starts or ends inside a block).</summary>
    private static int BlocksPerPartition(AttentionLayout L)
        => L.Partition % L.BlockSize == 0 ? L.Partition / L.BlockSize : L.Partition / L.BlockSize + 2;

    /// <summary>Element offset of <paramref name="key"/>'s row [block, kv_head, slot, :], the block from shared memory.</summary>
    private static string Row(AttentionLayout L, string key)
        => $"(((long)sBlock[{key} / {Int(L.BlockSize)} - firstBlock] * {Int(L.KvHeads)} + kvHead) * {Int(L.BlockSize)} + {key} % {Int(L.BlockSize)}) * {Int(L.HeadDim)}";

    public static string HintName(KernelSetSpec spec)
        => $"{spec.Name}.Decode.Hd{spec.Model.HeadDim}.{AttentionLayout.HeadTag(spec.Model)}.P{spec.Engine.Tiles.DecodePartitionSize}.W{spec.Engine.Tiles.Warps}.g.cs";

    public static string Emit(KernelSetSpec spec)
    {
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "ILGPU.Algorithms", "SpecializedInference.Kernels");
        using (w.Block($"public static partial class {spec.Name}"))
        {
            EmitDecode(w, new AttentionLayout(spec, expanded: false));
            w.Line();
            EmitDecode(w, new AttentionLayout(spec, expanded: true));
            w.Line();
            EmitCombine(w, new AttentionLayout(spec, expanded: false));
        }
        return w.ToString();
    }

    private static void EmitDecode(SourceWriter w, AttentionLayout L)
    {
        int T = L.Threads, D4 = L.D4, U = L.Units, HG = L.HeadsPerGroup, P = L.Partition, KS = L.KeySlots, D = L.HeadDim;
        string mapping = L.Expanded ? "one query head (K/V read per head, as if repeated)" : $"{HG} query heads sharing each K/V load";
        w.Line("/// <summary>");
        w.Line($"/// Split-K flash decode: thread group = (decode, partition of {P} keys) x ({mapping}), {T} threads.");
        w.Line("/// Each thread scores one key with 16-byte K loads, a warp per head takes the partition's max and sum,");
        w.Line($"/// then thread (key slot of {KS}, 8-dim unit of {U}) accumulates P·V with 16-byte V loads. A single-partition");
        w.Line("/// decode writes its output; otherwise the partition's (max, sum, output) go to scratch for the combine.");
        w.Line("/// </summary>");
        w.Line("/// <param name=\"queries\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line($"public static void Decode{L.Suffix}<TCodec>(AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TCodec : struct, IKvCodec");
        using (w.Scope())
        {
            w.Line($"int item = Grid.IdxX / {Int(L.HeadGroups)};");
            w.Line($"int firstHead = Grid.IdxX % {Int(L.HeadGroups)} * {Int(HG)};");
            w.Line($"int kvHead = firstHead / {Int(L.GroupSize)};");
            w.Line("int decode = m.DecodeWork[2 * item];");
            w.Line("int part = m.DecodeWork[2 * item + 1];");
            w.Line("int seq = m.DecodeSeqs[decode];");
            w.Line("int token = m.QueryStart[seq];");
            w.Line("int context = m.ContextLens[seq];");
            w.Line($"int k0 = part * {Int(P)};");
            w.Line($"int numKeys = context - k0 < {Int(P)} ? context - k0 : {Int(P)};");
            w.Line("int blockRow = seq * m.MaxBlocksPerSeq;");
            w.Line("int t = Group.IdxX;");
            w.Line();
            w.Line($"var sQ = SharedMemory.Allocate<Float4>({Int(HG * D4)});      // [heads, head_dim] queries pre-scaled by 1/sqrt(head_dim)");
            w.Line($"var sP = SharedMemory.Allocate<float>({Int(HG * P)});       // [heads, partition] scores, then exp(s - max)");
            w.Line($"var sRed = SharedMemory.Allocate<Float4>({Int(KS * HG * D4)});    // [key_slots, heads, head_dim] partial P·V");
            w.Line($"var sMax = SharedMemory.Allocate<float>({Int(HG)});      // [heads] partition max");
            w.Line($"var sSum = SharedMemory.Allocate<float>({Int(HG)});      // [heads] partition sum of exp(s - max)");
            int nb = BlocksPerPartition(L);
            w.Line($"var sBlock = SharedMemory.Allocate<int>({Int(nb)});     // [blocks] the partition's physical blocks, read once");
            w.Line();
            w.Line($"int firstBlock = k0 / {Int(L.BlockSize)};");
            for (int i = 0; i * T < nb; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int b = t + {Int(T * i)};");
                    w.Line($"if ({(T * (i + 1) > nb ? $"b < {Int(nb)} && " : "")}(firstBlock + b) * {Int(L.BlockSize)} < context) sBlock[b] = m.BlockTables[blockRow + firstBlock + b];");
                }
            }
            for (int i = 0; i * T < HG * D4; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int f = t + {Int(T * i)};");
                    bool guard = T * (i + 1) > HG * D4;
                    if (guard) w.Open($"if (f < {Int(HG * D4)})");
                    w.Line($"long src = ((long)token * {Int(L.Heads)} + firstHead + f / {Int(D4)}) * {Int(D)} + f % {Int(D4)} * 4;");
                    w.Line($"sQ[f] = new Float4(queries[src], queries[src + 1], queries[src + 2], queries[src + 3]) * {Float(L.Scale)};");
                    if (guard) w.Close();
                }
            }
            w.Line("Group.Barrier();");
            w.Line();

            w.Line($"// Scores: one key per thread (keys t + {T} * i), the whole K row in 16-byte loads, every head from the same load.");
            for (int i = 0; i * T < P; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int j = t + {Int(T * i)};");
                    bool guard = T * (i + 1) > P;
                    if (guard) w.Open($"if (j < {Int(P)})");
                    for (int h = 0; h < HG; h++) w.Line($"float s{h} = 0f;");
                    w.Line("bool valid = j < numKeys;");
                    using (w.Block("if (valid)"))
                    {
                        w.Line("int key = k0 + j;");
                        w.Line($"long row = {Row(L, "key")};");
                        // Raw loads in batches of KeyLoadsInFlight units (4 registers each for f16): all in flight, then decoded and used.
                        for (int u0 = 0; u0 < U; u0 += KeyLoadsInFlight)
                        {
                            for (int u = u0; u < U && u < u0 + KeyLoadsInFlight; u++) w.Line($"var kr{u} = default(TCodec).LoadRaw8(keyCache, row + {Int(u * 8)});");
                            for (int u = u0; u < U && u < u0 + KeyLoadsInFlight; u++)
                            {
                                w.Line($"var kc{u} = default(TCodec).Decode8(kr{u});");
                                for (int h = 0; h < HG; h++)
                                    w.Line($"s{h} += sQ[{Int(h * D4 + 2 * u)}].Dot(kc{u}.Lo) + sQ[{Int(h * D4 + 2 * u + 1)}].Dot(kc{u}.Hi);");
                            }
                        }
                    }
                    for (int h = 0; h < HG; h++) w.Line($"sP[{Int(h * P)} + j] = valid ? s{h} : float.NegativeInfinity;");
                    if (guard) w.Close();
                }
            }
            w.Line("Group.Barrier();");
            w.Line();

            w.Line("// Softmax over the partition, a warp per head: max, then exp(s - max) and its sum (warp shuffles).");
            w.Line("int warp = Warp.WarpIdx;");
            w.Line("int lane = Warp.LaneIdx;");
            int perLane = P / 32;
            for (int h = 0; h < HG; h++)
            {
                using (w.Block($"if (warp == {Int(h % L.Warps)})"))
                {
                    for (int i = 0; i < perLane; i++) w.Line($"float x{i} = sP[{Int(h * P + 32 * i)} + lane];");
                    w.Line($"float mx = {PrefillEmitter.Tree(Enumerable.Range(0, perLane).Select(i => $"x{i}").ToList(), (a, b) => $"XMath.Max({a}, {b})")};");
                    for (int o = 16; o > 0; o >>= 1) w.Line($"mx = XMath.Max(mx, Warp.ShuffleXor(mx, {o}));");
                    for (int i = 0; i < perLane; i++)
                    {
                        w.Line($"float p{i} = AttentionMath.ExpOrZero(x{i} - mx);");
                        w.Line($"sP[{Int(h * P + 32 * i)} + lane] = p{i};");
                    }
                    w.Line($"float sum = {PrefillEmitter.Tree(Enumerable.Range(0, perLane).Select(i => $"p{i}").ToList(), (a, b) => $"({a} + {b})")};");
                    for (int o = 16; o > 0; o >>= 1) w.Line($"sum += Warp.ShuffleXor(sum, {o});");
                    using (w.Block("if (lane == 0)"))
                    {
                        w.Line($"sMax[{Int(h)}] = mx;");
                        w.Line($"sSum[{Int(h)}] = sum;");
                    }
                }
            }
            w.Line("Group.Barrier();");
            w.Line();

            w.Line($"// P·V: thread = (key slot t / {U}, 8-dim unit t % {U}); one 16-byte V load serves every head.");
            w.Line($"int slot = t / {Int(U)};");
            w.Line($"int unit = t % {Int(U)};");
            bool slotGuard = T % U != 0;
            if (slotGuard) w.Open($"if (slot < {Int(KS)})");
            for (int h = 0; h < HG; h++)
            {
                w.Line($"var lo{h} = default(Float4);");
                w.Line($"var hi{h} = default(Float4);");
            }
            w.Line("int pv = slot;");
            int n = ValueLoadsInFlight;
            using (w.Block($"for (; pv + {Int((n - 1) * KS)} < numKeys; pv += {Int(n * KS)})"))
            {
                for (int r = 0; r < n; r++)
                {
                    w.Line($"int key{r} = k0 + pv + {Int(r * KS)};");
                    w.Line($"var vr{r} = default(TCodec).LoadRaw8(valueCache, {Row(L, $"key{r}")} + unit * 8);");
                }
                for (int r = 0; r < n; r++)
                {
                    w.Line($"var v{r} = default(TCodec).Decode8(vr{r});");
                    for (int h = 0; h < HG; h++)
                    {
                        w.Line($"float p{r}h{h} = sP[{Int(h * P + r * KS)} + pv];");
                        w.Line($"lo{h} = lo{h}.Fma(v{r}.Lo, p{r}h{h});");
                        w.Line($"hi{h} = hi{h}.Fma(v{r}.Hi, p{r}h{h});");
                    }
                }
            }
            using (w.Block($"for (; pv < numKeys; pv += {Int(KS)})"))
            {
                w.Line("int key = k0 + pv;");
                w.Line($"var v = default(TCodec).Load8(valueCache, {Row(L, "key")} + unit * 8);");
                for (int h = 0; h < HG; h++)
                {
                    w.Line($"float p{h} = sP[{Int(h * P)} + pv];");
                    w.Line($"lo{h} = lo{h}.Fma(v.Lo, p{h});");
                    w.Line($"hi{h} = hi{h}.Fma(v.Hi, p{h});");
                }
            }
            for (int h = 0; h < HG; h++)
            {
                w.Line($"sRed[(slot * {Int(HG)} + {Int(h)}) * {Int(D4)} + 2 * unit] = lo{h};");
                w.Line($"sRed[(slot * {Int(HG)} + {Int(h)}) * {Int(D4)} + 2 * unit + 1] = hi{h};");
            }
            if (slotGuard) w.Close();
            w.Line("Group.Barrier();");
            w.Line();

            w.Line("// Sum the key slots, normalize by this partition's sum, write the output or the partial.");
            for (int i = 0; i * T < HG * D4; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int f = t + {Int(T * i)};");
                    bool guard = T * (i + 1) > HG * D4;
                    if (guard) w.Open($"if (f < {Int(HG * D4)})");
                    w.Line($"int h = f / {Int(D4)};");
                    w.Line($"int c = f % {Int(D4)};");
                    w.Line($"var acc = {PrefillEmitter.Tree(Enumerable.Range(0, KS).Select(k => $"sRed[{Int(k * HG * D4)} + f]").ToList(), (a, b) => $"({a} + {b})")};");
                    w.Line("float sum = sSum[h];");
                    w.Line("acc = acc * (1f / sum);");
                    w.Line("int head = firstHead + h;");
                    using (w.Block($"if (context <= {Int(P)})"))
                    {
                        w.Line($"long dst = ((long)token * {Int(L.Heads)} + head) * {Int(D)} + c * 4;");
                        w.Line("output[dst] = acc.X;");
                        w.Line("output[dst + 1] = acc.Y;");
                        w.Line("output[dst + 2] = acc.Z;");
                        w.Line("output[dst + 3] = acc.W;");
                    }
                    using (w.Block("else"))
                    {
                        w.Line($"long partial = ((long)decode * {Int(L.Heads)} + head) * m.MaxPartitions + part;");
                        w.Line($"long dst = partial * {Int(D)} + c * 4;");
                        w.Line("m.PartialOut[dst] = acc.X;");
                        w.Line("m.PartialOut[dst + 1] = acc.Y;");
                        w.Line("m.PartialOut[dst + 2] = acc.Z;");
                        w.Line("m.PartialOut[dst + 3] = acc.W;");
                        using (w.Block("if (c == 0)"))
                        {
                            w.Line("m.PartialMaxSum[partial * 2] = sMax[h];");
                            w.Line("m.PartialMaxSum[partial * 2 + 1] = sum;");
                        }
                    }
                    if (guard) w.Close();
                }
            }
        }
    }

    /// <summary>Threads of a combine group (one group per (decode, head)).</summary>
    public const int CombineThreads = 128;

    /// <summary>Partition loads a combine thread keeps in flight.</summary>
    public const int CombineLoadsInFlight = 8;

    private static void EmitCombine(SourceWriter w, AttentionLayout L)
    {
        int D4 = L.D4, H = L.Heads, D = L.HeadDim, T = CombineThreads, S = T / D4, n = CombineLoadsInFlight;
        w.Line($"/// <summary>Threads of a decode-combine group.</summary>");
        w.Line($"public const int CombineThreads = {Int(T)};");
        w.Line();
        w.Line("/// <summary>Dynamic shared memory of a combine group, in Float4s: per-slice partial sums, partition weights, warp slots.</summary>");
        w.Line($"public static int CombineSharedFloat4s(int maxPartitions) => {Int(S * D4)} + (maxPartitions + 35) / 4;");
        w.Line();
        w.Line("/// <summary>");
        w.Line("/// Combines the split-K partitions of each multi-partition decode, one thread group per (decode, head):");
        w.Line("/// M = max_p m_p and the weights w_p = l_p·exp(m_p - M) in parallel over partitions, then out = Σ_p w_p·o_p / Σ_p w_p");
        w.Line($"/// with threads split into {S} slices of partitions × {D4} Float4 columns, {n} partition loads in flight per thread.");
        w.Line("/// </summary>");
        w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("public static void DecodeCombine(AttentionMeta m, ArrayView<float> output)");
        using (w.Scope())
        {
            w.Line($"int head = Grid.IdxX % {Int(H)};");
            w.Line($"int decode = m.CombineDecodes[Grid.IdxX / {Int(H)}];");
            w.Line("int seq = m.DecodeSeqs[decode];");
            w.Line($"int partitions = (m.ContextLens[seq] + {Int(L.Partition - 1)}) / {Int(L.Partition)};");
            w.Line($"long first = ((long)decode * {Int(H)} + head) * m.MaxPartitions;");
            w.Line("int t = Group.IdxX;");
            w.Line("var shared = SharedMemory.GetDynamic<Float4>();");
            w.Line($"var sRed = shared.SubView(0, {Int(S * D4)});     // [slices, head_dim] partial sums");
            w.Line($"var scalars = shared.SubView({Int(S * D4)}, (m.MaxPartitions + 35) / 4).Cast<float>();");
            w.Line("var sWeight = scalars.SubView(0, m.MaxPartitions);  // [partitions] l_p·exp(m_p - M)");
            w.Line("var sWarp = scalars.SubView(m.MaxPartitions, 32);    // [warps] reduction slots");
            w.Line();
            w.Line("// M: largest partition max.");
            w.Line("float mx = float.NegativeInfinity;");
            w.Line($"for (int p = t; p < partitions; p += {Int(T)}) mx = XMath.Max(mx, m.PartialMaxSum[(first + p) * 2]);");
            for (int o = 16; o > 0; o >>= 1) w.Line($"mx = XMath.Max(mx, Warp.ShuffleXor(mx, {o}));");
            w.Line("if (Warp.LaneIdx == 0) sWarp[Warp.WarpIdx] = mx;");
            w.Line("Group.Barrier();");
            w.Line($"mx = {PrefillEmitter.Tree(Enumerable.Range(0, T / 32).Select(i => $"sWarp[{i}]").ToList(), (a, b) => $"XMath.Max({a}, {b})")};");
            w.Line("Group.Barrier();");
            w.Line();
            w.Line("// Weights and their sum.");
            w.Line("float sum = 0f;");
            using (w.Block($"for (int p = t; p < partitions; p += {Int(T)})"))
            {
                w.Line("float weight = m.PartialMaxSum[(first + p) * 2 + 1] * AttentionMath.ExpOrZero(m.PartialMaxSum[(first + p) * 2] - mx);");
                w.Line("sWeight[p] = weight;");
                w.Line("sum += weight;");
            }
            for (int o = 16; o > 0; o >>= 1) w.Line($"sum += Warp.ShuffleXor(sum, {o});");
            w.Line("if (Warp.LaneIdx == 0) sWarp[Warp.WarpIdx] = sum;");
            w.Line("Group.Barrier();");
            w.Line($"float total = {PrefillEmitter.Tree(Enumerable.Range(0, T / 32).Select(i => $"sWarp[{i}]").ToList(), (a, b) => $"({a} + {b})")};");
            w.Line();
            w.Line($"// Σ_p w_p·o_p: thread = (slice t / {D4}, Float4 column t % {D4}).");
            w.Line($"int slice = t / {Int(D4)};");
            w.Line($"int c = t % {Int(D4)};");
            bool guard = T % D4 != 0;
            if (guard) w.Open($"if (slice < {Int(S)})");
            w.Line("var acc = default(Float4);");
            w.Line("int q = slice;");
            using (w.Block($"for (; q + {Int((n - 1) * S)} < partitions; q += {Int(n * S)})"))
            {
                for (int r = 0; r < n; r++)
                {
                    w.Line($"long src{r} = (first + q + {Int(r * S)}) * {Int(D)} + c * 4;");
                    w.Line($"var o{r} = new Float4(m.PartialOut[src{r}], m.PartialOut[src{r} + 1], m.PartialOut[src{r} + 2], m.PartialOut[src{r} + 3]);");
                }
                for (int r = 0; r < n; r++) w.Line($"acc = acc.Fma(o{r}, sWeight[q + {Int(r * S)}]);");
            }
            using (w.Block($"for (; q < partitions; q += {Int(S)})"))
            {
                w.Line($"long src = (first + q) * {Int(D)} + c * 4;");
                w.Line("acc = acc.Fma(new Float4(m.PartialOut[src], m.PartialOut[src + 1], m.PartialOut[src + 2], m.PartialOut[src + 3]), sWeight[q]);");
            }
            w.Line($"sRed[slice * {Int(D4)} + c] = acc;");
            if (guard) w.Close();
            w.Line("Group.Barrier();");
            using (w.Block($"if (t < {Int(D4)})"))
            {
                w.Line($"var o = {PrefillEmitter.Tree(Enumerable.Range(0, S).Select(k => $"sRed[{Int(k * D4)} + t]").ToList(), (a, b) => $"({a} + {b})")} * (1f / total);");
                w.Line($"long dst = ((long)m.QueryStart[seq] * {Int(H)} + head) * {Int(D)} + t * 4;");
                w.Line("output[dst] = o.X;");
                w.Line("output[dst + 1] = o.Y;");
                w.Line("output[dst + 2] = o.Z;");
                w.Line("output[dst + 3] = o.W;");
            }
        }
    }
}
