using ILGPU.Runtime;
using SpecializedInference.Kernels.Generic;

namespace SpecializedInference.Kernels;

/// <summary>The attention kernels chosen for a model, the generated set they came from (null for the generic
/// kernels), and, when no generated set matched, a one-line notice saying which config would specialize it.</summary>
public sealed record KernelSelection(IAttentionKernels Kernels, KernelSetInfo? Set, string? Notice)
{
    public bool IsSpecialized => Set is not null;
}

/// <summary>Picks the generated kernel set whose shape matches a model, else the generic kernels — never silently.</summary>
public static class KernelSelector
{
    /// <summary>The first set in <paramref name="registry"/> whose (head_dim, heads, kv heads, block size) match
    /// <paramref name="shape"/>, with the set's own factory; otherwise <see cref="GenericAttentionKernels"/> and
    /// a notice naming the config JSON that would specialize the shape.</summary>
    public static KernelSelection Select(AttentionShape shape, AttentionOptions options, Accelerator accelerator,
        IEnumerable<KernelSetInfo> registry)
    {
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(registry);
        var match = FindMatch(shape, registry);
        if (match?.CreateAttentionKernels is { } create) return new KernelSelection(create(accelerator, options), match, null);
        return new KernelSelection(new GenericAttentionKernels(accelerator, shape, options), null, NoticeFor(shape));
    }

    /// <summary><see cref="Select(AttentionShape, AttentionOptions, Accelerator, IEnumerable{KernelSetInfo})"/> for a
    /// model config's shape and the KV block size the engine runs with.</summary>
    public static KernelSelection Select(KernelShape shape, int blockSize, AttentionOptions options, Accelerator accelerator,
        IEnumerable<KernelSetInfo> registry)
        => Select(AttentionShape.From(shape, blockSize), options, accelerator, registry);

    /// <summary>The registered set that specializes <paramref name="shape"/>, or null.</summary>
    public static KernelSetInfo? FindMatch(AttentionShape shape, IEnumerable<KernelSetInfo> registry)
        => registry.FirstOrDefault(s => s.Shape.HeadDim == shape.HeadDim && s.Shape.NumAttentionHeads == shape.NumHeads
            && s.Shape.NumKeyValueHeads == shape.NumKvHeads && s.Engine.KvBlockSize == shape.BlockSize && s.CreateAttentionKernels is not null);

    /// <summary>The one-line notice for a shape no generated set covers.</summary>
    public static string NoticeFor(AttentionShape shape)
        => $"notice: no generated kernel set for num_attention_heads {shape.NumHeads}, num_key_value_heads {shape.NumKvHeads}, " +
           $"head_dim {shape.HeadDim}, kv_block_size {shape.BlockSize}; using the generic attention kernels. To specialize it, add " +
           $"configs/<name>.json with \"num_attention_heads\": {shape.NumHeads}, \"num_key_value_heads\": {shape.NumKvHeads}, " +
           $"\"head_dim\": {shape.HeadDim} and \"engine\": {{\"kv_block_size\": {shape.BlockSize}}}, then rebuild.";
}
