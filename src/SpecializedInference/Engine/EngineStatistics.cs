using SpecializedInference.KvCache;

namespace SpecializedInference.Engine;

/// <summary>Percentiles of measured latencies (milliseconds, nearest rank over the recorded samples).</summary>
public sealed record LatencySummary(long Count, double P50Ms, double P95Ms, double MeanMs, double MaxMs)
{
    public static LatencySummary Empty { get; } = new(0, double.NaN, double.NaN, double.NaN, double.NaN);
}

/// <summary>
/// Engine counters at one moment. Everything is measured on the engine thread with a monotonic clock
/// (nothing is estimated from a model of the hardware).
/// </summary>
public sealed record EngineStatistics
{
    /// <summary>Seconds since the engine started.</summary>
    public required double UptimeSeconds { get; init; }

    /// <summary>Steps the model runner executed.</summary>
    public required long Steps { get; init; }

    /// <summary>Wall time inside <c>IModelRunner.Execute</c>, summed over steps.</summary>
    public required double StepSeconds { get; init; }

    /// <summary>Prompt tokens computed (prefill chunks, including recomputation after preemption; prefix-cache hits excluded).</summary>
    public required long PrefillTokens { get; init; }

    /// <summary>Tokens run by decode chunks (one per decode).</summary>
    public required long DecodeTokens { get; init; }

    /// <summary>Tokens resubmitted without being new (only with <c>use_kv_cache: false</c>).</summary>
    public required long RecomputedTokens { get; init; }

    /// <summary>Tokens sampled and delivered.</summary>
    public required long GeneratedTokens { get; init; }

    /// <summary><see cref="PrefillTokens"/> ÷ wall time of the steps that ran prefill chunks (decodes may ride along in them).</summary>
    public required double PrefillTokensPerSecond { get; init; }

    /// <summary>Decode tokens of decode-only steps ÷ wall time of those steps.</summary>
    public required double DecodeTokensPerSecond { get; init; }

    /// <summary>From submission to the first token, per request.</summary>
    public required LatencySummary TimeToFirstToken { get; init; }

    /// <summary>Between consecutive tokens of a request.</summary>
    public required LatencySummary InterTokenLatency { get; init; }

    /// <summary><c>BatchSizeHistogram[n]</c> = steps that ran n sequences.</summary>
    public required IReadOnlyList<long> BatchSizeHistogram { get; init; }

    public required KvCacheUsage KvCache { get; init; }

    /// <summary>Tokens looked up in the prefix cache at admission (all tokens of each admitted sequence).</summary>
    public required long PrefixCacheQueryTokens { get; init; }

    /// <summary>Tokens served from the prefix cache instead of computed.</summary>
    public required long PrefixCacheHitTokens { get; init; }

    /// <summary>Queried tokens that were not in the prefix cache (computed).</summary>
    public long PrefixCacheMissTokens => PrefixCacheQueryTokens - PrefixCacheHitTokens;

    /// <summary><see cref="PrefixCacheHitTokens"/> ÷ <see cref="PrefixCacheQueryTokens"/> (0 before any query), in tokens.</summary>
    public double PrefixCacheHitRate => PrefixCacheQueryTokens == 0 ? 0 : (double)PrefixCacheHitTokens / PrefixCacheQueryTokens;

    /// <summary>Cached blocks evicted to make room.</summary>
    public required long Evictions { get; init; }

    /// <summary>Requests preempted (blocks freed, recomputed later).</summary>
    public required long Preemptions { get; init; }

    public required int RunningRequests { get; init; }

    public required int WaitingRequests { get; init; }

    public required long CompletedRequests { get; init; }

    public required long CancelledRequests { get; init; }

    public required long FailedRequests { get; init; }

    public required long RejectedRequests { get; init; }
}
