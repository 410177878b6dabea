using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>Where the two sides of a comparison come from: the generated kernel set of a config, or the generic kernels.</summary>
public static class KernelCatalog
{
    /// <summary>The generic kernels at the kernel set's own tiles where they fit the generic kernels' shared
    /// memory (else the generic defaults), so a comparison isolates specialization, not tiling.</summary>
    public static IAttentionKernels Generic(Accelerator accelerator, KernelSetInfo set, AttentionOptions options)
    {
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        var t = set.Engine.Tiles;
        try
        {
            return new GenericAttentionKernels(accelerator, shape, options,
                new AttentionTiles(t.PrefillTileQ, t.PrefillTileKv, t.DecodePartitionSize, t.AttentionWarps));
        }
        catch (ArgumentException)
        {
            return new GenericAttentionKernels(accelerator, shape, options);
        }
    }

    /// <summary>The kernels generated for <paramref name="set"/>.</summary>
    public static IAttentionKernels Specialized(Accelerator accelerator, KernelSetInfo set, AttentionOptions options)
        => set.CreateAttentionKernels is { } create
            ? create(accelerator, options)
            : throw new NotSupportedException($"kernel set '{set.Name}' has no generated attention kernels.");
}
