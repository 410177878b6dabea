using SpecializedInference.Kernels;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Engine;

/// <summary>Serving options of an <see cref="InferenceEngine"/>.</summary>
public sealed record EngineOptions
{
    /// <summary>Most requests running at once (sequences per step).</summary>
    public int MaxBatchSize { get; init; } = 8;

    /// <summary>Token budget of one step (decodes 1 each, prefill chunks their length).</summary>
    public int MaxNumBatchedTokens { get; init; } = 512;

    /// <summary>KV blocks the scheduler may use; null = all of the runner's <c>NumBlocks</c>. A runner factory
    /// sizes its cache from this (see <see cref="KvCache.KvCacheSizing"/>).</summary>
    public int? KvBlocks { get; init; }

    /// <summary>Longest prompt + max_new_tokens; null = the runner's <c>MaxSeqLen</c>.</summary>
    public int? MaxSeqLen { get; init; }

    /// <summary>false: recompute the whole sequence from position 0 every step (no prefix cache, no chunked prefill).</summary>
    public bool UseKvCache { get; init; } = true;

    /// <summary>false: one request at a time.</summary>
    public bool UseBatching { get; init; } = true;

    /// <summary>Reuse the KV blocks of identical prompt prefixes (only with <see cref="UseKvCache"/>).</summary>
    public bool EnablePrefixCaching { get; init; } = true;

    /// <summary>The engine settings a kernel config was generated with.</summary>
    public static EngineOptions FromDefaults(EngineDefaults defaults)
    {
        ArgumentNullException.ThrowIfNull(defaults);
        return new EngineOptions
        {
            MaxBatchSize = defaults.MaxBatchSize,
            MaxNumBatchedTokens = Math.Max(512, defaults.MaxBatchSize),
            MaxSeqLen = defaults.MaxSeqLen,
            UseKvCache = defaults.UseKvCache,
            UseBatching = defaults.UseBatching,
        };
    }

    /// <summary>The scheduler limits these options give over a runner with <paramref name="runnerMaxSeqLen"/>.</summary>
    public SchedulerOptions ToSchedulerOptions(int runnerMaxSeqLen)
    {
        int maxSeqLen = MaxSeqLen ?? runnerMaxSeqLen;
        if (maxSeqLen > runnerMaxSeqLen)
            throw new ArgumentOutOfRangeException(nameof(MaxSeqLen), maxSeqLen, $"max_seq_len {maxSeqLen} exceeds the model runner's {runnerMaxSeqLen}.");
        int batch = UseBatching ? MaxBatchSize : 1;
        var options = new SchedulerOptions
        {
            MaxBatchSize = batch,
            MaxNumBatchedTokens = MaxNumBatchedTokens,
            MaxSeqLen = maxSeqLen,
            RecomputeEveryStep = !UseKvCache,
        };
        options.Validate();
        return options;
    }
}
