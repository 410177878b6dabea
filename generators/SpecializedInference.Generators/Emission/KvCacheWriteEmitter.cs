using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>Emits the paged KV-cache append kernel of one kernel set: one thread per (token, kv head, 8-element
/// unit), each unit one 16-byte store into an f16 cache (two into an f32 cache), the dtype a codec type parameter.</summary>
internal static class KvCacheWriteEmitter
{
    /// <summary>Elements one thread moves: 8 halves are one 16-byte store.</summary>
    public const int ChunkElements = 8;

    public static string HintName(KernelSetSpec spec)
        => $"{spec.Name}.KvCacheWrite.Hd{spec.Model.HeadDim}.Kv{spec.Model.NumKeyValueHeads}.Bs{spec.Engine.KvBlockSize}.g.cs";

    public static string Emit(KernelSetSpec spec)
    {
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "SpecializedInference.Kernels");
        int chunksPerHead = spec.Model.HeadDim / ChunkElements;
        using (w.Block($"public static partial class {spec.Name}"))
        {
            w.Line($"/// <summary>8-element units per head row: HeadDim / {ChunkElements}.</summary>");
            w.Line($"public const int KvChunksPerHead = {Int(chunksPerHead)};");
            w.Line();
            w.Line("/// <summary>Threads the KV-cache write launches per token: one per (kv_head, unit).</summary>");
            w.Line("public const int KvWriteThreadsPerToken = NumKeyValueHeads * KvChunksPerHead;");
            w.Line();
            w.Line("/// <summary>Appends the step's new K/V rows into the paged cache, one thread per (token, kv_head, 8-element unit).");
            w.Line("/// Tokens whose slot is negative are skipped.</summary>");
            w.Line("/// <param name=\"slotMapping\">[num_tokens] block * KvBlockSize + offset</param>");
            w.Line("/// <param name=\"keys\">[num_tokens, NumKeyValueHeads, HeadDim] f32</param>");
            w.Line("/// <param name=\"values\">[num_tokens, NumKeyValueHeads, HeadDim] f32</param>");
            w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim] in the codec's dtype</param>");
            w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim] in the codec's dtype</param>");
            w.Line("public static void KvCacheWrite<TCodec>(Index1D thread, ArrayView<int> slotMapping, ArrayView<float> keys, ArrayView<float> values, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache)");
            w.Line("    where TCodec : struct, IKvCodec");
            using (w.Scope())
            {
                w.Line("int token = thread / KvWriteThreadsPerToken;");
                w.Line("int head = thread / KvChunksPerHead % NumKeyValueHeads;");
                w.Line("int unit = thread % KvChunksPerHead;");
                w.Line("int slot = slotMapping[token];");
                w.Line("if (slot < 0) return;");
                w.Line();
                w.Line("// Source row [token, head, :] is contiguous, so the thread index is the unit's offset.");
                w.Line($"long src = (long)thread.X * {Int(ChunkElements)};");
                w.Line("// Destination [block, head, offset, unit * 8].");
                w.Line("long dst = (((long)(slot / KvBlockSize) * NumKeyValueHeads + head) * KvBlockSize + slot % KvBlockSize) * HeadDim");
                w.Line($"    + unit * {Int(ChunkElements)};");
                w.Line("default(TCodec).Store8(keyCache, dst, new Float8(");
                w.Line("    new Float4(keys[src], keys[src + 1], keys[src + 2], keys[src + 3]),");
                w.Line("    new Float4(keys[src + 4], keys[src + 5], keys[src + 6], keys[src + 7])));");
                w.Line("default(TCodec).Store8(valueCache, dst, new Float8(");
                w.Line("    new Float4(values[src], values[src + 1], values[src + 2], values[src + 3]),");
                w.Line("    new Float4(values[src + 4], values[src + 5], values[src + 6], values[src + 7])));");
            }
        }
        return w.ToString();
    }
}
