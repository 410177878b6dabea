namespace SpecializedInference.Benchmarks.EndToEnd;

/// <summary>The four engine toggles the ablation switches off one at a time.</summary>
public sealed record EngineToggles(bool UseFlashAttention = true, bool UseGqa = true, bool UseKvCache = true, bool UseBatching = true)
{
    public static EngineToggles AllOn { get; } = new();

    /// <summary>Every toggle off alone, named as in the configs.</summary>
    public static IReadOnlyList<(string Name, EngineToggles Toggles)> EachOff { get; } =
    [
        ("use_flash_attention", AllOn with { UseFlashAttention = false }),
        ("use_gqa", AllOn with { UseGqa = false }),
        ("use_kv_cache", AllOn with { UseKvCache = false }),
        ("use_batching", AllOn with { UseBatching = false }),
    ];
}

/// <summary>One end-to-end run: <see cref="Batch"/> requests through the engine, measured by its statistics.</summary>
/// <param name="WallSeconds">From submitting the requests to the last one finishing.</param>
/// <param name="LoadSeconds">Creating the model runner: weights, KV cache, kernels (not part of any other figure).</param>
/// <param name="DecodeWeightBytes">Weight bytes one decode step must read (every projection and the LM head):
/// over the copy bandwidth, the step's weight-read floor.</param>
/// <param name="WeightsSource">How the random weights were made (e.g. generated on the device).</param>
/// <param name="AttentionKernels">The attention kernel set the runner chose ("generic" or a generated set's name).</param>
public sealed record EndToEndResult(
    EndToEndModel Model,
    int Batch,
    int PromptTokens,
    int DecodeTokens,
    EngineToggles Toggles,
    double DecodeTokensPerSecond,
    double PrefillTokensPerSecond,
    double TimeToFirstTokenP50,
    double TimeToFirstTokenMax,
    double InterTokenP50,
    double WallSeconds,
    long GeneratedTokens,
    double LoadSeconds,
    long WeightBytes,
    long DecodeWeightBytes,
    string WeightsSource,
    string AttentionKernels)
{
    /// <summary>Where the host spent the mean decode step (null when the run had none).</summary>
    public StepBreakdown? DecodeSteps { get; init; }

    /// <summary>Where the device spent the mean decode step, stage by stage, when the run was timed so
    /// (<see cref="SpecializedInference.Runtime.StageTimeline"/>); else null.</summary>
    public IReadOnlyList<SpecializedInference.Runtime.StageTime>? Stages { get; init; }

    /// <summary>For a run with <see cref="EndToEndModel.CudaGraphs"/>: the steps captured and replayed, or why none were.</summary>
    public string? CudaGraphs { get; init; }

    public string Summary =>
        $"{Model.Label} batch {Batch}: decode {Format.Number(DecodeTokensPerSecond)} tok/s, prefill {Format.Number(PrefillTokensPerSecond)} tok/s, " +
        $"TTFT p50 {Format.Seconds(TimeToFirstTokenP50)}, wall {Format.Seconds(WallSeconds)}, load {Format.Seconds(LoadSeconds)}" +
        (DecodeSteps is { } d ? $"; {d.Summary}" : "") +
        (CudaGraphs is { } graphs ? $"; CUDA graphs: {graphs}" : "") +
        (Stages is { Count: > 0 } stages ? "; device: " + string.Join(", ", stages.Select(t => $"{t.Stage} {Format.Seconds(t.Seconds)}")) : "");

    /// <summary>Seconds of one decode step: the batch's tokens over the decode rate.</summary>
    public double DecodeStepSeconds => Batch / DecodeTokensPerSecond;

    /// <summary>The weight-read floor of a decode step at <paramref name="copyGBps"/> (read + write) bytes per second.</summary>
    public double FloorSeconds(double copyGBps) => DecodeWeightBytes / (copyGBps * 1e9);

    /// <summary>Floor ÷ measured step time: how close a decode step comes to only reading the weights once.</summary>
    public double FractionOfFloor(double copyGBps) => FloorSeconds(copyGBps) / DecodeStepSeconds;
}

/// <summary>One toggle off against every toggle on, same workload.</summary>
public sealed record AblationResult(string Toggle, EndToEndResult Baseline, EndToEndResult Off)
{
    /// <summary>Wall time off ÷ wall time on: the measured speedup of having the toggle on.</summary>
    public double Speedup => Off.WallSeconds / Baseline.WallSeconds;
}
