using SpecializedInference.KvCache;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Tests.Scheduling;

/// <summary>One request of a generated workload.</summary>
internal sealed record WorkloadRequest(int[] Prompt, int MaxNewTokens, int ArrivalStep, int? CancelAtStep)
{
    public override string ToString() =>
        $"[prompt {Prompt.Length}: {string.Join(",", Prompt)}; max {MaxNewTokens}; arrives {ArrivalStep}{(CancelAtStep is { } c ? $"; cancel at {c}" : "")}]";
}

/// <summary>A generated workload and the engine limits it runs under.</summary>
internal sealed record Workload(int NumBlocks, int BlockSize, int MaxBatchSize, int MaxNumBatchedTokens, bool RecomputeEveryStep, int VocabSize, int EosToken, WorkloadRequest[] Requests)
{
    public override string ToString() =>
        $"blocks {NumBlocks} x {BlockSize}, batch {MaxBatchSize}, budget {MaxNumBatchedTokens}, recompute {RecomputeEveryStep}, vocab {VocabSize}, eos {EosToken}\n  "
        + string.Join("\n  ", Requests.Select(r => r.ToString()));
}

/// <summary>What a run of a workload produced.</summary>
internal sealed record WorkloadResult(Dictionary<int, List<int>> Outputs, HashSet<int> Cancelled, long Preemptions, long PrefixHitTokens, int Steps, bool SawPartialPrefill, bool SawBlockCopy);

/// <summary>
/// Drives the scheduler and block pool alone, step by step, with the fake runner and greedy argmax, and
/// checks the bookkeeping invariants between every phase of every step.
/// </summary>
internal static class SchedulerHarness
{
    public static WorkloadResult Run(Workload w, int maxSteps = 5000)
    {
        var pool = new BlockPool(w.NumBlocks, w.BlockSize);
        var kv = new KvCacheManager(pool, enablePrefixCaching: !w.RecomputeEveryStep);
        var scheduler = new Scheduler(new SchedulerOptions
        {
            MaxBatchSize = w.MaxBatchSize,
            MaxNumBatchedTokens = w.MaxNumBatchedTokens,
            MaxSeqLen = 4096,
            RecomputeEveryStep = w.RecomputeEveryStep,
        }, kv);
        var runner = new FakeModelRunner(w.NumBlocks, w.BlockSize, w.VocabSize);
        var sequences = new Sequence[w.Requests.Length];
        var finishedCount = new int[w.Requests.Length];
        var outputs = new Dictionary<int, List<int>>();
        var cancelled = new HashSet<int>();
        bool sawPartial = false, sawCopy = false;
        int step = 0;

        for (; step < maxSteps; step++)
        {
            for (int i = 0; i < w.Requests.Length; i++)
            {
                var r = w.Requests[i];
                if (r.ArrivalStep == step)
                {
                    sequences[i] = new Sequence(i, r.Prompt, r.MaxNewTokens);
                    scheduler.Add(sequences[i]);
                }
                if (r.CancelAtStep == step && sequences[i] is { Status: not SequenceStatus.Finished } s)
                {
                    scheduler.Finish(s);
                    Record(i, cancel: true);
                }
            }
            if (sequences.All(s => s is { Status: SequenceStatus.Finished }))
                break;

            var planned = scheduler.Schedule();
            CheckInvariants(pool, scheduler, planned);
            if (planned is null)
            {
                // Nothing ran: only allowed when nothing is queued (requests yet to arrive).
                Assert.True(scheduler.Waiting.Count == 0 && scheduler.Running.Count == 0,
                    $"Step {step}: nothing scheduled but {scheduler.Waiting.Count} waiting and {scheduler.Running.Count} running (usage {pool.Usage}).");
                continue;
            }
            Assert.True(scheduler.Waiting.Count == 0 || scheduler.Running.Count > 0, $"Step {step}: requests wait while none runs.");
            Assert.True(planned.Chunks.Count <= w.MaxBatchSize);
            if (!w.RecomputeEveryStep || planned.Chunks.Count > 1)
                Assert.True(planned.NumSubmittedTokens <= w.MaxNumBatchedTokens, $"Step {step}: {planned.NumSubmittedTokens} tokens over the budget {w.MaxNumBatchedTokens}.");
            sawPartial |= planned.Chunks.Any(c => c.IsPrefill && !c.WantLogits);
            sawCopy |= planned.Batch.BlockCopies.Count > 0;

            var logits = runner.Execute(planned.Batch);
            scheduler.OnStepExecuted(planned);
            CheckInvariants(pool, scheduler, null);

            for (int c = 0; c < planned.Chunks.Count; c++)
            {
                var chunk = planned.Chunks[c];
                Assert.Equal(chunk.WantLogits, logits[c] is not null);
                if (!chunk.WantLogits)
                    continue;
                var sequence = chunk.Sequence;
                int token = ArgMax(logits[c]!);
                scheduler.AppendToken(sequence, token);
                if (token == w.EosToken || sequence.OutputLength == sequence.MaxNewTokens)
                {
                    scheduler.Finish(sequence);
                    Record((int)sequence.Id, cancel: false);
                }
            }
            CheckInvariants(pool, scheduler, null);
        }

        Assert.True(step < maxSteps, $"The workload did not finish within {maxSteps} steps (a request waits forever).");
        Assert.All(finishedCount, n => Assert.Equal(1, n));
        Assert.Equal(0, pool.UsedBlocks);
        Assert.Equal(w.NumBlocks, pool.FreeBlocks + pool.CachedBlocks);
        return new WorkloadResult(outputs, cancelled, scheduler.Preemptions, kv.PrefixHitTokens, step, sawPartial, sawCopy);

        void Record(int i, bool cancel)
        {
            finishedCount[i]++;
            Assert.Equal(1, finishedCount[i]);
            outputs[i] = sequences[i].Tokens.Skip(sequences[i].PromptLength).ToList();
            if (cancel) cancelled.Add(i);
            Assert.Equal(0, sequences[i].Blocks.Count);
        }
    }

    /// <summary>
    /// The pool's structure is sound, every reference is accounted for by a block table (or a pending
    /// copy), only prefix-cached blocks are shared, and no written block is shared or cached.
    /// </summary>
    public static void CheckInvariants(BlockPool pool, Scheduler scheduler, SchedulerStep? planned)
    {
        pool.AssertConsistent();
        Assert.Equal(pool.NumBlocks, pool.UsedBlocks + pool.CachedBlocks + pool.FreeBlocks);

        var holders = new int[pool.NumBlocks];
        foreach (var sequence in scheduler.Running)
        {
            var table = sequence.Blocks.BlockTable;
            Assert.Equal(table.Count, table.Distinct().Count());
            foreach (int b in table)
                holders[b]++;
            if (planned is null)
                Assert.Equal((sequence.NumComputedTokens + pool.BlockSize - 1) / pool.BlockSize, table.Count);
        }
        foreach (var sequence in scheduler.Waiting)
            Assert.Equal(0, sequence.Blocks.Count);
        if (planned is not null)
            foreach (var copy in planned.Batch.BlockCopies)
                holders[copy.Source]++;

        for (int b = 0; b < pool.NumBlocks; b++)
        {
            Assert.True(pool.RefCount(b) >= 0, $"Block {b} has a negative reference count.");
            Assert.True(holders[b] == pool.RefCount(b), $"Block {b}: reference count {pool.RefCount(b)} but {holders[b]} holders.");
            if (holders[b] > 1)
                Assert.True(pool.IsHashed(b), $"Block {b} is shared by {holders[b]} sequences but is not a cached full block.");
        }

        if (planned is null)
            return;
        foreach (var chunk in planned.Batch.Chunks)
        {
            for (int position = chunk.StartPosition; position < chunk.ContextLength; position++)
            {
                int b = chunk.BlockTable[position / pool.BlockSize];
                Assert.True(pool.RefCount(b) == 1, $"Sequence {chunk.SequenceId} writes position {position} into block {b} which has {pool.RefCount(b)} references.");
                if (!scheduler.Options.RecomputeEveryStep)
                    Assert.False(pool.IsHashed(b), $"Sequence {chunk.SequenceId} writes position {position} into cached block {b}.");
            }
        }
    }

    public static int ArgMax(float[] logits)
    {
        int best = 0;
        for (int v = 1; v < logits.Length; v++)
            if (logits[v] > logits[best]) best = v;
        return best;
    }
}
