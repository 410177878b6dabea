using System.Diagnostics;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Engine;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Model.Safetensors;
using SpecializedInference.Runtime;

namespace SpecializedInference.Benchmarks.EndToEnd;

/// <summary>
/// Runs random-weight models end to end: <c>batch</c> requests submitted at once to an
/// <see cref="InferenceEngine"/> over a <see cref="LlamaModelRunner"/>, every one generating exactly its
/// token count (greedy, end-of-sequence ignored). The figures are the engine's own measured statistics.
/// One runner per (model, attention variant) is kept while its runs last: its KV cache is sized for the
/// largest run, and its kernels are compiled by a warm-up that no figure includes.
/// </summary>
public sealed class EndToEndBench(BenchDevice device, int seed, WeightsSource weights = WeightsSource.Device) : IDisposable
{
    private readonly List<string> _checkpointDirectories = new();

    private (EndToEndModel Model, AttentionAlgorithm Algorithm, HeadMapping Mapping, LlamaModelRunner Runner)? _current;

    /// <summary>Sequences × tokens the next runner's KV cache must hold (the largest run planned on it).</summary>
    public (int Batch, int Tokens) Capacity { get; set; } = (64, 128);

    /// <param name="timeStages">Time the decode steps' stages on the device (<see cref="LlamaModelRunner.StartStageTimeline"/>):
    /// a run of its own, since the markers cost host time and may add a little between kernels.</param>
    public EndToEndResult Run(EndToEndModel model, int batch, int promptTokens, int decodeTokens, EngineToggles toggles, bool timeStages = false)
    {
        var algorithm = toggles.UseFlashAttention ? AttentionAlgorithm.Flash : AttentionAlgorithm.Materialized;
        var mapping = toggles.UseGqa ? HeadMapping.Grouped : HeadMapping.Expanded;
        double load = double.NaN;
        var runner = _current is { } c && c.Model == model && c.Algorithm == algorithm && c.Mapping == mapping
            ? c.Runner
            : Load(model, algorithm, mapping, promptTokens, out load);

        var options = new EngineOptions
        {
            MaxBatchSize = batch,
            // Room for every sequence's whole history in one step: the budget never throttles a configuration
            // (use_kv_cache off resubmits every sequence from position 0 each step).
            MaxNumBatchedTokens = Math.Max(512, batch * (promptTokens + decodeTokens)),
            KvBlocks = runner.NumBlocks,
            MaxSeqLen = promptTokens + decodeTokens,
            UseKvCache = toggles.UseKvCache,
            UseBatching = toggles.UseBatching,
        };
        var rng = new Random(seed + batch);
        var requests = Enumerable.Range(0, batch)
            .Select(i => new GenerationRequest(RandomPrompt(rng, promptTokens, model.Set.Shape.VocabSize), decodeTokens)
            {
                IgnoreEos = true,
                Name = $"bench-{i}",
            })
            .ToList();

        var bound = new BoundRunner(runner);
        using var engine = new InferenceEngine(bound, options, ownsRunner: false);
        var timeline = timeStages ? runner.StartStageTimeline() : null;
        long start = Stopwatch.GetTimestamp();
        Completion[] completions;
        try
        {
            completions = Task.WhenAll(requests.Select(r => engine.GenerateAsync(r))).GetAwaiter().GetResult();
        }
        finally
        {
            if (timeStages) runner.StopStageTimeline();
        }
        double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var stats = engine.Snapshot();

        foreach (var completion in completions)
            if (completion.FinishReason != FinishReason.Length || completion.Tokens.Count != decodeTokens)
                throw new InvalidOperationException($"{model.Label} batch {batch}: request {completion.RequestId} ended {completion.FinishReason} " +
                    $"after {completion.Tokens.Count} of {decodeTokens} tokens{(completion.Error is { } e ? ": " + e : "")}");

        return new EndToEndResult(model, batch, promptTokens, decodeTokens, toggles,
            stats.DecodeTokensPerSecond, stats.PrefillTokensPerSecond,
            stats.TimeToFirstToken.P50Ms / 1e3, stats.TimeToFirstToken.MaxMs / 1e3, stats.InterTokenLatency.P50Ms / 1e3,
            wall, stats.GeneratedTokens, load, runner.WeightBytes, runner.DecodeWeightBytes, Describe(model), runner.KernelSetName)
        {
            DecodeSteps = bound.DecodeSteps(),
            Stages = timeline?.MeanStep(runner.StageWeightBytes),
            CudaGraphs = !model.CudaGraphs ? null
                : runner.CudaGraphsNotice ?? $"{runner.CudaGraphSteps.Captured} decode steps captured, {runner.CudaGraphSteps.Replayed} replayed since load",
        };
    }

    /// <summary>The plan's workload with every toggle on, then with each toggle off alone. The toggles that keep
    /// the all-on runner (use_kv_cache, use_batching) run first, so each runner is loaded once.</summary>
    /// <param name="starts">Asked before each toggle's run; false skips it (the report's time budget).</param>
    public IReadOnlyList<AblationResult> Ablate(AblationPlan plan, Action<string> log, Func<string, bool>? starts = null)
    {
        ReleaseRunner();
        Capacity = (plan.Batch, plan.PromptTokens + plan.DecodeTokens);
        // Every row divides by this run, so it must not be the runner's first: one unmeasured pass of the same workload first.
        var unmeasured = Run(plan.Model, plan.Batch, plan.PromptTokens, plan.DecodeTokens, EngineToggles.AllOn);
        var baseline = Run(plan.Model, plan.Batch, plan.PromptTokens, plan.DecodeTokens, EngineToggles.AllOn) with { LoadSeconds = unmeasured.LoadSeconds };
        log($"  all on: {baseline.Summary}");
        var off = new Dictionary<string, EndToEndResult>();
        foreach (var (name, toggles) in EngineToggles.EachOff.OrderBy(t => t.Toggles.UseFlashAttention && t.Toggles.UseGqa ? 0 : 1))
        {
            if (starts is not null && !starts(name)) continue;
            off[name] = Run(plan.Model, plan.Batch, plan.PromptTokens, plan.DecodeTokens, toggles);
            log($"  {name} off: {off[name].Summary}");
        }
        ReleaseRunner();
        return EngineToggles.EachOff.Where(t => off.ContainsKey(t.Name)).Select(t => new AblationResult(t.Name, baseline, off[t.Name])).ToList();
    }

    private string Describe(EndToEndModel model) => weights switch
    {
        WeightsSource.Device => $"random, generated on the device (RandomDeviceWeights), {Dtype(model)}",
        _ => $"random checkpoint written by RandomCheckpoint (f16 safetensors) and loaded, {Dtype(model)} on the device",
    };

    private static string Dtype(EndToEndModel model) => model.Set.Engine.WeightDtype.ToString().ToLowerInvariant();

    private LlamaModelRunner Load(EndToEndModel model, AttentionAlgorithm algorithm, HeadMapping mapping, int promptTokens, out double seconds)
    {
        ReleaseRunner();
        long start = Stopwatch.GetTimestamp();
        var set = model.Set;
        var config = ConfigOf(model);
        int blockSize = set.Engine.KvBlockSize;
        var (batch, tokens) = Capacity;
        var options = new ModelOptions(
            WeightDtype: set.Engine.WeightDtype,
            KvDtype: set.Engine.KvDtype,
            NumKvBlocks: batch * ((tokens + blockSize - 1) / blockSize) + batch,
            KvBlockSize: blockSize,
            MaxBatchTokens: Math.Max(512, batch * tokens),
            MaxSeqLen: tokens,
            Algorithm: algorithm,
            HeadMapping: mapping,
            MatvecDepth: model.MatvecDepth,
            GreedySampling: model.Greedy,
            WeightPrefetch: model.WeightPrefetch,
            FusedMatvecLaunch: model.FusedMatvecLaunch,
            DecodeLaunches: model.DecodeLaunches,
            MatvecLoads: model.MatvecLoads,
            CudaGraphs: model.CudaGraphs);
        if (!model.TensorCores) options = options.OnCudaCoresOnly();
        var runner = weights == WeightsSource.Device
            ? new LlamaModelRunner(device.Accelerator, new RandomDeviceWeights(config, (uint)seed), options)
            : LoadCheckpoint(model, config, options);
        try
        {
            WarmUp(runner, model, promptTokens);
        }
        catch
        {
            runner.Dispose();
            throw;
        }
        seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        _current = (model, algorithm, mapping, runner);
        return runner;
    }

    /// <summary>Writes the random checkpoint of <paramref name="model"/> once (a temporary folder, removed on
    /// dispose) and loads it; the memory-mapped file is closed once the weights are on the device.</summary>
    private LlamaModelRunner LoadCheckpoint(EndToEndModel model, LlamaConfig config, ModelOptions options)
    {
        string directory = Path.Combine(Path.GetTempPath(), $"si-bench-{model.Set.Name}-{model.NumLayers}l-{seed}-{Environment.ProcessId}");
        if (!_checkpointDirectories.Contains(directory))
        {
            RandomCheckpoint.Write(directory, config, SafetensorsDtype.F16, (ulong)seed);
            _checkpointDirectories.Add(directory);
        }
        using var checkpoint = LlamaCheckpoint.Open(directory);
        return new LlamaModelRunner(device.Accelerator, checkpoint, options);
    }

    /// <summary>Compiles every kernel the measured runs launch: a prefill of the runs' prompt length, then decode steps
    /// at each of the dense kernels' regimes up to the capacity (1 token: fused matvec; 8: fused, two token groups;
    /// 16: batched projection, 16-token variant; the capacity: tiled matmul for its prefill), so no run pays a compile.</summary>
    private void WarmUp(LlamaModelRunner runner, EndToEndModel model, int promptTokens)
    {
        var batches = new[] { 1, DenseKernels.FusedMaxTokens, 16, Capacity.Batch }.Where(b => b <= Capacity.Batch).Distinct();
        var rng = new Random(seed - 1);
        foreach (int batch in batches)
        {
            var options = new EngineOptions
            {
                MaxBatchSize = batch,
                MaxNumBatchedTokens = Math.Max(512, batch * (promptTokens + 2)),
                KvBlocks = runner.NumBlocks,
                MaxSeqLen = promptTokens + 2,
            };
            using var engine = new InferenceEngine(new BoundRunner(runner), options, ownsRunner: false);
            var done = Task.WhenAll(Enumerable.Range(0, batch)
                .Select(_ => engine.GenerateAsync(new GenerationRequest(RandomPrompt(rng, promptTokens, model.Set.Shape.VocabSize), 2) { IgnoreEos = true })))
                .GetAwaiter().GetResult();
            if (done.FirstOrDefault(c => c.FinishReason != FinishReason.Length) is { } failed)
                throw new InvalidOperationException($"{model.Label}: warm-up request ended {failed.FinishReason}: {failed.Error}");
        }
    }

    /// <summary>The kernel set's shape as a Llama config (with fewer layers when the model asks).</summary>
    public static LlamaConfig ConfigOf(EndToEndModel model)
    {
        var s = model.Set.Shape;
        return new LlamaConfig(s.HiddenSize, s.NumAttentionHeads, s.NumKeyValueHeads, s.HeadDim, model.NumLayers, s.IntermediateSize,
            s.VocabSize, s.RmsNormEps, s.MaxPositionEmbeddings, s.RopeTheta, RopeScaling.Default.Instance, s.TieWordEmbeddings,
            BosTokenId: null, EosTokenIds: Array.Empty<int>());
    }

    private static int[] RandomPrompt(Random rng, int length, int vocab) =>
        Enumerable.Range(0, length).Select(_ => rng.Next(vocab)).ToArray();

    /// <summary>Frees the current runner (weights, KV cache) before the next model needs the memory.</summary>
    public void ReleaseRunner()
    {
        _current?.Runner.Dispose();
        _current = null;
    }

    public void Dispose()
    {
        ReleaseRunner();
        foreach (var directory in _checkpointDirectories)
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        _checkpointDirectories.Clear();
    }
}

/// <summary>
/// Makes the runner's accelerator current on the engine's own thread before every step. A CUDA context is
/// current per thread; ILGPU binds it in most calls, and this makes sure of it for the ones it might not.
/// It also adds up where the host spends the decode steps (every chunk one token): the runner's
/// <see cref="StepTimes"/> and the engine's own time from one step's return to the next step's call.
/// </summary>
internal sealed class BoundRunner(LlamaModelRunner inner) : IModelRunner
{
    private long _returned;
    private int _steps;
    private long _prepare, _enqueue, _logits, _finish, _engine;

    public int BlockSize => inner.BlockSize;

    public int NumBlocks => inner.NumBlocks;

    public int VocabSize => inner.VocabSize;

    public int MaxSeqLen => inner.MaxSeqLen;

    public float[]?[] Execute(StepBatch batch) => Timed(batch, inner.Execute);

    public StepResult Run(StepBatch batch) => Timed(batch, inner.Run);

    private T Timed<T>(StepBatch batch, Func<StepBatch, T> step)
    {
        long called = Stopwatch.GetTimestamp();
        inner.Accelerator.Bind();
        var result = step(batch);
        bool decode = batch.Chunks.Count > 0 && batch.Chunks.All(c => c.TokenIds.Length == 1);
        if (decode)
        {
            var t = inner.LastStepTimes;
            // The engine's time between steps counts only between two decode steps (not across a prefill).
            if (_returned != 0) _engine += called - _returned;
            _steps++;
            _prepare += t.Prepare;
            _enqueue += t.Enqueue;
            _logits += t.Logits;
            _finish += t.Finish;
        }
        _returned = decode ? Stopwatch.GetTimestamp() : 0;
        return result;
    }

    /// <summary>The mean decode step so far (null before the first).</summary>
    public StepBreakdown? DecodeSteps()
    {
        if (_steps == 0) return null;
        double perStep = Stopwatch.Frequency * (double)_steps;
        return new StepBreakdown(_steps, _prepare / perStep, _enqueue / perStep, _logits / perStep, _finish / perStep,
            _steps > 1 ? _engine / (Stopwatch.Frequency * (double)(_steps - 1)) : 0);
    }

    public void Dispose()
    {
        // The bench owns the runner and disposes it when its runs are done.
    }
}

/// <summary>
/// Where a mean decode step's host time goes, in seconds: the runner preparing it (step tables, the attention plan's
/// upload), enqueuing its launches, copying the logits out (waiting for the device), finishing, and the engine
/// between steps (sampling, scheduling). Enqueue close to the whole step means launch overhead, not the device,
/// bounds it.
/// </summary>
public sealed record StepBreakdown(int Steps, double Prepare, double Enqueue, double Logits, double Finish, double Engine)
{
    public double Total => Prepare + Enqueue + Logits + Finish + Engine;

    public string Summary =>
        $"decode step {Format.Seconds(Total)} (mean of {Steps}): prepare {Format.Seconds(Prepare)}, enqueue {Format.Seconds(Enqueue)}, " +
        $"logits {Format.Seconds(Logits)}, finish {Format.Seconds(Finish)}, engine {Format.Seconds(Engine)}";
}
