using ILGPU.Runtime;
using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Model;

namespace SpecializedInference.Runtime;

/// <summary>Picks the attention kernels for a checkpoint's shape (through <see cref="KernelSelector"/>).</summary>
public static class AttentionKernelSelection
{
    /// <summary>The kernel set generated for this shape (heads, K/V heads, head_dim), if any, whatever its block size.</summary>
    public static KernelSetInfo? FindGenerated(LlamaConfig config) =>
        KernelRegistry.All.FirstOrDefault(s =>
            s.Shape.NumAttentionHeads == config.NumAttentionHeads &&
            s.Shape.NumKeyValueHeads == config.NumKeyValueHeads &&
            s.Shape.HeadDim == config.HeadDim &&
            s.CreateAttentionKernels is not null);

    /// <summary>
    /// The generated kernels whose shape and block size match the checkpoint, else the generic kernels with a
    /// notice naming the config that would specialize them; the generic kernels when <paramref name="forceGeneric"/>.
    /// </summary>
    public static KernelSelection Select(Accelerator accelerator, LlamaConfig config, int blockSize, AttentionOptions options, bool forceGeneric)
    {
        var shape = new AttentionShape(config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, blockSize);
        if (forceGeneric)
            return new KernelSelection(new GenericAttentionKernels(accelerator, shape, options), null,
                "generic attention kernels (forced)");
        return KernelSelector.Select(shape, options, accelerator, KernelRegistry.All);
    }
}
