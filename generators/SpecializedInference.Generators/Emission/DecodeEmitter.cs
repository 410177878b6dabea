using System;
using System.Linq;
using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits split-K flash decode for one kernel set, grouped and expanded: head_dim, heads, group size, block
/// size, partition and warps are constants; loops over head_dim, the group and the per-thread keys are written
/// out; K/V move in 16-byte chunks; per-thread state stays in registers. The partitions of a decode are
/// combined in the same launch by the group that finishes last (a ticket per decode and head group).
/// </summary>
internal static class DecodeEmitter
{
    /// <summary>P·V keys past the prefetched ones that a thread loads before it uses them.</summary>
    public const int ValueLoadsInFlight = 8;

    /// <summary>K units (8 elements) a thread loads before it uses them.</summary>
    public const int KeyLoadsInFlight = 16;

    /// <summary>32-bit registers of raw K/V data a decode thread holds in flight: a K batch plus the prefetched
    /// V rows, so each group has its whole partition's K and V outstanding at once. With the step boundaries that
    /// keep the unrolled steps in order (<see cref="StepBoundary"/>), ptxas gives the Llama3_8B decode 174 registers
    /// and no spills for sm_90 (<c>benchmarks/ptx/resources.sh</c>); 168 would fit three 128-thread groups per SM.</summary>
    public const int LoadRegisterBudget = 128;

    /// <summary>Keys of the partition one P·V thread accumulates: partition / key_slots, rounded up.</summary>
    public static int KeysPerThread(AttentionLayout L) => AttentionLayout.CeilDiv(L.Partition, L.KeySlots);

    /// <summary>V rows a thread loads before the softmax, beside its K batch: as many of its keys as the register
    /// budget holds for the config's KV dtype (all 16 for head_dim 128 with partitions of 128 in f16). A kernel set
    /// run with the other dtype works the same; an f32 cache on an f16 set holds twice the registers.</summary>
    public static int ValuePrefetch(AttentionLayout L)
    {
        int keyBatch = Math.Min(L.Units / L.ThreadsPerKey, KeyLoadsInFlight) * L.RegistersPerUnit;
        return Math.Max(0, Math.Min(KeysPerThread(L), (LoadRegisterBudget - keyBatch) / L.RegistersPerUnit));
    }

    /// <summary>Loads the V rows of this thread's P·V keys <paramref name="from"/>..<paramref name="to"/> - 1 into
    /// <c>vr{r}</c>. Keys past the context are loaded from where they would be (the plan's block list repeats the
    /// sequence's last block, so the address is valid) and masked to zero where they are used: no clamp on the
    /// path to the loads.</summary>
    private static void EmitValueLoads(SourceWriter w, AttentionLayout L, int from, int to, bool declare)
    {
        for (int r = from; r < to; r++)
            w.Line($"{(declare ? "var " : "")}vr{r} = default(TCodec).LoadRaw8(valueCache, {ValueRow(L, r)});");
    }

    /// <summary>Whether a thread's P·V key r lies in partition block r·KS / BS at row slot + r·KS % BS: blocks
    /// tile partitions and key slots tile blocks. Then the V addresses are one shared block id and constants.</summary>
    private static bool SlotsTileBlocks(AttentionLayout L) => L.Partition % L.BlockSize == 0 && L.BlockSize % L.KeySlots == 0;

    /// <summary>Element offset of this thread's V chunk for its P·V key r (partition key slot + r·KS, at most
    /// P - 1 so the block stays in the partition's list).</summary>
    private static string ValueRow(AttentionLayout L, int r)
    {
        int KS = L.KeySlots, P = L.Partition;
        if (SlotsTileBlocks(L))
            return $"(long)sBlock[{Int(r * KS / L.BlockSize)}] * {Int(L.KvHeads * L.BlockSize * L.HeadDim)} + vThread{(r * KS % L.BlockSize == 0 ? "" : $" + {Int(r * KS % L.BlockSize * L.HeadDim)}")}";
        string j = r == 0 ? "slot" : $"slot + {Int(r * KS)}";
        if (r * KS + KS - 1 >= P) j = $"({j} < {Int(P)} ? {j} : {Int(P - 1)})";
        return $"{Row(L, $"(k0 + {j})")} + unit * 8";
    }

    /// <summary>Physical blocks a partition can touch: P / block_size when blocks tile partitions, else two more
    /// (a partition that starts or ends inside a block). The runtime's <c>AttentionPlan.DecodeBlocksPerItem</c>
    /// lists that many per work item.</summary>
    private static int BlocksPerPartition(AttentionLayout L)
        => L.Partition % L.BlockSize == 0 ? L.Partition / L.BlockSize : L.Partition / L.BlockSize + 2;

    /// <summary>Element offset of <paramref name="key"/>'s row [block, kv_head, slot, :], the block from shared memory;
    /// <paramref name="key"/> is a name or a parenthesized expression, never negative, and block sizes are powers of two:
    /// the block and the slot are a shift and a mask (<see cref="SourceWriter.Div"/>).</summary>
    internal static string Row(AttentionLayout L, string key)
        => $"(((long)sBlock[{Div(key, L.BlockSize)} - firstBlock] * {Int(L.KvHeads)} + kvHead) * {Int(L.BlockSize)} + {Mod(key, L.BlockSize)}) * {Int(L.HeadDim)}";


    /// <summary>Key slots' partial outputs summed per step of the final reduction.</summary>
    private const int SlotsPerSum = 8;

    public static string HintName(KernelSetSpec spec)
        => $"{spec.Name}.Decode.Hd{spec.Model.HeadDim}.{AttentionLayout.HeadTag(spec.Model)}.P{spec.Engine.Tiles.DecodePartitionSize}.W{spec.Engine.Tiles.DecodeWarps}.g.cs";

    public static string LargeBatchHintName(KernelSetSpec spec, DecodeTiles large)
        => $"{spec.Name}.DecodeLargeBatch.Hd{spec.Model.HeadDim}.{AttentionLayout.HeadTag(spec.Model)}.P{large.PartitionSize}.W{large.Warps}.g.cs";

    /// <summary>The large-batch decode (<c>DecodeMmaLargeBatch</c>): the tensor-core decode at the config's
    /// large_batch_decode_partition_size and _warps, which the runtime picks for steps whose decode work fills the GPU
    /// several times over (longer partitions: fewer partials, tickets and combines per byte read).</summary>
    public static string EmitLargeBatch(KernelSetSpec spec, DecodeTiles large)
    {
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "ILGPU.Algorithms", "SpecializedInference.Kernels", "SpecializedInference.Kernels.Dense");
        using (w.Block($"public static partial class {spec.Name}"))
            DecodeMmaEmitter.Emit(w, AttentionLayout.LargeBatchDecode(spec, large), "DecodeMmaLargeBatch");
        return w.ToString();
    }

    public static string Emit(KernelSetSpec spec)
    {
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "ILGPU.Algorithms", "SpecializedInference.Kernels", "SpecializedInference.Kernels.Dense");
        using (w.Block($"public static partial class {spec.Name}"))
        {
            var grouped = new AttentionLayout(spec, expanded: false);
            EmitDecode(w, grouped);
            w.Line();
            EmitDecode(w, new AttentionLayout(spec, expanded: true));
            if (DecodeMmaEmitter.Supports(grouped))
            {
                w.Line();
                DecodeMmaEmitter.Emit(w, grouped);
            }
        }
        return w.ToString();
    }

    private static void EmitDecode(SourceWriter w, AttentionLayout L)
    {
        int T = L.Threads, D4 = L.D4, U = L.Units, HG = L.HeadsPerGroup, P = L.Partition, KS = L.KeySlots, D = L.HeadDim;
        string mapping = L.Expanded ? "one query head (K/V read per head, as if repeated)" : $"{HG} query heads sharing each K/V load";
        w.Line("/// <summary>");
        w.Line($"/// Split-K flash decode: thread group = (decode, partition of {P} keys) x ({mapping}), {T} threads.");
        w.Line(L.ThreadsPerKey == 1
            ? "/// Each thread scores one key with 16-byte K loads while the V rows of its P·V share are already loading,"
            : $"/// {L.ThreadsPerKey} threads score each key, {L.HeadDim / L.ThreadsPerKey} dims each, with 16-byte K loads while the V rows of their P·V share are already loading,");
        w.Line($"/// a warp per head takes the partition's max and sum, then thread (key slot of {KS}, 8-dim unit of {U}) accumulates");
        w.Line("/// P·V from those registers (16-byte V loads; one memory round trip for K and V). A single-partition");
        w.Line("/// decode writes its output; otherwise the partition's (max, sum, output) go to scratch and the group takes a");
        w.Line("/// ticket: the last partition of the decode to arrive combines them all and writes the output (one launch).");
        w.Line("/// </summary>");
        w.Line("/// <param name=\"queries\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <typeparam name=\"TDependency\">How it follows the kernel before it: stream-ordered, or a programmatic launch.</typeparam>");
        w.Line($"public static void Decode{L.Suffix}<TCodec, TDependency>(AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TCodec : struct, IKvCodec");
        w.Line("    where TDependency : struct, ILaunchDependency");
        w.Line($"    => Decode{L.Suffix}Group<TCodec, TDependency>(Grid.IdxX, m, queries, keyCache, valueCache, output);");
        w.Line();
        EmitGroupSummary(w, $"Decode{L.Suffix}");
        w.Line($"public static void Decode{L.Suffix}Group<TCodec, TDependency>(int group, AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TCodec : struct, IKvCodec");
        w.Line("    where TDependency : struct, ILaunchDependency");
        using (w.Scope())
        {
            EmitPreamble(w, L, L.KeySlots, SlotSumThreads(L));

            int R = KeysPerThread(L), VP = ValuePrefetch(L);
            w.Line($"// This thread's share of P·V: keys slot + {KS} * r (r < {R}) of the partition, 8 dims at unit.");
            w.Line($"int slot = {Div("t", U)};");
            w.Line($"int unit = {Mod("t", U)};");
            if (SlotsTileBlocks(L))
                w.Line($"long vThread = ((long)kvHead * {Int(L.BlockSize)} + slot) * {Int(D)} + unit * 8;   // this thread's V chunk in a block, before the block");
            if (VP > 0)
                w.Line($"RawChunk8 {string.Join(", ", Enumerable.Range(0, VP).Select(r => $"vr{r}"))};   // V of its first {VP} keys, loaded with the K rows");
            w.Line();

            int S = L.ThreadsPerKey, KP = T / S, US = U / S;   // threads per key, keys per pass, 8-dim units per thread
            if (S == 1)
            {
                w.Line($"// Scores: one key per thread (keys t + {KP} * i), the whole K row in 16-byte loads, every head from the same load.");
                w.Line("int j0 = t;");
            }
            else
            {
                w.Line($"// Scores: {S} threads per key (key t / {S}), each over every {S}th 8-dim unit of its row (neighbouring lanes load");
                w.Line($"// neighbouring 16 bytes), every head from the same load; the partial dots meet in warp shuffles. A share of the K");
                w.Line("// row per thread leaves registers for more warps per SM.");
                w.Line($"int j0 = {Div("t", S)};");
                w.Line($"int part0 = {Mod("t", S)};   // units part0 + {S} * u of the row");
                w.Line("var sQPart = sQ.SubView(part0 * 2);   // this thread's dims of every head's query, indexed with constants");
            }
            string sQRow = S == 1 ? "sQ" : "sQPart";
            w.Line("// A key past the context reads a row of a valid block all the same (no branch around the loads) and scores -inf.");
            for (int i = 0; i * KP < P; i++)
            {
                using (w.Scope())
                {
                    w.Line(i == 0 ? "int j = j0;" : $"int j = j0 + {Int(KP * i)};");
                    w.Line("bool valid = j < numKeys;");
                    // Unclamped: a key past the context reads a row of a valid block (the plan repeats the last one)
                    // and its score is masked; only a key past the partition is held at its last key.
                    w.Line(KP * (i + 1) > P ? $"int key = k0 + (j < {Int(P)} ? j : {Int(P - 1)});" : "int key = k0 + j;");
                    w.Line(S == 1 ? $"long row = {Row(L, "key")};" : $"long row = {Row(L, "key")} + part0 * 8;");
                    for (int h = 0; h < HG; h++) w.Line($"float s{h} = 0f;");
                    // Raw loads in batches of KeyLoadsInFlight units (4 registers each for f16): all in flight, then decoded and used.
                    for (int u0 = 0; u0 < US; u0 += KeyLoadsInFlight)
                    {
                        for (int u = u0; u < US && u < u0 + KeyLoadsInFlight; u++) w.Line($"var kr{u} = default(TCodec).LoadRaw8(keyCache, row + {Int(u * S * 8)});");
                        if (i == 0 && u0 == 0 && VP > 0)
                        {
                            w.Line($"// Prefetch: this thread's P·V rows go out right behind its K row, so the group waits for one memory");
                            w.Line($"// round trip (K and V in flight together) instead of two (V only after the softmax).");
                            EmitValueLoads(w, L, 0, VP, declare: false);
                        }
                        var issued = Enumerable.Range(u0, Math.Min(KeyLoadsInFlight, US - u0)).Select(u => $"kr{u}");
                        w.Line(StepBoundary.Chunks("sQ", HG * D4, i == 0 && u0 == 0 ? issued.Concat(Enumerable.Range(0, VP).Select(r => $"vr{r}")) : issued));
                        if (i == 0 && u0 == 0)
                        {
                            EmitQueries(w, L);
                        }
                        for (int u = u0; u < US && u < u0 + KeyLoadsInFlight; u++)
                        {
                            w.Line($"var kc{u} = default(TCodec).Decode8(kr{u});");
                            // The shared Q rows go in as values: one 16-byte shared load each (sQ[i].Dot(...) would read
                            // through a reference, four 4-byte loads and their 64-bit address arithmetic per Float4).
                            for (int h = 0; h < HG; h++)
                                w.Line($"s{h} = kc{u}.Hi.DotAdd({sQRow}[{Int(h * D4 + 2 * u * S + 1)}], kc{u}.Lo.DotAdd({sQRow}[{Int(h * D4 + 2 * u * S)}], s{h}));");
                            w.Line(StepBoundary.Floats("sQ", HG * D4, Enumerable.Range(0, HG).Select(h => $"s{h}")));
                        }
                    }
                    if (S > 1)
                    {
                        w.Line($"// The key's {S} threads are neighbouring lanes: their partial dots summed, every one of them holds the score.");
                        for (int o = 1; o < S; o <<= 1)
                            for (int h = 0; h < HG; h++) w.Line($"s{h} += Warp.ShuffleXor(s{h}, {Int(o)});");
                    }
                    string write = KP * (i + 1) > P ? $"j < {Int(P)}" : "";
                    if (S > 1) write = write.Length == 0 ? "part0 == 0" : $"part0 == 0 && {write}";
                    if (write.Length > 0) w.Open($"if ({write})");
                    for (int h = 0; h < HG; h++) w.Line($"sP[{Int(h * P)} + j] = valid ? s{h} : float.NegativeInfinity;");
                    if (write.Length > 0) w.Close();
                }
            }
            w.Line("Group.Barrier();");
            w.Line();

            EmitSoftmax(w, L);

            w.Line($"// P·V: thread = (key slot t / {U}, 8-dim unit t % {U}); one 16-byte V load serves every head. Keys past");
            w.Line("// the context have probability exactly 0 and their V chunks are masked to 0 (the row may hold anything).");
            bool slotGuard = T % U != 0;
            if (slotGuard) w.Open($"if (slot < {Int(KS)})");
            w.Line("var sPSlot = sP.SubView(slot);   // this slot's probabilities, indexed with constants (folded into the loads)");
            for (int h = 0; h < HG; h++)
            {
                w.Line($"var lo{h} = default(Float4);");
                w.Line($"var hi{h} = default(Float4);");
            }
            // Batches of keys: the prefetched ones, then ValueLoadsInFlight at a time; each batch's loads are issued
            // before the previous batch is consumed.
            var batches = new System.Collections.Generic.List<(int From, int To)>();
            if (VP > 0) batches.Add((0, VP));
            for (int r0 = VP; r0 < R; r0 += ValueLoadsInFlight) batches.Add((r0, Math.Min(R, r0 + ValueLoadsInFlight)));
            if (VP == 0) EmitValueLoads(w, L, batches[0].From, batches[0].To, declare: true);
            for (int b = 0; b < batches.Count; b++)
            {
                if (b + 1 < batches.Count)
                {
                    w.Line($"// V of keys {batches[b + 1].From}..{batches[b + 1].To - 1} in flight while keys {batches[b].From}..{batches[b].To - 1} are accumulated.");
                    EmitValueLoads(w, L, batches[b + 1].From, batches[b + 1].To, declare: true);
                    w.Line(StepBoundary.Chunks("sQ", HG * D4, Enumerable.Range(batches[b + 1].From, batches[b + 1].To - batches[b + 1].From).Select(r => $"vr{r}")));
                }
                for (int r = batches[b].From; r < batches[b].To; r++)
                {
                    string inContext = r == 0 ? "slot < numKeys" : $"slot + {Int(r * KS)} < numKeys";
                    w.Line($"var v{r} = default(TCodec).Decode8(vr{r}.Masked({inContext}));   // past the context: 0, not whatever the row holds");
                    bool pastPartition = r * KS + KS - 1 >= P;     // some slots' key r lies past the partition
                    for (int h = 0; h < HG; h++)
                    {
                        string sp = $"sPSlot[{Int(h * P + r * KS)}]";
                        w.Line($"float p{r}h{h} = {(pastPartition ? $"slot < {Int(P - r * KS)} ? {sp} : 0f" : sp)};");
                        w.Line($"lo{h} = lo{h}.Fma(v{r}.Lo, p{r}h{h});");
                        w.Line($"hi{h} = hi{h}.Fma(v{r}.Hi, p{r}h{h});");
                    }
                    w.Line(StepBoundary.Float4s("sQ", HG * D4, Enumerable.Range(0, HG).SelectMany(h => new[] { $"lo{h}", $"hi{h}" })));
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

            EmitReduceAndWrite(w, L, KS, SlotSumThreads(L), StageMarks.None);
        }
    }

    /// <summary>The doc comment of a decode's per-group body (<c>{kernel}Group</c>), which its kernel calls with the
    /// launch's group index and a grid-synced layer launch with each group index it loops over.</summary>
    internal static void EmitGroupSummary(SourceWriter w, string kernel)
    {
        w.Line($"/// <summary>Thread group <paramref name=\"group\"/> of <see cref=\"{kernel}\"/>: the kernel's own group, or one of those a");
        w.Line("/// grid-synced layer launch loops over (SpecializedInference.Kernels.Dense.LayerBodies). Every thread of the group");
        w.Line("/// calls it, and all leave it together (no early return: its group barriers stay matched).</summary>");
    }

    /// <summary>
    /// The start every decode kernel shares: the work item and the partition's blocks (round trip 1) and the shared
    /// buffers (<paramref name="redSlots"/> partial P·V rows per head). Under a programmatic launch
    /// (<c>TDependency</c>) the next kernel may start from the first line; this kernel reads only the plan's lists
    /// (copied from the host before the chain) until the K/V loads are out (<see cref="EmitQueries"/> waits), except
    /// in the partition holding the query's own key, whose row the kernel before (the qkv projection) writes.
    /// </summary>
    internal static void EmitPreamble(SourceWriter w, AttentionLayout L, int redSlots, int slotSumThreads)
    {
        int T = L.Threads, D4 = L.D4, HG = L.HeadsPerGroup, P = L.Partition, D = L.HeadDim;
        w.Line("default(TDependency).LetTheNextStart();   // a programmatic launch: the next kernel may be scheduled now");
        w.Line($"int item = {Div("group", L.HeadGroups)};");
        w.Line($"int headGroup = {Mod("group", L.HeadGroups)};");
        w.Line($"int firstHead = headGroup * {Int(HG)};");
        w.Line($"int kvHead = {Div("firstHead", L.GroupSize)};");
        w.Line("// Round trip 1: the work item and the partition's physical blocks (listed per item by the plan), independent loads.");
        w.Line("int work = item * 5;                        // (decode, partition, token, context, block-table row)");
        w.Line("int decode = m.DecodeWork[work];");
        w.Line("int part = m.DecodeWork[work + 1];");
        w.Line("int token = m.DecodeWork[work + 2];");
        w.Line("int context = m.DecodeWork[work + 3];");
        w.Line($"int k0 = part * {Int(P)};");
        w.Line($"int numKeys = context - k0 < {Int(P)} ? context - k0 : {Int(P)};");
        w.Line($"int partitions = {Div($"(context + {Int(P - 1)})", P)};");
        w.Line("int t = Group.IdxX;");
        w.Line();
        w.Line($"var sQ = SharedMemory.Allocate<Float4>({Int(HG * D4)});      // [heads, head_dim] queries pre-scaled by 1/sqrt(head_dim)");
        w.Line($"var sP = SharedMemory.Allocate<float>({Int(HG * P)});       // [heads, partition] scores, then exp(s - max)");
        w.Line($"var sRed = SharedMemory.Allocate<Float4>({Int(redSlots * HG * D4)});    // [{(redSlots == L.KeySlots ? "key_slots" : "warps")}, heads, head_dim] partial P·V");
        w.Line($"var sMax = SharedMemory.Allocate<float>({Int(HG)});      // [heads] partition max");
        w.Line($"var sSum = SharedMemory.Allocate<float>({Int(HG)});      // [heads] partition sum of exp(s - max)");
        int nb = BlocksPerPartition(L);
        w.Line($"var sBlock = SharedMemory.Allocate<int>({Int(nb)});     // [blocks] the partition's physical blocks, read once");
        w.Line("var sLast = SharedMemory.Allocate<int>(1);      // [1] whether this group drew its decode's last ticket");
        if (slotSumThreads > 1)
            w.Line($"var sSlotSum = SharedMemory.Allocate<Float4>({Int((slotSumThreads - 1) * HG * D4)});   // [slot-sum threads - 1, heads, head_dim] their partial P·V sums");
        if (CombineSlices(L) > 1)
            w.Line($"var sSlice = SharedMemory.Allocate<float>({Int(2 * CombineSlices(L) * HG)});   // [combine slices, heads, 2] each slice's running (max, sum)");
        w.Line("var partialOut = m.PartialOut.Cast<Float4>();   // [num_decodes, heads, partition_slots, head_dim / 4]");
        w.Line();
        w.Line($"int firstBlock = {Div("k0", L.BlockSize)};");
        w.Line("var blocks = m.DecodeBlocks.SubView((long)item * m.DecodeBlocksPerItem);   // [blocks] this partition's, past the context its last again");
        for (int i = 0; i * T < nb; i++)
        {
            using (w.Scope())
            {
                w.Line($"int b = t + {Int(T * i)};");
                w.Line(T * (i + 1) > nb ? $"if (b < {Int(nb)}) sBlock[b] = blocks[b];" : "sBlock[b] = blocks[b];");
            }
        }
        w.Line("Group.Barrier();   // sBlock");
        w.Line("// The partition holding the query's own key (the decode's last) waits for the kernel before, which may have just");
        w.Line("// written that key's row; the others load rows of earlier steps while it runs.");
        w.Line("if (part == partitions - 1) default(TDependency).WaitForThePrevious();");
        w.Line();
    }

    /// <summary>
    /// Round trip 2's other half, issued once this thread's K/V loads are out: the wait for the kernel before (the
    /// queries are its output), this thread's query Float4s, pre-scaled, into shared memory, then a barrier: every
    /// thread's before any reads them. The queries come back while the K/V rows still travel.
    /// </summary>
    internal static void EmitQueries(SourceWriter w, AttentionLayout L)
    {
        int T = L.Threads, HG = L.HeadsPerGroup, D4 = L.D4, D = L.HeadDim;
        w.Line("// The queries, now that the K/V loads are out: written by the kernel before, so after its end; every thread's");
        w.Line("// before the scores read them.");
        w.Line("default(TDependency).WaitForThePrevious();");
        for (int i = 0; i * T < HG * D4; i++)
        {
            using (w.Scope())
            {
                w.Line(i == 0 ? "int f = t;" : $"int f = t + {Int(T * i)};");
                bool guard = T * (i + 1) > HG * D4;
                if (guard) w.Open($"if (f < {Int(HG * D4)})");
                w.Line($"long src = ((long)token * {Int(L.Heads)} + firstHead + {Div("f", D4)}) * {Int(D)} + {Mod("f", D4)} * 4;");
                w.Line($"sQ[f] = new Float4(queries[src], queries[src + 1], queries[src + 2], queries[src + 3]) * {Float(L.Scale)};");
                if (guard) w.Close();
            }
        }
        w.Line("Group.Barrier();   // sQ");
    }

    /// <summary>The partition's softmax over the scores in sP, a warp per head, then a barrier.</summary>
    internal static void EmitSoftmax(SourceWriter w, AttentionLayout L)
    {
        int HG = L.HeadsPerGroup, P = L.Partition;
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
    }

    /// <summary>
    /// The end every decode kernel shares: the partial P·V rows in sRed (<paramref name="slots"/> per head) summed
    /// by <paramref name="slotSumThreads"/> threads per Float4 column, normalized by the partition's sum, written as
    /// the output (one partition) or as the partition's partial, then the ticket and the combine.
    /// </summary>
    internal static void EmitReduceAndWrite(SourceWriter w, AttentionLayout L, int slots, int slotSumThreads, StageMarks marks)
    {
        int T = L.Threads, D4 = L.D4, HG = L.HeadsPerGroup, D = L.HeadDim;
        int C = HG * D4, SS = slotSumThreads;
        if (SS > 1)
        {
            w.Line($"// Sum the key slots, {SS} threads per Float4 column ({slots / SS} slots each) so that every warp takes part;");
            w.Line("// the partial sums of threads past the first go through sSlotSum.");
            w.Line("var slotAcc = default(Float4);");
            using (w.Scope())
            {
                w.Line($"int f = {Mod("t", C)};");
                w.Line($"int q = {Div("t", C)};");
                if (T > SS * C) w.Open($"if (q < {Int(SS)})");
                w.Line($"var sRedPart = sRed.SubView(q * {Int(slots / SS * C)});   // slots q * {slots / SS} .. of every column");
                EmitSlotSum(w, "slotAcc", slots / SS, s => $"sRedPart[{Int(s * C)} + f]", C);
                w.Line($"if (q > 0) sSlotSum[(q - 1) * {Int(C)} + f] = slotAcc;");
                if (T > SS * C) w.Close();
            }
            w.Line("Group.Barrier();");
        }
        w.Line("// Normalize by this partition's sum, write the output or the partial.");
        for (int i = 0; i * T < C; i++)
        {
            using (w.Scope())
            {
                w.Line($"int f = t + {Int(T * i)};");
                bool guard = T * (i + 1) > C;
                if (guard) w.Open($"if (f < {Int(C)})");
                w.Line($"int h = {Div("f", D4)};");
                w.Line($"int c = {Mod("f", D4)};");
                if (SS > 1)
                    w.Line($"var acc = {string.Join(" + ", new[] { "slotAcc" }.Concat(Enumerable.Range(0, SS - 1).Select(q => $"sSlotSum[{Int(q * C)} + f]")))};");
                else
                {
                    w.Line("var acc = default(Float4);");
                    EmitSlotSum(w, "acc", slots, s => $"sRed[{Int(s * C)} + f]", C);
                }
                w.Line("float sum = sSum[h];");
                w.Line("acc = acc * (1f / sum);");
                w.Line("int head = firstHead + h;");
                using (w.Block("if (partitions == 1)"))
                {
                    w.Line($"long dst = ((long)token * {Int(L.Heads)} + head) * {Int(D)} + c * 4;");
                    w.Line("output[dst] = acc.X;");
                    w.Line("output[dst + 1] = acc.Y;");
                    w.Line("output[dst + 2] = acc.Z;");
                    w.Line("output[dst + 3] = acc.W;");
                }
                using (w.Block("else"))
                {
                    w.Line($"long partial = ((long)decode * {Int(L.Heads)} + head) * m.PartitionSlots + part;");
                    w.Line($"partialOut[partial * {Int(D4)} + c] = acc;");
                    using (w.Block("if (c == 0)"))
                    {
                        w.Line("m.PartialMaxSum[partial * 2] = sMax[h];");
                        w.Line("m.PartialMaxSum[partial * 2 + 1] = sum;");
                    }
                }
                if (guard) w.Close();
            }
        }
        w.Line();
        using (w.Block("if (partitions > 1)"))
            EmitTicketAndCombine(w, L, marks);
        marks.At(w, "Exit");
    }

    /// <summary>Threads that sum one Float4 column's key slots after P·V (one when every thread already has a column).</summary>
    private static int SlotSumThreads(AttentionLayout L) => SharedMemoryBudget.DecodeSlotSumThreads(L.HeadDim, L.HeadsPerGroup, L.Warps);

    /// <summary>acc += the Float4s <paramref name="slot"/>(0 .. count - 1): a balanced sum per SlotsPerSum slots, each
    /// kept in its own step (otherwise ptxas issues every slot's shared load at once: 64 Float4s at head_dim 16).</summary>
    private static void EmitSlotSum(SourceWriter w, string acc, int count, Func<int, string> slot, int scratch)
    {
        for (int k = 0; k < count; k += SlotsPerSum)
        {
            var slots = Enumerable.Range(k, Math.Min(SlotsPerSum, count - k)).Select(slot).ToList();
            w.Line(k == 0 ? $"{acc} = {PrefillEmitter.Tree(slots, (a, b) => $"({a} + {b})")};" : $"{acc} = {acc} + {PrefillEmitter.Tree(slots, (a, b) => $"({a} + {b})")};");
            if (k + SlotsPerSum < count) w.Line(StepBoundary.Float4s("sQ", scratch, new[] { acc }));
        }
    }

    /// <summary>Partitions whose (max, sum, output) a combining thread loads at once: the combine is the launch's
    /// tail, so its loads go out in as few round trips as the registers allow (the K/V registers are free by then;
    /// 32 partitions of a 4096-token context at partitions of 128 are two batches).</summary>
    public const int CombineLoadsInFlight = 16;

    /// <summary>Slices of partitions the combining threads split a decode's partitions into: one when the group's
    /// Float4 columns (heads × head_dim / 4) occupy every thread.</summary>
    private static int CombineSlices(AttentionLayout L) => SharedMemoryBudget.DecodeCombineSlices(L.HeadDim, L.HeadsPerGroup, L.Warps);

    /// <summary>
    /// The ticket and the combine at the end of a multi-partition decode's group. Release: every thread's
    /// partial stores, a barrier, then thread 0's device fence and ticket (cumulative through the barrier, the
    /// split-K semaphore pattern). The group that draws the last ticket fences again (acquire), resets the
    /// counter for the next launch, and combines: thread = (slice of partitions, Float4 column of the group's
    /// heads) runs the online softmax over its slice, loading each batch's (max, sum, output) in one round trip,
    /// out = Σ_p l_p·exp(m_p - M)·o_p / Σ_p l_p·exp(m_p - M); slices (when there are several) are merged the same
    /// way through shared memory.
    /// </summary>
    /// <remarks>The partials were written by other groups, maybe on other SMs, so they must not come from stale
    /// L1 lines. ILGPU 1.5.3 has no ld.global.cg or volatile load; instead the acquire fence (membar.gl, which is
    /// fence.sc.gpu on sm_70+) orders the loads after the writers' release, which the PTX memory model makes
    /// plain loads observe; and each head's scratch starts on its own 128-byte line (the plan's partition slots
    /// are a multiple of 16), so no other group loads a line of it during the launch and the L1 cannot hold one
    /// from before the writes (the L1 does not survive a launch boundary).</remarks>
    private static void EmitTicketAndCombine(SourceWriter w, AttentionLayout L, StageMarks marks)
    {
        int T = L.Threads, D4 = L.D4, HG = L.HeadsPerGroup, n = CombineLoadsInFlight;
        int C = HG * D4;                       // Float4 columns of the group's heads
        int S = CombineSlices(L);              // slices of partitions
        w.Line("// Ticket: the group that completes the decode's partitions (for these heads) combines them.");
        w.Line("Group.Barrier();");
        using (w.Block("if (t == 0)"))
        {
            w.Line($"ref int ticket = ref m.DecodeTickets[decode * {Int(L.HeadGroups)} + headGroup];");
            w.Line("MemoryFence.DeviceLevel();                 // release: this group's partials before its ticket");
            w.Line("bool last = Atomic.Add(ref ticket, 1) == partitions - 1;");
            using (w.Block("if (last)"))
            {
                w.Line("ticket = 0;                                // every partition has drawn: ready for the next launch");
                w.Line("MemoryFence.DeviceLevel();                 // acquire: the other groups' partials before we read them");
            }
            w.Line("sLast[0] = last ? 1 : 0;");
        }
        w.Line("Group.Barrier();");
        marks.At(w, "Ticket");
        using (w.Block("if (sLast[0] != 0)"))
        {
            w.Line($"long first = ((long)decode * {Int(L.Heads)} + firstHead) * m.PartitionSlots;   // partial (decode, firstHead, 0)");
            w.Line();
            w.Line($"// Thread = (slice {(S > 1 ? $"i / {C}" : "0")} of {S}, Float4 column i % {C} of the group's heads): online softmax over the");
            w.Line($"// slice's partitions p = slice + {S} * k, {n} partitions' (max, sum, output) loaded at once; past the last");
            w.Line("// partition a batch reads partition 0 again with max -inf, i.e. weight 0.");
            for (int i = 0; i * T < S * C; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int i = t + {Int(T * i)};");
                    bool guard = T * (i + 1) > S * C;
                    if (guard) w.Open($"if (i < {Int(S * C)})");
                    w.Line($"int f = {Mod("i", C)};");
                    w.Line($"int h = {Div("f", D4)};");
                    w.Line($"int c = {Mod("f", D4)};");
                    w.Line("long row = first + h * (long)m.PartitionSlots;");
                    w.Line("float mx = float.NegativeInfinity, sum = 0f;");
                    w.Line("var acc = default(Float4);");
                    using (w.Block($"for (int p = {(S > 1 ? $"i / {Int(C)}" : "0")}; p < partitions; p += {Int(n * S)})"))
                    {
                        for (int r = 0; r < n; r++)
                        {
                            string pr = r == 0 ? "p" : $"p + {Int(r * S)}";
                            w.Line($"long q{r} = row + ({pr} < partitions ? {pr} : 0);");
                            w.Line($"float m{r} = {pr} < partitions ? m.PartialMaxSum[q{r} * 2] : float.NegativeInfinity;");
                            w.Line($"float l{r} = m.PartialMaxSum[q{r} * 2 + 1];");
                            w.Line($"var o{r} = partialOut[q{r} * {Int(D4)} + c];");
                        }
                        w.Line(StepBoundary.Floats("sQ", C, Enumerable.Range(0, n).SelectMany(r => new[] { $"m{r}", $"l{r}" })));
                        w.Line(StepBoundary.Float4s("sQ", C, Enumerable.Range(0, n).Select(r => $"o{r}")));
                        w.Line($"float mNew = XMath.Max(mx, {PrefillEmitter.Tree(Enumerable.Range(0, n).Select(r => $"m{r}").ToList(), (a, b) => $"XMath.Max({a}, {b})")});");
                        w.Line("float alpha = AttentionMath.ExpOrZero(mx - mNew);   // 0 on the first batch (mx = -inf, mNew finite)");
                        for (int r = 0; r < n; r++) w.Line($"float w{r} = l{r} * AttentionMath.ExpOrZero(m{r} - mNew);");
                        w.Line($"sum = sum * alpha + {PrefillEmitter.Tree(Enumerable.Range(0, n).Select(r => $"w{r}").ToList(), (a, b) => $"({a} + {b})")};");
                        w.Line("acc = acc * alpha;");
                        for (int r = 0; r < n; r++) w.Line($"acc = acc.Fma(o{r}, w{r});");
                        w.Line("mx = mNew;");
                    }
                    if (S == 1) EmitStoreOutput(w, L, "f", "acc * (1f / sum)");
                    else
                    {
                        w.Line("sRed[i] = acc;");
                        using (w.Block("if (c == 0)"))
                        {
                            w.Line($"sSlice[(i / {Int(C)} * {Int(HG)} + h) * 2] = mx;");
                            w.Line($"sSlice[(i / {Int(C)} * {Int(HG)} + h) * 2 + 1] = sum;");
                        }
                    }
                    if (guard) w.Close();
                }
            }
            if (S > 1)
            {
                w.Line("Group.Barrier();");
                w.Line("// Merge the slices: M = max_s M_s, out = Σ_s acc_s·exp(M_s - M) / Σ_s L_s·exp(M_s - M).");
                using (w.Block($"if (t < {Int(C)})"))
                {
                    w.Line($"int h = {Div("t", D4)};");
                    w.Line($"float mx = {PrefillEmitter.Tree(Enumerable.Range(0, S).Select(k => $"sSlice[{Int(k * HG * 2)} + h * 2]").ToList(), (a, b) => $"XMath.Max({a}, {b})")};");
                    w.Line("float sum = 0f;");
                    w.Line("var acc = default(Float4);");
                    for (int k = 0; k < S; k++)
                    {
                        w.Line($"float w{k} = AttentionMath.ExpOrZero(sSlice[{Int(k * HG * 2)} + h * 2] - mx);   // 0 for a slice without partitions");
                        w.Line($"sum += sSlice[{Int(k * HG * 2)} + h * 2 + 1] * w{k};");
                        w.Line($"acc = acc.Fma(sRed[{Int(k * C)} + t], w{k});");
                    }
                    EmitStoreOutput(w, L, "t", "acc * (1f / sum)");
                }
            }
            marks.At(w, "Combine");
        }
    }

    /// <summary>Writes <paramref name="value"/> (a Float4) to the output at Float4 column <paramref name="column"/> of the group's heads.</summary>
    private static void EmitStoreOutput(SourceWriter w, AttentionLayout L, string column, string value)
    {
        w.Line($"var o = {value};");
        w.Line($"long dst = ((long)token * {Int(L.Heads)} + firstHead) * {Int(L.HeadDim)} + {column} * 4;");
        w.Line("output[dst] = o.X;");
        w.Line("output[dst + 1] = o.Y;");
        w.Line("output[dst + 2] = o.Z;");
        w.Line("output[dst + 3] = o.W;");
    }
}
