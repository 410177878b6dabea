using SpecializedInference.KvCache;
using SpecializedInference.Runtime;

namespace SpecializedInference.Scheduling;

/// <summary>
/// Continuous batching over a paged KV cache (vLLM style), FCFS.
/// <para>Each step, within the token budget (<see cref="SchedulerOptions.MaxNumBatchedTokens"/>):
/// (1) every running decode gets its one token, (2) running sequences still in prefill get the next chunk,
/// (3) waiting sequences are admitted in arrival order, their cached prefix reused, and get a first chunk.
/// Long prompts are chunked, so they never stall the decodes of others.</para>
/// <para>When a running sequence needs a block and the pool is out, the most recently admitted running
/// sequence is preempted: its blocks are freed and it goes back to the head of the waiting queue with
/// nothing computed, so its prompt plus the tokens generated so far are prefilled again (recomputation;
/// full blocks it had written usually come back as prefix-cache hits). The oldest running sequence is
/// never preempted for a newer one, so it always progresses.</para>
/// <para>The scheduler sees block ids only; the model runner owns the device memory.</para>
/// </summary>
public sealed class Scheduler
{
    private readonly SchedulerOptions _options;
    private readonly KvCacheManager _kv;
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<Sequence> _running = new();
    private long _nextArrival, _nextAdmission;
    private SchedulerStep? _inFlight;

    public Scheduler(SchedulerOptions options, KvCacheManager kv)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _kv = kv ?? throw new ArgumentNullException(nameof(kv));
        if (options.RecomputeEveryStep && kv.PrefixCachingEnabled)
            throw new ArgumentException("Without a KV cache (recompute every step) prefix caching must be off.", nameof(kv));
    }

    public SchedulerOptions Options => _options;

    public KvCacheManager KvCache => _kv;

    public IReadOnlyCollection<Sequence> Waiting => _waiting;

    /// <summary>Running sequences in admission order.</summary>
    public IReadOnlyList<Sequence> Running => _running;

    public bool HasWork => _waiting.Count > 0 || _running.Count > 0;

    /// <summary>Sequences preempted so far (each preemption counts once).</summary>
    public long Preemptions { get; private set; }

    /// <summary>Throws <see cref="RequestRejectedException"/> if a request with this shape can never be served.</summary>
    public void Validate(int promptLength, int maxNewTokens, string displayName)
    {
        if (promptLength <= 0)
            throw new RequestRejectedException($"{displayName} has an empty prompt: at least one prompt token is required.", "PromptTokenIds");
        if (maxNewTokens <= 0)
            throw new RequestRejectedException($"{displayName} asks for max_new_tokens = {maxNewTokens}; it must be at least 1.", "MaxNewTokens");
        long total = (long)promptLength + maxNewTokens;
        if (total > _options.MaxSeqLen)
            throw new RequestRejectedException(
                $"{displayName} needs {total} positions (prompt {promptLength} + max_new_tokens {maxNewTokens}) but max_seq_len is {_options.MaxSeqLen}.",
                "MaxNewTokens");
        // The last sampled token is never run, so the cache holds at most total - 1 tokens.
        long blocks = (total - 1 + _kv.BlockSize - 1) / _kv.BlockSize;
        if (blocks > _kv.Pool.NumBlocks)
            throw new RequestRejectedException(
                $"{displayName} needs {blocks} KV blocks ({total - 1} tokens at {_kv.BlockSize} per block) but the whole pool has {_kv.Pool.NumBlocks} blocks.",
                "MaxNewTokens");
    }

    /// <summary>Queues a new sequence (after <see cref="Validate"/>).</summary>
    public void Add(Sequence sequence)
    {
        ArgumentNullException.ThrowIfNull(sequence);
        if (sequence.Status != SequenceStatus.Waiting || sequence.OutputLength != 0 || sequence.Blocks.Count != 0)
            throw new ArgumentException($"{sequence.DisplayName} is not a new sequence.", nameof(sequence));
        Validate(sequence.PromptLength, sequence.MaxNewTokens, sequence.DisplayName);
        sequence.ArrivalOrder = _nextArrival++;
        _waiting.AddLast(sequence);
    }

    /// <summary>Plans the next step, or returns null when there is nothing to run.</summary>
    public SchedulerStep? Schedule()
    {
        if (_inFlight is not null)
            throw new InvalidOperationException("The previous step has not been completed (call OnStepExecuted or OnStepFailed).");

        int budget = _options.MaxNumBatchedTokens;
        var planned = new List<Plan>();
        var preempted = new List<Sequence>();
        var copies = new List<BlockCopy>();
        var releaseAfterStep = new List<int>();

        // (1) decodes, then (2) prefill chunks of running sequences, each pass in admission order.
        foreach (bool decodePass in (ReadOnlySpan<bool>)[true, false])
        {
            foreach (var sequence in _running.ToArray())
            {
                if (sequence.Status != SequenceStatus.Running || IsDecode(sequence) != decodePass)
                    continue;
                int newTokens = _options.RecomputeEveryStep ? sequence.RemainingTokens : Math.Min(sequence.RemainingTokens, budget);
                int cost = Cost(sequence, sequence.NumComputedTokens, newTokens);
                if (newTokens == 0 || !Fits(cost, budget, planned))
                    continue;
                if (!AllocateOrPreempt(sequence, sequence.NumComputedTokens + newTokens, planned, preempted, ref budget))
                    continue;
                planned.Add(new Plan(sequence, newTokens, cost, decodePass));
                budget -= cost;
            }
        }

        // (3) admit waiting sequences in arrival order; not in a step that had to preempt (no room).
        while (preempted.Count == 0 && _waiting.First is { } head && _running.Count < _options.MaxBatchSize && budget > 0)
        {
            var sequence = head.Value;
            var match = _options.RecomputeEveryStep || sequence.NeedsPromptLogits ? PrefixMatch.Empty : _kv.MatchPrefix(sequence.Tokens);
            int computed = match.ComputedTokens;
            int remaining = sequence.Tokens.Count - computed;
            int newTokens = _options.RecomputeEveryStep ? remaining : Math.Min(remaining, budget);
            int cost = Cost(sequence, computed, newTokens);
            if (!Fits(cost, budget, planned))
                break;
            if (!_kv.TryAllocateWithPrefix(sequence.Blocks, match, computed + newTokens, copies, releaseAfterStep))
                break;
            if (_kv.PrefixCachingEnabled && !sequence.NeedsPromptLogits)
                _kv.RecordQuery(sequence.Tokens.Count);
            _waiting.RemoveFirst();
            sequence.Status = SequenceStatus.Running;
            sequence.NumComputedTokens = computed;
            sequence.AdmissionOrder = _nextAdmission++;
            if (!sequence.EverAdmitted)
            {
                sequence.EverAdmitted = true;
                sequence.NumCachedPromptTokens = Math.Min(computed, sequence.PromptLength);
            }
            _running.Add(sequence);
            planned.Add(new Plan(sequence, newTokens, cost, IsDecode: false));
            budget -= cost;
        }

        if (planned.Count == 0)
        {
            foreach (int block in releaseAfterStep)
                _kv.Pool.Release(block);
            return null;
        }

        var chunks = new List<ScheduledChunk>(planned.Count);
        var batchChunks = new List<SequenceChunk>(planned.Count);
        foreach (var plan in planned)
        {
            var sequence = plan.Sequence;
            int start = _options.RecomputeEveryStep ? 0 : sequence.NumComputedTokens;
            int end = sequence.NumComputedTokens + plan.NewTokens;
            var tokenIds = new int[end - start];
            for (int i = 0; i < tokenIds.Length; i++)
                tokenIds[i] = sequence.Tokens[start + i];
            bool wantLogits = end == sequence.Tokens.Count;
            chunks.Add(new ScheduledChunk(sequence, start, end, plan.NewTokens, !plan.IsDecode, wantLogits));
            batchChunks.Add(new SequenceChunk(sequence.Id, tokenIds, start, sequence.Blocks.BlockTable.ToArray(), wantLogits)
            {
                GreedyToken = wantLogits && sequence.TakesArgMax,
                AllLogits = sequence.NeedsPromptLogits,
            });
        }
        var step = new SchedulerStep(new StepBatch(batchChunks, copies), chunks, preempted, releaseAfterStep);
        _inFlight = step;
        return step;
    }

    /// <summary>Records that the runner executed <paramref name="step"/>: advances computed tokens and caches the blocks that became full.</summary>
    public void OnStepExecuted(SchedulerStep step)
    {
        EndStep(step);
        foreach (var chunk in step.Chunks)
        {
            var sequence = chunk.Sequence;
            sequence.NumComputedTokens = chunk.EndPosition;
            if (_kv.PrefixCachingEnabled)
                _kv.CommitComputed(sequence.Blocks, sequence.Tokens, sequence.NumComputedTokens);
        }
    }

    /// <summary>Records that the runner failed on <paramref name="step"/>: nothing was computed. The caller finishes the step's sequences.</summary>
    public void OnStepFailed(SchedulerStep step) => EndStep(step);

    /// <summary>Appends a sampled token to a running sequence whose tokens are all computed.</summary>
    public void AppendToken(Sequence sequence, int token)
    {
        if (sequence.Status != SequenceStatus.Running || sequence.RemainingTokens != 0)
            throw new InvalidOperationException($"{sequence.DisplayName} cannot take a token now ({sequence}).");
        sequence.Append(token);
    }

    /// <summary>Removes a sequence (finished, cancelled or failed) and frees its blocks at once.</summary>
    public void Finish(Sequence sequence)
    {
        if (_inFlight is not null && _inFlight.Chunks.Any(c => c.Sequence == sequence))
            throw new InvalidOperationException($"{sequence.DisplayName} is in the step being executed; finish it after OnStepExecuted/OnStepFailed.");
        switch (sequence.Status)
        {
            case SequenceStatus.Running:
                _running.Remove(sequence);
                _kv.Free(sequence.Blocks);
                break;
            case SequenceStatus.Waiting:
                _waiting.Remove(sequence);
                break;
            case SequenceStatus.Finished:
                return;
        }
        sequence.Status = SequenceStatus.Finished;
    }

    private void EndStep(SchedulerStep step)
    {
        if (!ReferenceEquals(step, _inFlight))
            throw new InvalidOperationException("This step is not the one in flight.");
        _inFlight = null;
        foreach (int block in step.ReleaseAfterStep)
            _kv.Pool.Release(block);
    }

    private static bool IsDecode(Sequence sequence) => sequence.OutputLength > 0 && sequence.RemainingTokens == 1;

    // Without a KV cache a sequence resubmits its whole history.
    private int Cost(Sequence sequence, int computed, int newTokens) =>
        _options.RecomputeEveryStep ? computed + newTokens : newTokens;

    // A recompute-mode sequence longer than the budget still runs when it is alone in the step.
    private bool Fits(int cost, int budget, List<Plan> planned) =>
        cost <= budget || (_options.RecomputeEveryStep && planned.Count == 0);

    private bool AllocateOrPreempt(Sequence sequence, int tokensAfterStep, List<Plan> planned, List<Sequence> preempted, ref int budget)
    {
        while (!_kv.TryAllocate(sequence.Blocks, tokensAfterStep))
        {
            var victim = _running[^1];
            int index = planned.FindIndex(p => p.Sequence == victim);
            if (index >= 0)
            {
                budget += planned[index].Cost;
                planned.RemoveAt(index);
            }
            Preempt(victim);
            preempted.Add(victim);
            if (victim == sequence)
                return false;
        }
        return true;
    }

    private void Preempt(Sequence sequence)
    {
        _running.Remove(sequence);
        _kv.Free(sequence.Blocks);
        sequence.NumComputedTokens = 0;
        sequence.Status = SequenceStatus.Waiting;
        sequence.NumPreemptions++;
        Preemptions++;
        // Back in arrival order: ahead of every request that arrived after it.
        var node = _waiting.First;
        while (node is not null && node.Value.ArrivalOrder < sequence.ArrivalOrder)
            node = node.Next;
        if (node is null) _waiting.AddLast(sequence); else _waiting.AddBefore(node, sequence);
    }

    private readonly record struct Plan(Sequence Sequence, int NewTokens, int Cost, bool IsDecode);
}
