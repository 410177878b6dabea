using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>Emits the paged KV-cache append kernel of one kernel set, for an f32 and an f16 cache.</summary>
internal static class KvCacheWriteEmitter
{
    /// <summary>Elements one thread moves: 8 halves are one 16-byte store.</summary>
    public const int ChunkElements = 8;

    public static string Emit(KernelSetSpec spec)
    {
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU");
        int chunksPerHead = spec.Model.HeadDim / ChunkElements;
        using (w.Block($"public static partial class {spec.Name}"))
        {
            w.Line($"/// <summary>8-element chunks per head row: HeadDim / {ChunkElements}.</summary>");
            w.Line($"public const int KvChunksPerHead = {Int(chunksPerHead)};");
            w.Line();
            w.Line("/// <summary>Threads the KV-cache write launches per token: one per (kv_head, chunk).</summary>");
            w.Line("public const int KvWriteThreadsPerToken = NumKeyValueHeads * KvChunksPerHead;");
            foreach (var (suffix, cacheType, convert) in new[] { ("F32", "float", ""), ("F16", "global::ILGPU.Half", "(global::ILGPU.Half)") })
            {
                w.Line();
                w.Line($"/// <summary>Appends the step's new K/V rows into the paged {suffix.ToLowerInvariant()} cache, one thread per");
                w.Line("/// (token, kv_head, 8-element chunk). Tokens whose slot is negative are skipped.</summary>");
                w.Line("/// <param name=\"keys\">[num_tokens, NumKeyValueHeads, HeadDim] f32</param>");
                w.Line("/// <param name=\"values\">[num_tokens, NumKeyValueHeads, HeadDim] f32</param>");
                w.Line("/// <param name=\"slotMapping\">[num_tokens] block * KvBlockSize + offset</param>");
                w.Line($"/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim] {suffix.ToLowerInvariant()}</param>");
                w.Line($"/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim] {suffix.ToLowerInvariant()}</param>");
                using (w.Block($"public static void KvCacheWrite{suffix}(Index1D thread, ArrayView<float> keys, ArrayView<float> values, ArrayView<int> slotMapping, ArrayView<{cacheType}> keyCache, ArrayView<{cacheType}> valueCache)"))
                {
                    w.Line("int token = thread / KvWriteThreadsPerToken;");
                    w.Line("int head = thread / KvChunksPerHead % NumKeyValueHeads;");
                    w.Line("int chunk = thread % KvChunksPerHead;");
                    w.Line("int slot = slotMapping[token];");
                    w.Line("if (slot < 0) return;");
                    w.Line();
                    w.Line("// Source row [token, head, :] is contiguous, so the thread index is the chunk's offset.");
                    w.Line($"long src = (long)thread.X * {Int(ChunkElements)};");
                    w.Line("// Destination [block, head, offset, chunk * 8].");
                    w.Line("long dst = (((long)(slot / KvBlockSize) * NumKeyValueHeads + head) * KvBlockSize + slot % KvBlockSize) * HeadDim");
                    w.Line($"    + chunk * {Int(ChunkElements)};");
                    for (int i = 0; i < ChunkElements; i++)
                        w.Line($"keyCache[dst + {i}] = {convert}keys[src + {i}];");
                    for (int i = 0; i < ChunkElements; i++)
                        w.Line($"valueCache[dst + {i}] = {convert}values[src + {i}];");
                }
            }
        }
        return w.ToString();
    }
}
