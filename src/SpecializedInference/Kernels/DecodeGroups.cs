using ILGPU;

namespace SpecializedInference.Kernels;

/// <summary>
/// A generated decode's per-group body as a struct type parameter (each set's <c>DecodeGroups&lt;TCodec&gt;</c> and
/// <c>DecodeMmaGroups</c>), so that another kernel can run a step's decode as one of its stages: a grid-synced layer
/// launch (<see cref="Dense.LayerTailBodies.Layer{TW, TKv, TDecode, TL, TF, TQ, TP, TC, TK}"/>) loops its groups over the
/// decode's. Every thread of the group calls <see cref="Run"/>, and all leave it together.
/// </summary>
public interface IDecodeGroups
{
    /// <summary>Decode group <paramref name="group"/> (work item × head group, as the decode kernel's own grid numbers them).</summary>
    void Run(int group, AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output);
}

/// <summary>What a kernel set hands its decode to (<see cref="AttentionKernelsBase.TryHandDecode{TVisitor}"/>): the
/// decode's body as a type, and what a launch of it reads and writes.</summary>
public interface IDecodeGroupsVisitor
{
    void Visit<TDecode>(DecodeGroupsLaunch launch) where TDecode : struct, IDecodeGroups;
}

/// <summary>A decode-only step's decode, to run inside another launch.</summary>
/// <param name="Meta">The step's plan (work items, blocks, partials, tickets).</param>
/// <param name="Queries">[tokens, heads, head_dim] f32</param>
/// <param name="KeyCache">[num_blocks, kv_heads, block_size, head_dim] the layer's keys</param>
/// <param name="ValueCache">[num_blocks, kv_heads, block_size, head_dim] the layer's values</param>
/// <param name="Output">[tokens, heads, head_dim] f32</param>
/// <param name="Groups">Decode groups: work items × head groups.</param>
/// <param name="Threads">Threads per decode group (the launch's group size).</param>
public readonly record struct DecodeGroupsLaunch(AttentionMeta Meta, ArrayView<float> Queries, ArrayView<Chunk16> KeyCache, ArrayView<Chunk16> ValueCache,
    ArrayView<float> Output, int Groups, int Threads);
