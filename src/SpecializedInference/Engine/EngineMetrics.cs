using System.Diagnostics;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Engine;

/// <summary>Keeps the last samples of a latency (a ring buffer, so memory stays bounded).</summary>
internal sealed class LatencyRecorder
{
    private readonly double[] _samples;
    private long _count;
    private double _sum, _max;

    public LatencyRecorder(int capacity) => _samples = new double[capacity];

    public void Add(double milliseconds)
    {
        _samples[_count % _samples.Length] = milliseconds;
        _count++;
        _sum += milliseconds;
        _max = Math.Max(_max, milliseconds);
    }

    public LatencySummary Summarize()
    {
        if (_count == 0)
            return LatencySummary.Empty;
        int n = (int)Math.Min(_count, _samples.Length);
        var sorted = _samples.AsSpan(0, n).ToArray();
        Array.Sort(sorted);
        return new LatencySummary(_count, Rank(sorted, 0.50), Rank(sorted, 0.95), _sum / _count, _max);
    }

    // Nearest rank: the smallest sample with at least p of the samples at or below it.
    private static double Rank(double[] sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];
}

/// <summary>The engine's measured counters (engine thread writes, Snapshot reads, both under the core's lock).</summary>
internal sealed class EngineMetrics
{
    private readonly long _start = Stopwatch.GetTimestamp();

    public EngineMetrics(int maxBatchSize) => BatchSizeHistogram = new long[maxBatchSize + 1];

    public long Steps, PrefillTokens, DecodeTokens, RecomputedTokens, GeneratedTokens;
    public long DecodeOnlyTokens;
    public double StepSeconds, PrefillStepSeconds, DecodeOnlyStepSeconds;
    public long Completed, Cancelled, Failed, Rejected;
    public readonly long[] BatchSizeHistogram;
    public readonly LatencyRecorder TimeToFirstToken = new(1 << 16);
    public readonly LatencyRecorder InterTokenLatency = new(1 << 16);

    public double UptimeSeconds => Stopwatch.GetElapsedTime(_start).TotalSeconds;

    public void RecordStep(SchedulerStep step, double seconds)
    {
        Steps++;
        StepSeconds += seconds;
        BatchSizeHistogram[step.Chunks.Count]++;
        bool anyPrefill = false;
        long decodes = 0;
        foreach (var chunk in step.Chunks)
        {
            if (chunk.IsPrefill)
            {
                anyPrefill = true;
                PrefillTokens += chunk.NumNewTokens;
            }
            else
            {
                decodes += chunk.NumNewTokens;
            }
            RecomputedTokens += chunk.NumSubmittedTokens - chunk.NumNewTokens;
        }
        DecodeTokens += decodes;
        if (anyPrefill)
        {
            PrefillStepSeconds += seconds;
        }
        else
        {
            DecodeOnlyStepSeconds += seconds;
            DecodeOnlyTokens += decodes;
        }
    }

    public static double Rate(long tokens, double seconds) => seconds > 0 ? tokens / seconds : 0;
}
