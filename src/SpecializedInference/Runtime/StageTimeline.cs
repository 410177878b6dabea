using ILGPU.Runtime;

namespace SpecializedInference.Runtime;

/// <summary>
/// Where a step's device time goes, stage by stage, in the step as it runs: a profiling marker (a CUDA event) goes on
/// the stream before each stage's launches and one after the step's last, and the time between two markers is the
/// stage's, its launch gaps included. A profiler that times one kernel at a time (Nsight Compute, run 12) flushes the
/// caches and serializes the launches, so it cannot see what one kernel leaves in L2 for the next
/// (<see cref="ModelOptions.WeightPrefetch"/>) or the gaps between them; this can. The markers cost host time per
/// stage and may add a little between kernels, so a timed run is a run of its own (<see cref="LlamaModelRunner.StartStageTimeline"/>).
/// Only decode steps (every sequence one token) are added up.
/// </summary>
public sealed class StageTimeline
{
    private readonly AcceleratorStream _stream;
    private readonly List<(string Stage, ProfilingMarker Marker)> _step = new();
    private readonly List<string> _order = new();
    private readonly Dictionary<string, (int Calls, double Seconds)> _totals = new();

    /// <exception cref="InvalidOperationException">The accelerator's context was created without profiling.</exception>
    public StageTimeline(Accelerator accelerator)
    {
        _stream = accelerator.DefaultStream;
        try
        {
            _stream.AddProfilingMarker().Dispose();
        }
        catch (NotSupportedException e)
        {
            throw new InvalidOperationException(
                $"Timing a step's stages needs profiling markers, which {accelerator.Name} does not offer here (create it with AcceleratorOptions.Profiling): {e.Message}", e);
        }
    }

    /// <summary>Decode steps added up so far.</summary>
    public int Steps { get; private set; }

    /// <summary>Starts a step: drops the markers of one that ended early (an exception between its marks).</summary>
    public void BeginStep() => EndStep(decode: false);

    /// <summary>Marks the start of <paramref name="stage"/> (and the end of the stage before it) on the stream.</summary>
    public void Mark(string stage) => _step.Add((stage, _stream.AddProfilingMarker()));

    /// <summary>Ends the step once the stream has reached its last marker (after a synchronization): adds each stage's
    /// time to the totals when <paramref name="decode"/>, and releases the markers either way.</summary>
    public void EndStep(bool decode)
    {
        try
        {
            if (!decode || _step.Count < 2) return;
            for (int i = 0; i + 1 < _step.Count; i++)
            {
                var (stage, start) = _step[i];
                double seconds = _step[i + 1].Marker.MeasureFrom(start).TotalSeconds;
                if (!_totals.TryGetValue(stage, out var total)) _order.Add(stage);
                _totals[stage] = (total.Calls + 1, total.Seconds + seconds);
            }
            Steps++;
        }
        finally
        {
            foreach (var (_, marker) in _step) marker.Dispose();
            _step.Clear();
        }
    }

    /// <summary>The mean decode step's stages, in the order they first ran; empty before the first decode step.</summary>
    /// <param name="weightBytes">Weight bytes a step's stage reads, where known (for its GB/s).</param>
    public IReadOnlyList<StageTime> MeanStep(IReadOnlyDictionary<string, long>? weightBytes = null) =>
        Steps == 0
            ? []
            : _order.Select(s => new StageTime(s, (double)_totals[s].Calls / Steps, _totals[s].Seconds / Steps,
                weightBytes is not null && weightBytes.TryGetValue(s, out long bytes) ? bytes : null)).ToList();
}

/// <summary>One stage of a mean decode step (<see cref="StageTimeline"/>).</summary>
/// <param name="Stage">What ran: <see cref="StepStages"/>.</param>
/// <param name="CallsPerStep">How many times it ran per step (once per layer for the layers' stages).</param>
/// <param name="Seconds">Its device time per step, launch gaps included.</param>
/// <param name="WeightBytes">The weight bytes it reads per step, where it reads weights.</param>
public sealed record StageTime(string Stage, double CallsPerStep, double Seconds, long? WeightBytes)
{
    /// <summary>Weight bytes per second of device time; null where it reads none.</summary>
    public double? WeightBytesPerSecond => WeightBytes is long b && Seconds > 0 ? b / Seconds : null;
}

/// <summary>The stages of a step as <see cref="LlamaModelRunner"/> marks them.</summary>
public static class StepStages
{
    public const string Embedding = "embedding";
    public const string Qkv = "norm+qkv+rope";
    public const string Attention = "attention";
    public const string OProj = "o_proj";
    public const string GateUp = "norm+gate|up+silu";
    public const string Down = "down_proj";
    /// <summary>o_proj, norm+gate|up+silu, down_proj and the next layer's norm+qkv+rope in one grid-synced launch (<see cref="Kernels.Dense.DecodeLaunches.GridSyncedTails"/>).</summary>
    public const string LayerTail = "o_proj+mlp+next qkv (grid-synced)";
    /// <summary>The attention and <see cref="LayerTail"/> in one grid-synced launch (<see cref="Kernels.Dense.DecodeLaunches.GridSyncedLayers"/>).</summary>
    public const string Layer = "attention+o_proj+mlp+next qkv (grid-synced)";
    public const string LmHead = "norm+lm_head";
    public const string ArgMax = "argmax";
    public const string CopyOut = "copy out";

    /// <summary>The marker after a step's last stage (not a stage: nothing starts there).</summary>
    public const string EndOfStep = "end of step";
}
