using SpecializedInference.Runtime;

namespace SpecializedInference.Scheduling;

/// <summary>
/// One sequence's part of a step. Tokens [<see cref="StartPosition"/>, <see cref="EndPosition"/>) are
/// submitted; <see cref="NumNewTokens"/> of them (the tail) were not computed before (all of them but a
/// recompute in <c>use_kv_cache: false</c> mode).
/// </summary>
public sealed record ScheduledChunk(Sequence Sequence, int StartPosition, int EndPosition, int NumNewTokens, bool IsPrefill, bool WantLogits)
{
    public int NumSubmittedTokens => EndPosition - StartPosition;
}

/// <summary>What the scheduler decided for one step: the runner's batch plus the bookkeeping to finish it.</summary>
public sealed class SchedulerStep
{
    internal SchedulerStep(StepBatch batch, IReadOnlyList<ScheduledChunk> chunks, IReadOnlyList<Sequence> preempted, List<int> releaseAfterStep)
    {
        Batch = batch;
        Chunks = chunks;
        Preempted = preempted;
        ReleaseAfterStep = releaseAfterStep;
    }

    /// <summary>What the model runner executes; <c>Batch.Chunks[i]</c> belongs to <c>Chunks[i]</c>.</summary>
    public StepBatch Batch { get; }

    public IReadOnlyList<ScheduledChunk> Chunks { get; }

    /// <summary>Sequences preempted (blocks freed, re-queued for recomputation) while planning this step.</summary>
    public IReadOnlyList<Sequence> Preempted { get; }

    // Sources of copy-on-write copies, held until the runner has copied them.
    internal List<int> ReleaseAfterStep { get; }

    public int NumSubmittedTokens => Chunks.Sum(c => c.NumSubmittedTokens);
}
