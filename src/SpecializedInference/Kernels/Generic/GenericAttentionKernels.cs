using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels.Generic;

using AttentionKernel = Action<KernelConfig, AttentionDims, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>, ArrayView<float>>;
using WriteKvKernel = Action<Index1D, AttentionDims, AttentionMeta, ArrayView<float>, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>>;

/// <summary>
/// The attention kernels for any shape: every size is a run-time argument (<see cref="AttentionDims"/>).
/// The baseline the generated kernels are measured against, and the fallback when no config specializes a shape.
/// </summary>
public sealed class GenericAttentionKernels : AttentionKernelsBase
{
    private readonly WriteKvKernel _writeKv;
    private readonly AttentionKernel _prefill;
    private readonly AttentionKernel _decode;
    private readonly int _prefillSharedFloat4s;
    private readonly int _decodeSharedFloat4s;

    /// <param name="tiles">Tiles to use; <see cref="DefaultTiles"/> when null (tests pass small ones).</param>
    public GenericAttentionKernels(Accelerator accelerator, AttentionShape shape, AttentionOptions? options = null, AttentionTiles? tiles = null)
        : base(accelerator, "generic", isSpecialized: false, shape, tiles ?? DefaultTiles(shape), options ?? new AttentionOptions(),
            ChooseHeadsPerGroup(shape, tiles ?? DefaultTiles(shape), options ?? new AttentionOptions()))
    {
        tiles = Tiles;
        options = Options;
        int rows = AttentionSharedMemory.PrefillRows(tiles.PrefillTileQ, HeadsPerGroup);
        int prefillBytes = AttentionSharedMemory.PrefillBytes(shape.HeadDim, tiles.PrefillTileKv, rows, accumulatorsInShared: true);
        int decodeBytes = AttentionSharedMemory.DecodeBytes(shape.HeadDim, HeadsPerGroup, tiles.Warps, tiles.DecodePartitionSize);
        if (prefillBytes > AttentionSharedMemory.MaxBytesPerGroup)
            throw new ArgumentException($"generic prefill with {rows} rows and K/V tiles of {tiles.PrefillTileKv} keys at head_dim {shape.HeadDim} " +
                $"needs {prefillBytes} bytes of shared memory, over the {AttentionSharedMemory.MaxBytesPerGroup} per group ILGPU allows.");
        if (decodeBytes > AttentionSharedMemory.MaxBytesPerGroup)
            throw new ArgumentException($"generic decode with {HeadsPerGroup} heads per group, partitions of {tiles.DecodePartitionSize} and " +
                $"{tiles.Warps} warps at head_dim {shape.HeadDim} needs {decodeBytes} bytes of shared memory, over the " +
                $"{AttentionSharedMemory.MaxBytesPerGroup} per group ILGPU allows.");
        _prefillSharedFloat4s = (prefillBytes + 15) / 16;
        _decodeSharedFloat4s = (decodeBytes + 15) / 16;

        (_writeKv, _prefill, _decode) = (options.KvDtype, options.HeadMapping) switch
        {
            (KvDtype.F16, HeadMapping.Grouped) => Load<F16Codec, GroupedHeads>(accelerator),
            (KvDtype.F16, HeadMapping.Expanded) => Load<F16Codec, ExpandedHeads>(accelerator),
            (KvDtype.F32, HeadMapping.Grouped) => Load<F32Codec, GroupedHeads>(accelerator),
            (KvDtype.F32, HeadMapping.Expanded) => Load<F32Codec, ExpandedHeads>(accelerator),
            _ => throw new ArgumentOutOfRangeException(nameof(options), options, "unknown KV dtype or head mapping"),
        };
    }

    /// <summary>Tiles the generic kernels use unless told otherwise: 16 query rows, the largest K/V tile that
    /// fits shared memory, partitions of 256 keys, 4 warps.</summary>
    public static AttentionTiles DefaultTiles(AttentionShape shape)
    {
        int heads = Math.Min(shape.GroupSize, GenericAttentionBodies.MaxHeadsPerGroup);
        int rows = AttentionSharedMemory.PrefillRows(16, heads);
        int tileKv = new[] { 32, 16, 8 }.FirstOrDefault(t =>
            AttentionSharedMemory.PrefillBytes(shape.HeadDim, t, rows, accumulatorsInShared: true) <= AttentionSharedMemory.MaxBytesPerGroup, 8);
        return new AttentionTiles(16, tileKv, 256, 4);
    }

    /// <summary>The largest divisor of the group size that the generic accumulators and shared memory hold
    /// (1 for the expanded mapping).</summary>
    private static int ChooseHeadsPerGroup(AttentionShape shape, AttentionTiles tiles, AttentionOptions options)
    {
        shape.Validate();
        if (options.HeadMapping == HeadMapping.Expanded) return 1;
        for (int h = Math.Min(shape.GroupSize, GenericAttentionBodies.MaxHeadsPerGroup); h > 1; h--)
        {
            if (shape.GroupSize % h != 0) continue;
            int rows = AttentionSharedMemory.PrefillRows(tiles.PrefillTileQ, h);
            if (AttentionSharedMemory.DecodeBytes(shape.HeadDim, h, tiles.Warps, tiles.DecodePartitionSize) <= AttentionSharedMemory.MaxBytesPerGroup
                && AttentionSharedMemory.PrefillBytes(shape.HeadDim, tiles.PrefillTileKv, rows, true) <= AttentionSharedMemory.MaxBytesPerGroup)
                return h;
        }
        return 1;
    }

    private static (WriteKvKernel, AttentionKernel, AttentionKernel) Load<TCodec, THeads>(Accelerator accelerator)
        where TCodec : struct, IKvCodec
        where THeads : struct, IHeadMapping
    {
        var writeKv = accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionDims, AttentionMeta, ArrayView<float>, ArrayView<float>,
            ArrayView<Chunk16>, ArrayView<Chunk16>>(GenericAttentionBodies.WriteKv<TCodec>);
        var prefill = accelerator.LoadStreamKernel<AttentionDims, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>,
            ArrayView<float>>(GenericAttentionBodies.Prefill<TCodec, THeads>);
        var decode = accelerator.LoadStreamKernel<AttentionDims, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>,
            ArrayView<float>>(GenericAttentionBodies.Decode<TCodec, THeads>);
        return (writeKv, prefill, decode);
    }

    protected override void LaunchWriteKv(AttentionPlan plan, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache)
        => _writeKv(plan.Batch.NumTokens * Shape.NumKvHeads * Dims.Units, Dims, plan.Meta, keys, values, keyCache, valueCache);

    protected override void LaunchPrefill(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache,
        ArrayView<Chunk16> valueCache, ArrayView<float> output)
        => _prefill(new KernelConfig(plan.NumPrefillItems * Dims.HeadGroups, GroupThreads, SharedMemoryConfig.RequestDynamic<Float4>(_prefillSharedFloat4s)),
            Dims, plan.Meta, queries, keyCache, valueCache, output);

    protected override void LaunchDecode(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache,
        ArrayView<Chunk16> valueCache, ArrayView<float> output)
        => _decode(new KernelConfig(plan.NumDecodeItems * Dims.HeadGroups, GroupThreads, SharedMemoryConfig.RequestDynamic<Float4>(_decodeSharedFloat4s)),
            Dims, plan.Meta, queries, keyCache, valueCache, output);
}
