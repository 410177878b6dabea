using System.Collections.Generic;
using System.Linq;
using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits flash prefill for one kernel set, grouped and expanded: the generic kernel's algorithm with head_dim,
/// heads, group size, block size and tiles as constants and every loop over head_dim, the group and the
/// tiles written out (ILGPU does not unroll). Output accumulators live in registers.
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
            EmitKernel(w, new AttentionLayout(spec, expanded: false));
            w.Line();
            EmitKernel(w, new AttentionLayout(spec, expanded: true));
        }
        return w.ToString();
    }

    private static void EmitKernel(SourceWriter w, AttentionLayout L)
    {
        int T = L.Threads, D4 = L.D4, R = L.Rows, Tkv = L.TileKv, HG = L.HeadsPerGroup;
        int kStride = D4 + 1;
        string mapping = L.Expanded ? "one query head per thread group (K/V read per head, as if repeated)" : $"{HG} query heads per thread group share each K/V tile";
        w.Line($"/// <summary>");
        w.Line($"/// Flash prefill, causal, variable-length batch: thread group = ({L.Positions} query positions of one sequence) x ({mapping}),");
        w.Line($"/// {T} threads, K/V tiles of {Tkv} keys read through the block table (earlier chunks come from the cache).");
        w.Line($"/// Per tile: scores for every (row, key), online softmax per row (running max, running sum, rescale), P·V.");
        w.Line($"/// </summary>");
        w.Line("/// <param name=\"queries\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
        w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line($"public static void Prefill{L.Suffix}<TCodec>(AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TCodec : struct, IKvCodec");
        using (w.Scope())
        {
            w.Line($"int item = Grid.IdxX / {Int(L.HeadGroups)};");
            w.Line($"int firstHead = Grid.IdxX % {Int(L.HeadGroups)} * {Int(HG)};");
            w.Line($"int kvHead = firstHead / {Int(L.GroupSize)};");
            w.Line("int seq = m.PrefillWork[2 * item];");
            w.Line("int i0 = m.PrefillWork[2 * item + 1];");
            w.Line("int queryStart = m.QueryStart[seq];");
            w.Line("int queryLen = m.QueryStart[seq + 1] - queryStart;");
            w.Line("int context = m.ContextLens[seq];");
            w.Line($"int tilePositions = queryLen - i0 < {Int(L.Positions)} ? queryLen - i0 : {Int(L.Positions)};");
            w.Line("int firstQueryPos = context - queryLen + i0; // absolute position of the tile's first query");
            w.Line("int numKeys = firstQueryPos + tilePositions;  // causal: keys up to the tile's last query");
            w.Line($"int tiles = (numKeys + {Int(Tkv - 1)}) / {Int(Tkv)};");
            w.Line("int blockRow = seq * m.MaxBlocksPerSeq;");
            w.Line("int t = Group.IdxX;");
            w.Line();
            w.Line($"var sQ = SharedMemory.Allocate<Float4>({Int(R * D4)});       // [rows, head_dim] queries pre-scaled by 1/sqrt(head_dim); row = position * {HG} + head");
            w.Line($"var sK = SharedMemory.Allocate<Float4>({Int(Tkv * kStride)});       // [tile_kv, head_dim + 4] keys, rows padded against bank conflicts");
            w.Line($"var sV = SharedMemory.Allocate<Float4>({Int(Tkv * D4)});       // [tile_kv, head_dim] values");
            w.Line($"var sS = SharedMemory.Allocate<float>({Int(R * Tkv)});        // [rows, tile_kv] scores, then probabilities");
            w.Line($"var sMax = SharedMemory.Allocate<float>({Int(R)});       // [rows] running max");
            w.Line($"var sSum = SharedMemory.Allocate<float>({Int(R)});       // [rows] running sum");
            w.Line($"var sAlpha = SharedMemory.Allocate<float>({Int(R)});     // [rows] this tile's rescale factor");
            w.Line();

            w.Line("// Q tile, scaled; rows past the sequence's queries are zero.");
            for (int i = 0; i * T < R * D4; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int f = t + {Int(T * i)};");
                    bool guard = T * (i + 1) > R * D4;
                    if (guard) w.Open($"if (f < {Int(R * D4)})");
                    w.Line($"int r = f / {Int(D4)};");
                    w.Line($"int pos = r / {Int(HG)};");
                    w.Line("var q = default(Float4);");
                    using (w.Block("if (pos < tilePositions)"))
                    {
                        w.Line($"long src = ((long)(queryStart + i0 + pos) * {Int(L.Heads)} + firstHead + r % {Int(HG)}) * {Int(L.HeadDim)} + f % {Int(D4)} * 4;");
                        w.Line($"q = new Float4(queries[src], queries[src + 1], queries[src + 2], queries[src + 3]) * {Float(L.Scale)};");
                    }
                    w.Line("sQ[f] = q;");
                    if (guard) w.Close();
                }
            }
            for (int i = 0; i * T < R; i++)
            {
                using (w.Scope())
                {
                    w.Line($"int r = t + {Int(T * i)};");
                    using (w.Block($"if (r < {Int(R)})"))
                    {
                        w.Line("sMax[r] = float.NegativeInfinity;");
                        w.Line("sSum[r] = 0f;");
                    }
                }
            }
            w.Line();

            // Output ownership: thread owns Float4s f = t + T*i of the [rows, head_dim] tile.
            int no = AttentionLayout.CeilDiv(R * D4, T);
            bool fixedCol = T % D4 == 0;
            w.Line($"// Output accumulators in registers: this thread owns Float4s t + {T} * i of the [rows, head_dim] tile.");
            if (fixedCol) w.Line($"int oCol = t % {Int(D4)};");
            var okFlags = new bool[no];
            for (int i = 0; i < no; i++)
            {
                string rowExpr = fixedCol ? $"t / {Int(D4)} + {Int(T / D4 * i)}" : $"(t + {Int(T * i)}) / {Int(D4)}";
                bool mayBeInvalid = fixedCol ? T / D4 * i + T / D4 - 1 >= R : T * (i + 1) > R * D4;
                okFlags[i] = mayBeInvalid;
                if (mayBeInvalid)
                {
                    w.Line($"bool oOk{i} = {rowExpr} < {Int(R)};");
                    w.Line($"int oRow{i} = oOk{i} ? {rowExpr} : {Int(R - 1)};");
                }
                else
                {
                    w.Line($"int oRow{i} = {rowExpr};");
                }
                if (!fixedCol) w.Line($"int oCol{i} = (t + {Int(T * i)}) % {Int(D4)};");
                w.Line($"var o{i} = default(Float4);");
            }
            w.Line();

            using (w.Block("for (int tile = 0; tile < tiles; tile++)"))
            {
                w.Line($"int k0 = tile * {Int(Tkv)};");
                w.Line("Group.Barrier(); // the previous tile's readers are done");
                w.Line();
                w.Line("// K/V tile, one 8-element unit per thread and step; keys past the last one are zero.");
                for (int i = 0; i * T < Tkv * L.Units; i++)
                {
                    using (w.Scope())
                    {
                        w.Line($"int e = t + {Int(T * i)};");
                        bool guard = T * (i + 1) > Tkv * L.Units;
                        if (guard) w.Open($"if (e < {Int(Tkv * L.Units)})");
                        w.Line($"int j = e / {Int(L.Units)};");
                        w.Line($"int unit = e % {Int(L.Units)};");
                        w.Line("int key = k0 + j;");
                        w.Line("var k8 = default(Float8);");
                        w.Line("var v8 = default(Float8);");
                        using (w.Block("if (key < numKeys)"))
                        {
                            w.Line($"long row = (((long)m.BlockTables[blockRow + key / {Int(L.BlockSize)}] * {Int(L.KvHeads)} + kvHead) * {Int(L.BlockSize)} + key % {Int(L.BlockSize)}) * {Int(L.HeadDim)} + unit * 8;");
                            w.Line("k8 = default(TCodec).Load8(keyCache, row);");
                            w.Line("v8 = default(TCodec).Load8(valueCache, row);");
                        }
                        w.Line($"sK[j * {Int(kStride)} + 2 * unit] = k8.Lo;");
                        w.Line($"sK[j * {Int(kStride)} + 2 * unit + 1] = k8.Hi;");
                        w.Line($"sV[j * {Int(D4)} + 2 * unit] = v8.Lo;");
                        w.Line($"sV[j * {Int(D4)} + 2 * unit + 1] = v8.Hi;");
                        if (guard) w.Close();
                    }
                }
                w.Line("Group.Barrier();");
                w.Line();

                // Scores: key j = t % Tkv, rows t / Tkv + (T / Tkv) * i.
                int rs = T / Tkv;
                int ns = AttentionLayout.CeilDiv(R, rs);
                w.Line($"// Scores s = q·k: this thread's key is t % {Tkv}, its rows t / {Tkv} + {rs} * i; masked pairs are -inf.");
                using (w.Scope())
                {
                    w.Line($"int j = t % {Int(Tkv)};");
                    w.Line("int key = k0 + j;");
                    w.Line($"int sRow = t / {Int(Tkv)};");
                    w.Line($"int kBase = j * {Int(kStride)};");
                    for (int i = 0; i < ns; i++)
                    {
                        bool mayBeInvalid = rs * i + rs - 1 >= R;
                        w.Line(mayBeInvalid
                            ? $"int q{i} = (sRow + {Int(rs * i)} < {Int(R)} ? sRow + {Int(rs * i)} : {Int(R - 1)}) * {Int(D4)};"
                            : $"int q{i} = (sRow + {Int(rs * i)}) * {Int(D4)};");
                        w.Line($"float s{i} = 0f;");
                    }
                    for (int c = 0; c < D4; c++)
                    {
                        w.Line($"var kq{c} = sK[kBase + {Int(c)}];");
                        for (int i = 0; i < ns; i++) w.Line($"s{i} += sQ[q{i} + {Int(c)}].Dot(kq{c});");
                    }
                    for (int i = 0; i < ns; i++)
                    {
                        using (w.Scope())
                        {
                            w.Line($"int r = sRow + {Int(rs * i)};");
                            bool mayBeInvalid = rs * i + rs - 1 >= R;
                            if (mayBeInvalid) w.Open($"if (r < {Int(R)})");
                            w.Line($"int pos = r / {Int(HG)};");
                            w.Line($"sS[r * {Int(Tkv)} + j] = pos < tilePositions && key <= firstQueryPos + pos ? s{i} : float.NegativeInfinity;");
                            if (mayBeInvalid) w.Close();
                        }
                    }
                }
                w.Line("Group.Barrier();");
                w.Line();

                w.Line("// Online softmax, one thread per row: new max, rescale factor, probabilities, running sum.");
                for (int i = 0; i * T < R; i++)
                {
                    using (w.Scope())
                    {
                        w.Line($"int r = t + {Int(T * i)};");
                        using (w.Block($"if (r < {Int(R)})"))
                        {
                            w.Line($"int b = r * {Int(Tkv)};");
                            for (int j = 0; j < Tkv; j++) w.Line($"float x{j} = sS[b + {Int(j)}];");
                            w.Line("float mOld = sMax[r];");
                            w.Line($"float mNew = XMath.Max(mOld, {Tree(Enumerable.Range(0, Tkv).Select(j => $"x{j}").ToList(), (a, b) => $"XMath.Max({a}, {b})")});");
                            w.Line("bool any = mNew != float.NegativeInfinity;");
                            w.Line("float alpha = any ? AttentionMath.ExpOrZero(mOld - mNew) : 1f;");
                            for (int j = 0; j < Tkv; j++)
                            {
                                w.Line($"float p{j} = any ? AttentionMath.ExpOrZero(x{j} - mNew) : 0f;");
                                w.Line($"sS[b + {Int(j)}] = p{j};");
                            }
                            w.Line($"float sum = {Tree(Enumerable.Range(0, Tkv).Select(j => $"p{j}").ToList(), (a, b) => $"({a} + {b})")};");
                            w.Line("sMax[r] = mNew;");
                            w.Line("sSum[r] = sSum[r] * alpha + sum;");
                            w.Line("sAlpha[r] = alpha;");
                        }
                    }
                }
                w.Line("Group.Barrier();");
                w.Line();

                w.Line("// Accumulate o = o * alpha + P·V.");
                for (int i = 0; i < no; i++)
                {
                    w.Line($"o{i} = o{i} * sAlpha[oRow{i}];");
                    w.Line($"int pRow{i} = oRow{i} * {Int(Tkv)};");
                }
                for (int j = 0; j < Tkv; j++)
                {
                    if (fixedCol)
                    {
                        w.Line($"var vt{j} = sV[{Int(j * D4)} + oCol];");
                        for (int i = 0; i < no; i++) w.Line($"o{i} = o{i}.Fma(vt{j}, sS[pRow{i} + {Int(j)}]);");
                    }
                    else
                    {
                        for (int i = 0; i < no; i++) w.Line($"o{i} = o{i}.Fma(sV[{Int(j * D4)} + oCol{i}], sS[pRow{i} + {Int(j)}]);");
                    }
                }
            }
            w.Line();
            w.Line("// Normalize and write the rows that are real queries.");
            for (int i = 0; i < no; i++)
            {
                using (w.Scope())
                {
                    if (okFlags[i]) w.Open($"if (oOk{i})");
                    w.Line($"int pos = oRow{i} / {Int(HG)};");
                    using (w.Block("if (pos < tilePositions)"))
                    {
                        w.Line($"var o = o{i} * (1f / sSum[oRow{i}]);");
                        string col = fixedCol ? "oCol" : $"oCol{i}";
                        w.Line($"long dst = ((long)(queryStart + i0 + pos) * {Int(L.Heads)} + firstHead + oRow{i} % {Int(HG)}) * {Int(L.HeadDim)} + {col} * 4;");
                        w.Line("output[dst] = o.X;");
                        w.Line("output[dst + 1] = o.Y;");
                        w.Line("output[dst + 2] = o.Z;");
                        w.Line("output[dst + 3] = o.W;");
                    }
                    if (okFlags[i]) w.Close();
                }
            }
        }
    }

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
