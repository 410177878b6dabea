using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;

namespace SpecializedInference.Runtime;

/// <summary>How a model is loaded and run.</summary>
/// <param name="WeightDtype">Dtype the weights are converted to on upload (f16 halves the bytes each decode step reads).</param>
/// <param name="KvDtype">Dtype of the paged KV cache.</param>
/// <param name="Device">Which device to create when the caller does not pass an accelerator.</param>
/// <param name="NumKvBlocks">KV blocks per layer; 0 sizes the cache for one sequence of <see cref="MaxSeqLen"/> tokens.</param>
/// <param name="KvBlockSize">Slots per KV block; null takes the matching kernel set's block size, else 16.</param>
/// <param name="MaxBatchTokens">Tokens per step the scratch buffers are first sized for (they grow when a step needs more).</param>
/// <param name="MaxSeqLen">Longest sequence (positions the rotary table covers); null: the config's
/// max_position_embeddings, capped at 8192.</param>
/// <param name="ForceGenericKernels">Use the generic attention kernels even when a generated set matches.</param>
/// <param name="Algorithm">Flash or materialized attention (the use_flash_attention toggle).</param>
/// <param name="HeadMapping">Grouped or expanded K/V heads (the use_gqa toggle).</param>
/// <param name="DenseSchedule">Schedule of the projection and norm kernels (Auto: serial on the CPU accelerator).</param>
/// <param name="MatvecDepth">Weight chunks per lane per step of the warp schedule's decode matvecs (null: <see cref="Kernels.Dense.MatvecDepth.Default"/>).</param>
/// <param name="GreedySampling">Where a greedy request's next token is picked (<see cref="IModelRunner.Run"/>): on the
/// device, which copies one key per slice of the logits row back instead of the row, or on the host from the row.
/// Auto: on the device, except on ILGPU's CPU accelerator, where the row is already in host memory.</param>
/// <param name="TensorCores">Run the f16 projections of 9 tokens or more (batched decode, prefill) on tensor cores,
/// the activations rounded to f16 (<see cref="Kernels.Dense.TensorCoreBodies"/>). Off by default until a GPU run has
/// measured it.</param>
/// <param name="RopeFrequencies">Precision of the rotary frequencies: float32 (Hugging Face at load), or bfloat16 to
/// reproduce a Hugging Face model cast in memory with <c>model.to(torch.bfloat16)</c>.</param>
public sealed record ModelOptions(
    WeightDtype WeightDtype = WeightDtype.F16,
    KvDtype KvDtype = KvDtype.F16,
    DeviceKind Device = DeviceKind.Auto,
    int NumKvBlocks = 0,
    int? KvBlockSize = null,
    int MaxBatchTokens = 512,
    int? MaxSeqLen = null,
    bool ForceGenericKernels = false,
    AttentionAlgorithm Algorithm = AttentionAlgorithm.Flash,
    HeadMapping HeadMapping = HeadMapping.Grouped,
    DenseSchedule DenseSchedule = DenseSchedule.Auto,
    RopeFrequencyPrecision RopeFrequencies = RopeFrequencyPrecision.Float32,
    MatvecDepth? MatvecDepth = null,
    GreedySampling GreedySampling = GreedySampling.Auto,
    bool TensorCores = false)
{
    public static ModelOptions Default { get; } = new();

    /// <summary>f32 weights and f32 KV cache: what the float64 reference comparisons use.</summary>
    public static ModelOptions Float32 { get; } = new(WeightDtype.F32, KvDtype.F32);

    /// <summary>Longest context when <see cref="MaxSeqLen"/> is not set and the config allows more.</summary>
    public const int DefaultMaxSeqLenCap = 8192;
}

/// <summary>Where the model runner picks a greedy request's token; see <see cref="ModelOptions.GreedySampling"/>.</summary>
public enum GreedySampling
{
    Auto,
    Device,
    Host,
}
