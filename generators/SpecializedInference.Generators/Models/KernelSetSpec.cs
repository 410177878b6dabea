namespace SpecializedInference.Generators.Models;

internal enum KvDtype { F16, F32 }

internal enum WeightDtype { F16, F32 }

/// <summary>The Hugging Face shape fields of one model.</summary>
internal sealed record ModelShape(
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

/// <summary>Tile sizes the kernels are specialized for. <paramref name="Warps"/> is attention_warps (the generic
/// kernels' groups); <paramref name="DecodeWarps"/> sizes the generated decode's groups (decode_warps, by default
/// attention_warps): with more threads than keys in a partition, several threads share each key's row.
/// <paramref name="LargeBatchDecode"/> (optional) is a second tensor-core decode for steps whose decode work fills the
/// GPU several times over, where fewer, longer partitions win.</summary>
internal sealed record TileSizes(
    int PrefillTileQ,
    int PrefillTileKv,
    int DecodePartitionSize,
    int Warps,
    int DecodeWarps,
    DecodeTiles? LargeBatchDecode = null);

/// <summary>Partition size and warps of a decode kernel (large_batch_decode_partition_size, large_batch_decode_warps).</summary>
internal sealed record DecodeTiles(int PartitionSize, int Warps);

/// <summary>Engine settings of a config; every one has a default so a bare Hugging Face config works.</summary>
internal sealed record EngineSettings(
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

/// <summary>One validated config: everything the emitter needs to write a kernel set.</summary>
internal sealed record KernelSetSpec(
    string Name,
    string ConfigFileName,
    string Namespace,
    ModelShape Model,
    EngineSettings Engine);

/// <summary>What parsing one config file produced: a spec, or the diagnostics that explain why not.</summary>
internal sealed record ConfigParseResult(
    KernelSetSpec? Spec,
    EquatableArray<DiagnosticInfo> Diagnostics,
    DiagnosticInfo? NameLocation);
