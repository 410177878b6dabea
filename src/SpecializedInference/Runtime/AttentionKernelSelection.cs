using ILGPU.Runtime;
using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Model;

namespace SpecializedInference.Runtime;

/// <summary>The attention kernels chosen for a checkpoint, and why.</summary>
/// <param name="Kernels">The kernel set.</param>
/// <param name="Matched">The generated kernel set whose shape matches the checkpoint, if any.</param>
/// <param name="Notice">Why the generic kernels run, and how to specialize them; null when specialized.</param>
public sealed record AttentionSelection(IAttentionKernels Kernels, KernelSetInfo? Matched, string? Notice);

/// <summary>Picks the attention kernels for a checkpoint's shape.</summary>
public static class AttentionKernelSelection
{
    /// <summary>The generated kernel set generated for this shape (heads, K/V heads, head_dim), if any.</summary>
    public static KernelSetInfo? FindGenerated(LlamaConfig config) =>
        KernelRegistry.All.FirstOrDefault(s =>
            s.Shape.NumAttentionHeads == config.NumAttentionHeads &&
            s.Shape.NumKeyValueHeads == config.NumKeyValueHeads &&
            s.Shape.HeadDim == config.HeadDim);

    /// <summary>
    /// The generated kernels whose shape matches the checkpoint, else the generic kernels with a notice naming
    /// the config that would specialize them.
    /// </summary>
    public static AttentionSelection Select(Accelerator accelerator, LlamaConfig config, string configPath, int blockSize,
        AttentionOptions options, bool forceGeneric)
    {
        var shape = new AttentionShape(config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, blockSize);
        var matched = FindGenerated(config);
        if (!forceGeneric && KernelSelector.FindMatch(shape, KernelRegistry.All) is { CreateAttentionKernels: { } create } specialized)
            return new AttentionSelection(create(accelerator, options), specialized, null);
        string? notice;
        if (forceGeneric)
            notice = "generic attention kernels (forced)";
        else if (matched is null)
            notice = $"no generated kernel set matches this checkpoint (heads {config.NumAttentionHeads}, kv heads {config.NumKeyValueHeads}, " +
                $"head_dim {config.HeadDim}); running the generic kernels. To specialize: copy {configPath} to configs/<name>.json and rebuild.";
        else
            notice = $"kernel set '{matched.Name}' (configs/{matched.ConfigFile}) matches this shape, but its generated attention kernels " +
                "are not available in this build; running the generic kernels";
        return new AttentionSelection(new GenericAttentionKernels(accelerator, shape, options), matched, notice);
    }
}
