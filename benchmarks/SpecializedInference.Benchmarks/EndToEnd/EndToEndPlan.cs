using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Runtime;

namespace SpecializedInference.Benchmarks.EndToEnd;

/// <summary>Where the random weights of an end-to-end model come from.</summary>
public enum WeightsSource
{
    /// <summary>Generated straight into device memory (<c>RandomDeviceWeights</c>): seconds for 16 GB.</summary>
    Device,

    /// <summary>A checkpoint folder written by <c>RandomCheckpoint</c> (the model branch's writer), then loaded like
    /// any Hugging Face checkpoint: the whole load path, for shapes small enough to write.</summary>
    Checkpoint,
}

/// <summary>A model shape to run end to end with random weights.</summary>
/// <param name="Set">The kernel set whose shape (and engine defaults) the model has.</param>
/// <param name="Layers">Fewer layers than the shape has (the CPU accelerator); null = all.</param>
/// <param name="MatvecDepth">The decode matvecs' load depth, when not the engine's default (the report's --matvec-depths).</param>
/// <param name="Greedy">Where the runner picks the greedy tokens (the report's --greedy-on-host runs them on the host).</param>
/// <param name="TensorCores">Tensor cores where the engine uses them by default (the f16 projections of 9 tokens or more,
/// <see cref="ModelOptions.TensorCores"/>, and the decode attention, <see cref="ModelOptions.DecodeCores"/>); false: both
/// on CUDA cores only (the report's --cuda-cores).</param>
/// <param name="WeightPrefetch">What of the next projection each decode matvec pulls into L2 (<see cref="ModelOptions.WeightPrefetch"/>;
/// the report's --prefetch-weights); null, the engine's default: none.</param>
/// <param name="FusedMatvecLaunch">The fused decode matvec's group size and register cap (<see cref="ModelOptions.FusedMatvecLaunch"/>;
/// the report's --fused-matvec-launch); null: the engine's default.</param>
/// <param name="DecodeLaunches">How a decode step launches its dense stages (<see cref="ModelOptions.DecodeLaunches"/>; the
/// report's --decode-launches).</param>
/// <param name="MatvecLoads">How the per-stage decode matvec brings its weights in (<see cref="ModelOptions.MatvecLoads"/>;
/// the report's --matvec-loads).</param>
/// <param name="CudaGraphs">Decode steps captured as CUDA graphs and replayed (<see cref="ModelOptions.CudaGraphs"/>; the
/// report's --cuda-graphs).</param>
public sealed record EndToEndModel(KernelSetInfo Set, int? Layers = null, MatvecDepth? MatvecDepth = null, GreedySampling Greedy = GreedySampling.Auto,
    bool TensorCores = true, WeightPrefetch? WeightPrefetch = null, FusedMatvecLaunch? FusedMatvecLaunch = null,
    DecodeLaunches DecodeLaunches = DecodeLaunches.PerStage, MatvecLoads MatvecLoads = MatvecLoads.Registers, bool CudaGraphs = false)
{
    /// <summary>Whether this is the model as the engine runs it by default (no A/B setting).</summary>
    public bool IsDefault => MatvecDepth is null && Greedy == GreedySampling.Auto && TensorCores && WeightPrefetch is null && FusedMatvecLaunch is null
        && DecodeLaunches == DecodeLaunches.PerStage && MatvecLoads == MatvecLoads.Registers && !CudaGraphs;

    public int NumLayers => Layers ?? Set.Shape.NumHiddenLayers;

    public string Label => (Layers is null ? Set.Name : $"{Set.Name} ({Layers} of {Set.Shape.NumHiddenLayers} layers)")
        + (MatvecDepth is { } depth ? $" [matvec depth {depth}]" : "")
        + (Greedy == GreedySampling.Auto ? "" : $" [greedy on {Greedy.ToString().ToLowerInvariant()}]")
        + (TensorCores ? "" : " [CUDA cores]")
        + (WeightPrefetch is { } prefetch ? $" [L2 prefetch {prefetch}]" : "")
        + (FusedMatvecLaunch is { } launch ? $" [fused matvec {launch.WarpsPerGroup} warps, {(launch.MaxRegisters == 0 ? "any" : launch.MaxRegisters)} registers]" : "")
        + (DecodeLaunches == DecodeLaunches.PerStage ? "" : $" [{DecodeLaunchNames.Name(DecodeLaunches)}]")
        + (MatvecLoads == MatvecLoads.Registers ? "" : $" [matvec loads {MatvecLoadNames.Name(MatvecLoads)}]")
        + (CudaGraphs ? " [CUDA graphs]" : "");
}

/// <summary>The ablation run: the same workload with one engine toggle off at a time.</summary>
public sealed record AblationPlan(EndToEndModel Model, int Batch, int PromptTokens, int DecodeTokens);

/// <summary>
/// End-to-end runs: each model at each batch size serves <c>batch</c> concurrent requests of
/// <see cref="PromptTokens"/> random prompt tokens and <see cref="DecodeTokens"/> generated tokens (greedy, no
/// stop token), through the engine (scheduler, paged KV cache, sampling).
/// </summary>
public sealed record EndToEndPlan(IReadOnlyList<EndToEndModel> Models, IReadOnlyList<int> Batches, int PromptTokens, int DecodeTokens, AblationPlan? Ablation,
    WeightsSource Weights = WeightsSource.Device)
{
    /// <summary>
    /// medium (the headline) then small at batch 1, 16, 64, 128 prompt + 128 new tokens. The ablation runs on
    /// small with 512-token prompts, long enough that attention (use_flash_attention, use_gqa) is a visible
    /// share of a step; use_kv_cache off then recomputes 16 × ~530 tokens every step and dominates its time.
    /// On an H200 (run 1) this plan measured about 2.5 minutes of the report's budget.
    /// </summary>
    public static EndToEndPlan GpuFull { get; } = new(
        [new EndToEndModel(Llama3_8B.Info), new EndToEndModel(TinyLlama_1_1B.Info)], [1, 16, 64], PromptTokens: 128, DecodeTokens: 128,
        new AblationPlan(new EndToEndModel(TinyLlama_1_1B.Info), Batch: 16, PromptTokens: 512, DecodeTokens: 32));

    public static EndToEndPlan GpuQuick { get; } = new(
        [new EndToEndModel(Llama3_8B.Info)], [1, 64], PromptTokens: 32, DecodeTokens: 16,
        new AblationPlan(new EndToEndModel(TinyLlama_1_1B.Info), Batch: 8, PromptTokens: 32, DecodeTokens: 8));

    public static EndToEndPlan CpuFull { get; } = new(
        [new EndToEndModel(gqa_tiny.Info)], [1, 4], PromptTokens: 8, DecodeTokens: 4,
        new AblationPlan(new EndToEndModel(gqa_tiny.Info), Batch: 2, PromptTokens: 8, DecodeTokens: 3), WeightsSource.Checkpoint);

    public static EndToEndPlan CpuQuick { get; } = new(
        [new EndToEndModel(gqa_tiny.Info, Layers: 1)], [2], PromptTokens: 4, DecodeTokens: 2,
        new AblationPlan(new EndToEndModel(gqa_tiny.Info, Layers: 1), Batch: 2, PromptTokens: 4, DecodeTokens: 2), WeightsSource.Checkpoint);
}
