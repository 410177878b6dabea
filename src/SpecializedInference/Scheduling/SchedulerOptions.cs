namespace SpecializedInference.Scheduling;

/// <summary>Limits of one scheduler.</summary>
public sealed record SchedulerOptions
{
    /// <summary>Most sequences running at once, which is also the most chunks in one step.</summary>
    public int MaxBatchSize { get; init; } = 8;

    /// <summary>Token budget of one step: decodes cost 1 each, prefill chunks their length.</summary>
    public int MaxNumBatchedTokens { get; init; } = 512;

    /// <summary>Longest sequence (prompt + max new tokens) a request may ask for.</summary>
    public int MaxSeqLen { get; init; } = 2048;

    /// <summary>
    /// The <c>use_kv_cache: false</c> mode: every step submits each scheduled sequence from position 0
    /// (its whole history is recomputed), there is no chunked prefill and no prefix caching. A sequence
    /// longer than the token budget is still run when it is the only one in the step.
    /// </summary>
    public bool RecomputeEveryStep { get; init; }

    public void Validate()
    {
        if (MaxBatchSize < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxBatchSize), MaxBatchSize, "max_batch_size must be at least 1.");
        if (MaxNumBatchedTokens < MaxBatchSize)
            throw new ArgumentOutOfRangeException(nameof(MaxNumBatchedTokens), MaxNumBatchedTokens,
                $"max_num_batched_tokens ({MaxNumBatchedTokens}) must be at least max_batch_size ({MaxBatchSize}) so every running decode fits in a step.");
        if (MaxSeqLen < 1)
            throw new ArgumentOutOfRangeException(nameof(MaxSeqLen), MaxSeqLen, "max_seq_len must be at least 1.");
    }
}
