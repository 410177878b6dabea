namespace SpecializedInference.Kernels;

public enum KvDtype { F16, F32 }

public enum WeightDtype { F16, F32 }

/// <summary>The model shape a kernel set was generated for (the Hugging Face config fields).</summary>
public sealed record KernelShape(
    int HiddenSize,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    int NumHiddenLayers,
    int IntermediateSize,
    int VocabSize,
    double RmsNormEps,
    int MaxPositionEmbeddings,
    double RopeTheta,
    bool TieWordEmbeddings)
{
    public int GroupSize => NumAttentionHeads / NumKeyValueHeads;
}

/// <summary>Tile sizes a kernel set is specialized for.</summary>
public sealed record TileSizes(int PrefillTileQ, int PrefillTileKv, int DecodePartitionSize, int AttentionWarps);

/// <summary>Engine settings of a config: defaults that the runtime's options can override.</summary>
public sealed record EngineDefaults(
    int MaxBatchSize,
    int MaxSeqLen,
    int KvBlockSize,
    KvDtype KvDtype,
    WeightDtype WeightDtype,
    TileSizes Tiles,
    bool UseFlashAttention,
    bool UseGqa,
    bool UseKvCache,
    bool UseBatching);

/// <summary>
/// One generated kernel set, as listed by the generated <c>KernelRegistry</c>: what it was generated from,
/// and a factory for its specialized attention kernels.
/// </summary>
/// <param name="CreateAttentionKernels">Loads the set's specialized attention and KV-cache kernels on an
/// accelerator for the given options (KV dtype, flash or materialized, grouped or expanded heads). Null only
/// for hand-made infos (tests).</param>
public sealed record KernelSetInfo(
    string Name,
    string ConfigFile,
    KernelShape Shape,
    EngineDefaults Engine,
    Func<ILGPU.Runtime.Accelerator, AttentionOptions, IAttentionKernels>? CreateAttentionKernels = null);
