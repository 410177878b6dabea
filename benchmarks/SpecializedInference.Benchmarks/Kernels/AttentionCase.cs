using SpecializedInference.Kernels;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>The kernel a case times.</summary>
public enum AttentionOp
{
    /// <summary>Paged KV-cache append of a prefill chunk of <c>Context</c> tokens per sequence.</summary>
    KvWrite,

    /// <summary>One query token per sequence over <c>Context</c> cached keys (split-K flash decode).</summary>
    Decode,

    /// <summary>Causal attention of <c>Context</c> new tokens per sequence over themselves (flash prefill).</summary>
    Prefill,
}

/// <summary>
/// One kernel benchmark: a generated kernel set's shape, the operation, the batch and context, and the attention
/// variant. The figures (bytes, FLOPs) are what the operation must minimally move or compute, so GB/s and
/// TFLOP/s say how close a kernel comes to the hardware, whatever it does internally.
/// </summary>
public sealed record AttentionCase(
    KernelSetInfo Set,
    AttentionOp Op,
    int Batch,
    int Context,
    AttentionAlgorithm Algorithm = AttentionAlgorithm.Flash,
    HeadMapping HeadMapping = HeadMapping.Grouped,
    DecodeCores DecodeCores = DecodeCores.Cuda)
{
    public KernelShape Shape => Set.Shape;

    public KvDtype KvDtype => Set.Engine.KvDtype;

    public int BlockSize => Set.Engine.KvBlockSize;

    public int BytesPerElement => KvDtype == KvDtype.F16 ? 2 : 4;

    public AttentionOptions Options => new(KvDtype, Algorithm, HeadMapping, DecodeCores: DecodeCores);

    /// <summary>Query tokens of the step: one per sequence for a decode, the whole chunk otherwise.</summary>
    public int NumTokens => Op == AttentionOp.Decode ? Batch : Batch * Context;

    public int BlocksPerSequence => (Context + BlockSize - 1) / BlockSize;

    /// <summary>K and V of every sequence's context, read once: what attention must read from the cache.</summary>
    public long KvBytesRead => 2L * Batch * Context * Shape.NumKeyValueHeads * Shape.HeadDim * BytesPerElement;

    /// <summary>The KV write's traffic: f32 K/V rows read, cache rows written.</summary>
    public long KvWriteBytes => 2L * NumTokens * Shape.NumKeyValueHeads * Shape.HeadDim * (4 + BytesPerElement);

    /// <summary>Bytes the GB/s column counts.</summary>
    public long Bytes => Op == AttentionOp.KvWrite ? KvWriteBytes : KvBytesRead;

    /// <summary>Multiply-adds ×2 of QKᵀ and P·V: causal prefill counts each query's keys 1..L (L(L+1)/2 pairs).</summary>
    public double Flops => Op switch
    {
        AttentionOp.Decode => 4.0 * Batch * Shape.NumAttentionHeads * Shape.HeadDim * Context,
        AttentionOp.Prefill => 4.0 * Batch * Shape.NumAttentionHeads * Shape.HeadDim * (Context * (Context + 1.0) / 2),
        _ => 0,
    };

    /// <summary>Prefill is compute-bound (TFLOP/s is its figure of merit); decode and KV write are bandwidth-bound.</summary>
    public bool ComputeBound => Op == AttentionOp.Prefill;

    public string VariantName => (Algorithm, HeadMapping) switch
    {
        (AttentionAlgorithm.Flash, HeadMapping.Grouped) when DecodeCores == DecodeCores.Tensor && Op == AttentionOp.Decode => "flash, tensor cores",
        (AttentionAlgorithm.Flash, HeadMapping.Grouped) => "flash",
        (AttentionAlgorithm.Materialized, HeadMapping.Grouped) => "materialized",
        (AttentionAlgorithm.Flash, HeadMapping.Expanded) => "MHA-expanded",
        _ => "materialized, MHA-expanded",
    };

    public string OpName => Op switch
    {
        AttentionOp.KvWrite => "paged KV write",
        AttentionOp.Decode => "decode",
        _ => "causal prefill",
    };

    public string ShapeName =>
        $"{Set.Name} {Shape.NumAttentionHeads}/{Shape.NumKeyValueHeads}h d{Shape.HeadDim} {KvDtype.ToString().ToLowerInvariant()}";

    public override string ToString() => $"{OpName} {VariantName} {ShapeName} B={Batch} L={Format.Tokens(Context)}";
}
