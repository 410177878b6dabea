using System.Linq;
using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits the non-flash attention of one kernel set (<c>use_flash_attention: false</c>), the baseline that measures what
/// flash attention buys: every score to global memory, a softmax over each row, then P·V. The same algorithm as the
/// generic kernels', with the config's sizes as constants: the score's dot product written out over head_dim with
/// every K load issued before the first multiply, and P·V a block at a time with the block's keys written out (one
/// block-table read per block, its V loads in flight together). The softmax reads no size the config fixes: every set
/// runs the generic one.
/// </summary>
internal static class MaterializedEmitter
{
    public static string HintName(KernelSetSpec spec)
        => $"{spec.Name}.Materialized.Hd{spec.Model.HeadDim}.{AttentionLayout.HeadTag(spec.Model)}.Bs{spec.Engine.KvBlockSize}.g.cs";

    public static string Emit(KernelSetSpec spec)
    {
        var m = spec.Model;
        int bs = spec.Engine.KvBlockSize;
        int units = m.HeadDim / KvCacheWriteEmitter.ChunkElements;
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "SpecializedInference.Kernels");
        using (w.Block($"public static partial class {spec.Name}"))
        {
            w.Line("/// <summary>The query token, head, sequence and causal limit of score row <paramref name=\"row\"/> = token * NumAttentionHeads + head:");
            w.Line("/// a sequence's query tokens are the last of its context, so the query at token sees keys 0 .. queryPos.</summary>");
            w.Line("private static (int Head, int Seq, int QueryPos) MaterializedRow(AttentionMeta m, int row)");
            using (w.Scope())
            {
                w.Line($"int token = {Div("row", m.NumAttentionHeads)};");
                w.Line("int seq = m.TokenSeq[token];");
                w.Line("int queryStart = m.QueryStart[seq];");
                w.Line($"return ({Mod("row", m.NumAttentionHeads)}, seq, m.ContextLens[seq] - (m.QueryStart[seq + 1] - queryStart) + token - queryStart);");
            }
            w.Line();
            w.Line("/// <summary>Materialized attention, step 1: s[token, head, key] = q·k / sqrt(HeadDim) into the plan's score matrix,");
            w.Line("/// -inf past the query's position (causal). One thread per (token, head, key); the key's row is read through the block");
            w.Line($"/// table, its {units} 16-byte units all loaded before the dot product.</summary>");
            w.Line("/// <param name=\"queries\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
            w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
            w.Line("public static void MaterializedScores<TCodec>(Index1D thread, AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache)");
            w.Line("    where TCodec : struct, IKvCodec");
            using (w.Scope())
            {
                w.Line("var scores = m.Scores;   // [num_tokens, NumAttentionHeads, max_context]");
                w.Line("int key = thread % m.MaxContext;");
                w.Line("int row = thread / m.MaxContext;   // token * NumAttentionHeads + head");
                w.Line("var (head, seq, queryPos) = MaterializedRow(m, row);");
                w.Line("float s = float.NegativeInfinity;   // masked: the key comes after the query");
                using (w.Block("if (key <= queryPos)"))
                {
                    w.Line($"int block = m.BlockTables[seq * m.MaxBlocksPerSeq + {Div("key", bs)}];");
                    w.Line($"long k = (((long)block * NumKeyValueHeads + {Div("head", m.GroupSize)}) * KvBlockSize + {Mod("key", bs)}) * HeadDim;   // [block, kv_head, slot, :]");
                    w.Line("long q = (long)row * HeadDim;   // [token, head, :]");
                    w.Line("// The key row's units, all in flight before the first multiply.");
                    for (int u = 0; u < units; u++)
                        w.Line($"var k{u} = default(TCodec).Load8(keyCache, {Plus("k", 8 * u)});");
                    w.Line("// Scores: the dot product over head_dim, a unit (8 dims) at a time.");
                    w.Line("s = 0f;");
                    for (int u = 0; u < units; u++)
                    {
                        w.Line($"s = new Float4(queries[{Plus("q", 8 * u)}], queries[{Plus("q", 8 * u + 1)}], queries[{Plus("q", 8 * u + 2)}], queries[{Plus("q", 8 * u + 3)}]).DotAdd(k{u}.Lo, s);");
                        w.Line($"s = new Float4(queries[{Plus("q", 8 * u + 4)}], queries[{Plus("q", 8 * u + 5)}], queries[{Plus("q", 8 * u + 6)}], queries[{Plus("q", 8 * u + 7)}]).DotAdd(k{u}.Hi, s);");
                    }
                    w.Line($"s *= {Float(1.0 / System.Math.Sqrt(m.HeadDim))};   // 1 / sqrt(HeadDim)");
                }
                w.Line("scores[thread] = s;");
            }
            w.Line();
            w.Line("/// <summary>Materialized attention, step 3 (after the softmax): o = P·V. One thread per (token, head, 8-dim unit), a block of");
            w.Line($"/// {bs} keys at a time: one block-table read, then the block's V units loaded together and accumulated with their");
            w.Line("/// probabilities. Keys past the query's position have probability 0 and their V units are masked to 0, so whatever");
            w.Line("/// the rest of the last block holds adds nothing.</summary>");
            w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim]</param>");
            w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
            w.Line("public static void MaterializedValues<TCodec>(Index1D thread, AttentionMeta m, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
            w.Line("    where TCodec : struct, IKvCodec");
            using (w.Scope())
            {
                w.Line($"int unit = {Mod("thread.X", units)};");
                w.Line($"int row = {Div("thread.X", units)};   // token * NumAttentionHeads + head");
                w.Line("var (head, seq, queryPos) = MaterializedRow(m, row);");
                w.Line("var probabilities = m.Scores.SubView((long)row * m.MaxContext);   // [max_context] this row's, after the softmax");
                w.Line("var blockTable = m.BlockTables.SubView((long)seq * m.MaxBlocksPerSeq);   // [blocks] the sequence's physical blocks");
                w.Line($"long vUnit = {Div("head", m.GroupSize)} * (KvBlockSize * HeadDim) + unit * 8;   // [kv_head, slot 0, unit] within a block");
                w.Line("var lo = default(Float4);   // o[0..4) of the unit");
                w.Line("var hi = default(Float4);   // o[4..8)");
                w.Line("int keys = queryPos + 1;");
                using (w.Block($"for (int b = 0, first = 0; first < keys; b++, first += KvBlockSize)"))
                {
                    w.Line("long v = (long)blockTable[b] * (NumKeyValueHeads * KvBlockSize * HeadDim) + vUnit;   // [block b, kv_head, slot 0, unit]");
                    w.Line("// The block's V units, in flight together; a slot past the query's position reads as 0.");
                    w.Line("var v0 = default(TCodec).Load8(valueCache, v);   // key first < keys");
                    for (int j = 1; j < bs; j++)
                        w.Line($"var v{j} = default(TCodec).Decode8(default(TCodec).LoadRaw8(valueCache, {Plus("v", j * m.HeadDim)}).Masked({Plus("first", j)} < keys));");
                    w.Line("// Accumulate p·v over the block's keys; a probability past the row's end reads as 0.");
                    foreach (int j in Enumerable.Range(0, bs))
                    {
                        string index = Plus("first", j);
                        string p = j == 0 ? "probabilities[first]" : $"({index} < keys ? probabilities[{index}] : 0f)";
                        w.Line($"{(j == 0 ? "float " : "")}p = {p};");
                        w.Line($"lo = lo.Fma(v{j}.Lo, p);");
                        w.Line($"hi = hi.Fma(v{j}.Hi, p);");
                    }
                }
                w.Line("long dst = (long)row * HeadDim + unit * 8;   // [token, head, unit]");
                w.Line("output[dst] = lo.X; output[dst + 1] = lo.Y; output[dst + 2] = lo.Z; output[dst + 3] = lo.W;");
                w.Line("output[dst + 4] = hi.X; output[dst + 5] = hi.Y; output[dst + 6] = hi.Z; output[dst + 7] = hi.W;");
            }
        }
        return w.ToString();
    }
}
