using System.Collections.Generic;
using System.Linq;
using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits flash prefill for one kernel set, grouped and expanded, as a register-tiled kernel on CUDA cores
/// (<see cref="PrefillTiling"/>): each thread accumulates a micro-tile of S = Q·Kᵀ and of O in named scalar and
/// Float4 registers, with every loop over head_dim, keys and the micro-tile written out (ILGPU neither unrolls loops
/// nor keeps arrays with non-constant indices in registers), and keeps its rows' online-softmax state in registers.
/// </summary>
internal static class PrefillEmitter
{
    public static string HintName(KernelSetSpec spec)
        => $"{spec.Name}.Prefill.Hd{spec.Model.HeadDim}.{AttentionLayout.HeadTag(spec.Model)}.Tq{spec.Engine.Tiles.PrefillTileQ}.Tkv{spec.Engine.Tiles.PrefillTileKv}.g.cs";

    public static string Emit(KernelSetSpec spec)
    {
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "ILGPU.Algorithms", "SpecializedInference.Kernels");
        using (w.Block($"public static partial class {spec.Name}"))
        {
            var m = spec.Model;
            int bs = spec.Engine.KvBlockSize;
            w.Line("/// <summary>First element of <paramref name=\"key\"/>'s row in the K or V cache of <paramref name=\"kvHead\"/>,");
            w.Line("/// through the sequence's block table ([num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]).</summary>");
            w.Line("private static long PrefillKvRow(AttentionMeta m, int blockRow, int kvHead, int key)");
            w.Line($"    => (((long)m.BlockTables[blockRow + {Div("key", bs)}] * {Int(m.NumKeyValueHeads)} + kvHead) * {Int(bs)} + {Mod("key", bs)}) * {Int(m.HeadDim)};");
            w.Line();
            EmitKernel(w, new AttentionLayout(spec, expanded: false));
            w.Line();
            EmitKernel(w, new AttentionLayout(spec, expanded: true));
        }
        return w.ToString();
    }

    /// <summary>The register tiling of one variant's prefill kernel.</summary>
    private static PrefillTiling Tiling(AttentionLayout L) => PrefillTiling.For(L.HeadDim, L.TileKv, L.Rows);

    private static void EmitKernel(SourceWriter w, AttentionLayout L)
    {
        var P = Tiling(L);
        int T = P.Threads, D4 = P.D4, RM = P.RowsPerThread, RN = P.KeysPerThread, TC = P.KeyLanes, RG = P.RowGroups;
        int BR = P.PaddedRows, BC = P.TileKv, CW = P.ColumnsPerThread, VS = P.VStride, PS = P.PStride, HG = L.HeadsPerGroup;
        int UL = P.UnitLanes, QL = P.QueryLanes;
        var rows = Enumerable.Range(0, RM).ToList();
        var keys = Enumerable.Range(0, RN).ToList();
        var cols = Enumerable.Range(0, CW).ToList();
        string Join(IEnumerable<int> range, System.Func<int, string> f, string sep = " ") => string.Join(sep, range.Select(f));
        string RowOf(int i) => Plus("rg", RG * i);

        string mapping = L.Expanded ? "one query head (K/V read per head, as if repeated)" : $"the {HG} query heads of one K/V head";
        string padded = BR > L.Rows ? $", padded to {BR} so every warp is full" : "";
        w.Line($"/// <summary>Threads per group of Prefill{L.Suffix}: {RG} row groups x {TC} key lanes.</summary>");
        w.Line($"public const int Prefill{L.Suffix}Threads = {Int(T)};");
        w.Line();
        w.Line("/// <summary>");
        w.Line($"/// Flash prefill, causal, variable-length batch, register-tiled on CUDA cores. Thread group = ({L.Positions} query positions");
        w.Line($"/// of one sequence) x ({mapping}) = {L.Rows} query rows (row = position * {HG} + head{padded}), {T} threads.");
        w.Line($"/// K/V tiles of {BC} keys are read through the block table (earlier chunks come from the cache) one tile ahead into registers,");
        w.Line("/// then decoded to f32 in shared memory.");
        w.Line($"/// Thread t = (row group rg = t / {TC}, key lane kl = t % {TC}) owns rows rg + {RG} * i (i &lt; {RM}), keys kl + {TC} * j (j &lt; {RN})");
        w.Line($"/// of S and Float4 columns kl + {TC} * c (c &lt; {CW}) of O, all in registers: per head_dim Float4, {RM} Q and {RN} K shared loads");
        w.Line($"/// feed {4 * RM * RN} FMAs; per 4 keys of P·V, {RM} P and {4 * CW} V loads feed {16 * RM * CW}.");
        w.Line($"/// Per tile: S = Q·Kᵀ, causal mask, online softmax per row (running max reduced over the row's {TC} lanes by xor shuffles,");
        w.Line($"/// rescale, running sum), P through shared memory, O = O * alpha + P·V. Shared memory: {P.SharedBytes} bytes.");
        w.Line("/// </summary>");
        w.Line("/// <param name=\"queries\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line($"public static void Prefill{L.Suffix}<TCodec>(AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TCodec : struct, IKvCodec");
        using (w.Scope())
        {
            w.Line($"int item = {Div("Grid.IdxX", L.HeadGroups)};");
            w.Line($"int firstHead = {Mod("Grid.IdxX", L.HeadGroups)} * {Int(HG)};");
            w.Line($"int kvHead = {Div("firstHead", L.GroupSize)};");
            w.Line("int seq = m.PrefillWork[2 * item];");
            w.Line("int i0 = m.PrefillWork[2 * item + 1];");
            w.Line("int queryStart = m.QueryStart[seq];");
            w.Line("int queryLen = m.QueryStart[seq + 1] - queryStart;");
            w.Line("int context = m.ContextLens[seq];");
            w.Line($"int tilePositions = queryLen - i0 < {Int(L.Positions)} ? queryLen - i0 : {Int(L.Positions)};");
            w.Line("int firstQueryPos = context - queryLen + i0; // absolute position of the tile's first query");
            w.Line("int numKeys = firstQueryPos + tilePositions;  // causal: keys up to the tile's last query");
            w.Line("int blockRow = seq * m.MaxBlocksPerSeq;");
            w.Line("int t = Group.IdxX;");
            w.Line($"int rg = {Div("t", TC)}; // row group: this thread's rows are rg + {RG} * i");
            w.Line($"int kl = {Mod("t", TC)}; // key lane: its keys of S are kl + {TC} * j, its Float4 columns of O kl + {TC} * c");
            w.Line();

            w.Line($"var sQ = SharedMemory.Allocate<Float4>({Int(P.QFloat4s)});  // [head_dim / 4, {BR} rows] queries pre-scaled by 1/sqrt(head_dim), dims-major");
            if (P.SharedKv)
            {
                w.Line($"var sK = SharedMemory.Allocate<Float4>({Int(System.Math.Max(P.KFloat4s, P.VFloat4s))});  // [head_dim / 4, {BC} keys] keys, dims-major; then V");
                w.Line($"var sV = sK;                                  // [{BC} keys, head_dim / 4 + 1] values, rows padded; K's buffer once S is done (K and V do not both fit 48 KB)");
            }
            else
            {
                w.Line($"var sK = SharedMemory.Allocate<Float4>({Int(P.KFloat4s)});  // [head_dim / 4, {BC} keys] keys, dims-major");
                w.Line($"var sV = SharedMemory.Allocate<Float4>({Int(P.VFloat4s)});  // [{BC} keys, head_dim / 4 + 1] values, rows padded by one Float4");
            }
            w.Line($"var sP4 = SharedMemory.Allocate<Float4>({Int(P.PFloat4s)}); // [{BR} rows, {PS}] probabilities of the tile's {BC} keys, rows padded");
            w.Line("var sP = sP4.Cast<float>();");
            w.Line();

            int qTotal = BR * D4;
            w.Line($"// Q tile, scaled, dims-major: {QL} lanes read consecutive Float4s of a row; rows that are not queries of this tile are zero.");
            using (w.Block($"for (int f = t; f < {Int(qTotal)}; f += {Int(T)})"))
            {
                w.Line($"int r = {Mod(Div("f", QL), BR)};");
                w.Line($"int c = {(QL == 1 ? Div("f", BR) : $"{Div("f", QL * BR)} * {Int(QL)} + {Mod("f", QL)}")};");
                w.Line($"int pos = {Div("r", HG)};");
                w.Line("var q = default(Float4);");
                using (w.Block("if (pos < tilePositions)"))
                {
                    w.Line($"long src = ((long)(queryStart + i0 + pos) * {Int(L.Heads)} + firstHead{(HG == 1 ? "" : $" + {Mod("r", HG)}")}) * {Int(L.HeadDim)} + c * 4;");
                    w.Line($"q = new Float4(queries[src], queries[src + 1], queries[src + 2], queries[src + 3]) * {Float(L.Scale)};");
                }
                w.Line($"sQ[c * {Int(BR)} + r] = q;");
            }
            w.Line();

            w.Line("// Per row i of this thread: its query position, the last key it may see (causal; -1 for rows that are not queries");
            w.Line("// of this tile), the running max m, this thread's share of the running sum l, and its Float4 columns of O.");
            foreach (int i in rows)
            {
                w.Line($"int pos{i} = {Div(RowOf(i), HG)};");
                w.Line($"int last{i} = pos{i} < tilePositions ? firstQueryPos + pos{i} : -1;");
                w.Line($"float m{i} = float.NegativeInfinity, l{i} = 0f;");
                w.Line($"Float4 {Join(cols, c => $"o{i}_{c} = default", ", ")};");
            }
            w.Line($"int pAt = rg * {Int(PS)} + kl;  // this thread's first probability in sP");
            w.Line($"int pAt4 = rg * {Int(PS / 4)};       // its rows' first Float4 in sP4");
            w.Line("// This thread's first element of each tile: the unrolled loads index them with constants, which ptxas folds into");
            w.Line("// the load's address (the per-load index arithmetic was a third of the instructions).");
            w.Line("var sQRows = sQ.SubView(rg);");
            w.Line("var sKKeys = sK.SubView(kl);");
            w.Line("var sVColumns = sV.SubView(kl);");
            w.Line("var sP4Rows = sP4.SubView(pAt4);");
            w.Line();

            int total = BC * P.Units;
            w.Line($"// This thread's units of a K/V tile (key j, 8 elements from u * 8), one per step: {UL} lanes take consecutive units of a key.");
            for (int i = 0; i * T < total; i++)
            {
                string e = i == 0 ? "t" : $"t + {Int(T * i)}";
                string uExpr = UL == 1 ? Div(e, BC) : $"{Div(e, UL * BC)} * {Int(UL)} + {Mod("t", UL)}";
                w.Line($"int j{i} = {Mod(Div(e, UL), BC)}, u{i} = {uExpr};");
            }
            w.Line();

            // Raw 16-byte loads of the K/V units whose first key is `first`, into kr/vr; keys past the last one stay zero.
            void Issue(string first, bool keys, bool values, bool reset = true)
            {
                for (int i = 0; i * T < total; i++)
                {
                    string key = first == "0" ? $"j{i}" : $"{first} + j{i}";
                    string inTile = T * (i + 1) > total ? $"{Plus("t", T * i)} < {Int(total)} && " : "";
                    if (reset) w.Line(keys && values ? $"kr{i} = default; vr{i} = default;" : keys ? $"kr{i} = default;" : $"vr{i} = default;");
                    using (w.Block($"if ({inTile}{key} < numKeys)"))
                    {
                        w.Line($"long at = PrefillKvRow(m, blockRow, kvHead, {key}) + u{i} * 8;");
                        if (keys) w.Line($"kr{i} = default(TCodec).LoadRaw8(keyCache, at);");
                        if (values) w.Line($"vr{i} = default(TCodec).LoadRaw8(valueCache, at);");
                    }
                }
            }

            int steps = AttentionLayout.CeilDiv(total, T);
            w.Line("// Raw K/V chunks in registers, loaded one tile ahead: the loads of the next tile are in flight during this tile's P·V.");
            w.Line($"RawChunk8 {Join(Enumerable.Range(0, steps), i => $"kr{i} = default, vr{i} = default", ", ")};");
            w.Line(P.SharedKv ? "// The first tile's keys." : "// The first tile.");
            Issue("0", keys: true, values: !P.SharedKv, reset: false);
            w.Line();

            using (w.Block($"for (int firstKey = 0; firstKey < numKeys; firstKey += {Int(BC)})"))
            {
                w.Line("Group.Barrier(); // the previous tile's readers of K, V and P are done");
                w.Line();

                if (P.SharedKv)
                {
                    w.Line("// This tile's values: in flight while the keys are stored and S is computed (they go to K's buffer after S).");
                    Issue("firstKey", keys: false, values: true);
                }
                w.Line(P.SharedKv
                    ? "// K tile, decoded to f32 and stored dims-major for the score loop."
                    : "// K/V tile, decoded to f32: K stored dims-major for the score loop, V row-major for P·V.");
                for (int i = 0; i * T < total; i++)
                {
                    bool guard = T * (i + 1) > total;
                    using (guard ? w.Block($"if ({Plus("t", T * i)} < {Int(total)})") : w.Scope())
                    {
                        w.Line($"var k8 = default(TCodec).Decode8(kr{i});");
                        w.Line($"sK[u{i} * {Int(2 * BC)} + j{i}] = k8.Lo;");
                        w.Line($"sK[u{i} * {Int(2 * BC)} + {Int(BC)} + j{i}] = k8.Hi;");
                        if (!P.SharedKv)
                        {
                            w.Line($"var v8 = default(TCodec).Decode8(vr{i});");
                            w.Line($"sV[j{i} * {Int(VS)} + u{i} * 2] = v8.Lo;");
                            w.Line($"sV[j{i} * {Int(VS)} + u{i} * 2 + 1] = v8.Hi;");
                        }
                    }
                }
                w.Line("Group.Barrier();");
                w.Line();

                w.Line($"// S = Q·Kᵀ for this thread's {RM} rows x {RN} keys, one head_dim Float4 at a time: each Q load feeds {RN} keys, each K load {RM} rows.");
                foreach (int i in rows) w.Line($"float {Join(keys, k => $"s{i}_{k} = 0f", ", ")};");
                w.Line($"Float4 {Join(rows, i => $"q{i}", ", ")}, {Join(keys, k => $"k{k}", ", ")};");
                for (int c = 0; c < D4; c++)
                {
                    w.Line($"// head_dim {4 * c}..{4 * c + 3}");
                    w.Line(Join(rows, i => $"q{i} = sQRows[{Int(c * BR + RG * i)}];"));
                    w.Line(Join(keys, k => $"k{k} = sKKeys[{Int(c * BC + TC * k)}];"));
                    foreach (int i in rows) w.Line(Join(keys, k => $"s{i}_{k} = q{i}.DotAdd(k{k}, s{i}_{k});"));
                    w.Line(StepBoundary.Floats("sP4", P.PFloat4s, rows.SelectMany(i => keys.Select(k => $"s{i}_{k}"))));
                }
                w.Line();

                w.Line($"// Causal mask: key firstKey + kl + {TC} * j is visible to row i when it is at most last_i.");
                w.Line("int key0 = firstKey + kl;");
                foreach (int i in rows)
                    w.Line(Join(keys, k => $"s{i}_{k} = {Plus("key0", TC * k)} <= last{i} ? s{i}_{k} : float.NegativeInfinity;"));
                w.Line();

                w.Line($"// Online softmax per row: the tile's max over this thread's keys, then over the row's {TC} lanes (xor shuffles); the");
                w.Line("// rescale factor alpha of what is accumulated; probabilities (to shared memory for P·V); this thread's share of the sum.");
                foreach (int i in rows)
                {
                    using (w.Scope())
                    {
                        w.Line($"float tileMax = {Tree(keys.Select(k => $"s{i}_{k}").ToList(), (a, b) => $"XMath.Max({a}, {b})")};");
                        for (int off = TC / 2; off >= 1; off /= 2)
                            w.Line($"tileMax = XMath.Max(tileMax, Warp.ShuffleXor(tileMax, {Int(off)}));");
                        w.Line($"float mNew = XMath.Max(m{i}, tileMax);");
                        w.Line("bool any = mNew != float.NegativeInfinity; // false only for rows that are not queries of this tile");
                        w.Line($"float alpha = any ? AttentionMath.ExpOrZero(m{i} - mNew) : 1f;");
                        foreach (int k in keys) w.Line($"s{i}_{k} = any ? AttentionMath.ExpOrZero(s{i}_{k} - mNew) : 0f;");
                        w.Line($"l{i} = l{i} * alpha + {Tree(keys.Select(k => $"s{i}_{k}").ToList(), (a, b) => $"({a} + {b})")};");
                        w.Line($"m{i} = mNew;");
                        w.Line(Join(cols, c => $"o{i}_{c} = o{i}_{c} * alpha;"));
                        w.Line(Join(keys, k => $"sP[{Plus("pAt", RG * PS * i + TC * k)}] = s{i}_{k};"));
                    }
                }
                w.Line("Group.Barrier();");
                w.Line();

                if (P.SharedKv)
                {
                    w.Line("// V tile into K's buffer, decoded from the chunks loaded with K.");
                    for (int i = 0; i * T < total; i++)
                    {
                        bool guard = T * (i + 1) > total;
                        using (guard ? w.Block($"if ({Plus("t", T * i)} < {Int(total)})") : w.Scope())
                        {
                            w.Line($"var v8 = default(TCodec).Decode8(vr{i});");
                            w.Line($"sV[j{i} * {Int(VS)} + u{i} * 2] = v8.Lo;");
                            w.Line($"sV[j{i} * {Int(VS)} + u{i} * 2 + 1] = v8.Hi;");
                        }
                    }
                    w.Line("Group.Barrier();");
                    w.Line();
                }

                w.Line(P.SharedKv ? "// The next tile's keys, in flight during P·V." : "// The next tile, in flight during P·V.");
                Issue($"firstKey + {Int(BC)}", keys: true, values: !P.SharedKv);
                w.Line();

                w.Line($"// O += P·V: per key, this thread's {CW} Float4 columns of V times each of its {RM} rows' probability (read 4 keys at a time).");
                w.Line($"Float4 {Join(rows, i => $"p{i}", ", ")}, {Join(cols, c => $"v{c}", ", ")};");
                for (int jq = 0; jq < BC / 4; jq++)
                {
                    w.Line(Join(rows, i => $"p{i} = sP4Rows[{Int(jq + i * RG * PS / 4)}];") + $" // keys {4 * jq}..{4 * jq + 3}");
                    for (int jj = 0; jj < 4; jj++)
                    {
                        int key = 4 * jq + jj;
                        w.Line(Join(cols, c => $"v{c} = sVColumns[{Int(key * VS + TC * c)}];"));
                        foreach (int i in rows) w.Line(Join(cols, c => $"o{i}_{c} = o{i}_{c}.Fma(v{c}, p{i}.{"XYZW"[jj]});"));
                    }
                    w.Line(StepBoundary.Float4s("sP4", P.PFloat4s, rows.SelectMany(i => cols.Select(c => $"o{i}_{c}"))));
                }
            }
            w.Line();

            w.Line($"// Normalize and write the rows that are real queries; each row's running sum is spread over its {TC} lanes.");
            foreach (int i in rows)
                for (int off = TC / 2; off >= 1; off /= 2)
                    w.Line($"l{i} += Warp.ShuffleXor(l{i}, {Int(off)});");
            foreach (int i in rows)
            {
                using (w.Block($"if (pos{i} < tilePositions)"))
                {
                    w.Line($"float inv = 1f / l{i};");
                    string head = HG == 1 ? "" : $" + {Mod(RowOf(i), HG)}";
                    w.Line($"long dst = ((long)(queryStart + i0 + pos{i}) * {Int(L.Heads)} + firstHead{head}) * {Int(L.HeadDim)} + kl * 4;");
                    foreach (int c in cols)
                    {
                        w.Line(string.Join(" ", "XYZW".Select((x, k) => $"output[{Plus("dst", 4 * TC * c + k)}] = o{i}_{c}.{x} * inv;")));
                    }
                }
            }
        }
    }

    /// <summary><paramref name="expr"/> + <paramref name="k"/>, or <paramref name="expr"/> when k is 0.</summary>
    /// <summary>A balanced reduction expression over <paramref name="terms"/> (short dependency chains).</summary>
    internal static string Tree(List<string> terms, System.Func<string, string, string> combine)
    {
        while (terms.Count > 1)
        {
            var next = new List<string>();
            for (int i = 0; i + 1 < terms.Count; i += 2) next.Add(combine(terms[i], terms[i + 1]));
            if (terms.Count % 2 == 1) next.Add(terms[terms.Count - 1]);
            terms = next;
        }
        return terms[0];
    }
}
