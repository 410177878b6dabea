using System.Diagnostics;
using SpecializedInference.KvCache;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Engine;

/// <summary>What one step (or an abort) did to a request: a new token, its end, or both.</summary>
public readonly record struct RequestEvent(long RequestId, GeneratedToken? Token, Completion? Completion);

/// <summary>A request that passed admission checks, ready for <see cref="EngineCore.Add(PreparedRequest)"/>.</summary>
public sealed class PreparedRequest
{
    internal PreparedRequest(long id, GenerationRequest request, Sequence sequence, ITokenSampler sampler, long arrivalTimestamp)
    {
        Id = id;
        Request = request;
        Sequence = sequence;
        Sampler = sampler;
        ArrivalTimestamp = arrivalTimestamp;
        Logprobs = request.Logprobs is null ? null : new List<TokenLogprobs>();
        PromptLogprobs = request.PromptLogprobs is null ? null : new List<TokenLogprobs>();
    }

    public long Id { get; }

    public GenerationRequest Request { get; }

    internal Sequence Sequence { get; }

    internal ITokenSampler Sampler { get; }

    internal long ArrivalTimestamp { get; }

    internal long LastTokenTimestamp { get; set; }

    internal TimeSpan? TimeToFirstToken { get; set; }

    /// <summary>Each generated token's log-probabilities, when the request asked for them.</summary>
    internal List<TokenLogprobs>? Logprobs { get; }

    /// <summary>Prompt tokens 1, 2, ...'s log-probabilities as they are computed, when the request asked for them.</summary>
    internal List<TokenLogprobs>? PromptLogprobs { get; }

    internal string DisplayName => Sequence.DisplayName;
}

/// <summary>
/// The synchronous engine: one <see cref="Step"/> = scheduler → model runner → sampling → stop checks.
/// Single-threaded by design (the <see cref="InferenceEngine"/> runs it on its own thread); only
/// <see cref="Prepare"/> and <see cref="Snapshot"/> may be called from other threads.
/// </summary>
public sealed class EngineCore
{
    private readonly IModelRunner _runner;
    private readonly TokenSamplerFactory _samplerFactory;
    private readonly BlockPool _pool;
    private readonly KvCacheManager _kv;
    private readonly Scheduler _scheduler;
    private readonly Dictionary<long, PreparedRequest> _active = new();
    private readonly EngineMetrics _metrics;
    private readonly object _sync = new();

    public EngineCore(IModelRunner runner, EngineOptions? options = null, TokenSamplerFactory? samplerFactory = null)
    {
        _runner = runner ?? throw new ArgumentNullException(nameof(runner));
        Options = options ?? new EngineOptions();
        _samplerFactory = samplerFactory ?? TokenSamplers.GreedyOnly;
        int blocks = Options.KvBlocks ?? runner.NumBlocks;
        if (blocks < 1 || blocks > runner.NumBlocks)
            throw new ArgumentOutOfRangeException(nameof(options), blocks,
                $"kv_blocks must be between 1 and the model runner's {runner.NumBlocks} blocks.");
        var schedulerOptions = Options.ToSchedulerOptions(runner.MaxSeqLen);
        _pool = new BlockPool(blocks, runner.BlockSize);
        _kv = new KvCacheManager(_pool, Options.UseKvCache && Options.EnablePrefixCaching);
        _scheduler = new Scheduler(schedulerOptions, _kv);
        _metrics = new EngineMetrics(schedulerOptions.MaxBatchSize);
    }

    public EngineOptions Options { get; }

    public IModelRunner Runner => _runner;

    public int BlockSize => _pool.BlockSize;

    public int NumBlocks => _pool.NumBlocks;

    public int MaxSeqLen => _scheduler.Options.MaxSeqLen;

    public bool HasWork => _scheduler.HasWork;

    internal Scheduler Scheduler => _scheduler;

    internal BlockPool Pool => _pool;

    /// <summary>
    /// Checks a request and builds its state. Thread-safe. Throws <see cref="RequestRejectedException"/>
    /// naming the request and the limit when it can never be served.
    /// </summary>
    public PreparedRequest Prepare(long id, GenerationRequest request, long? arrivalTimestamp = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        try
        {
            var name = request.Name is null ? $"request {id}" : $"request '{request.Name}' (id {id})";
            if (request.PromptTokenIds is null)
                throw new RequestRejectedException($"{name} has no prompt token ids.", nameof(request.PromptTokenIds));
            _scheduler.Validate(request.PromptTokenIds.Count, request.MaxNewTokens, name);
            for (int i = 0; i < request.PromptTokenIds.Count; i++)
            {
                int token = request.PromptTokenIds[i];
                if ((uint)token >= (uint)_runner.VocabSize)
                    throw new RequestRejectedException(
                        $"{name} has prompt token id {token} at index {i}, outside the vocabulary [0, {_runner.VocabSize}).", nameof(request.PromptTokenIds));
            }
            foreach (var (top, what, param) in new[] { (request.Logprobs, "token", nameof(request.Logprobs)), (request.PromptLogprobs, "prompt token", nameof(request.PromptLogprobs)) })
                if (top is < 0 or > TokenLogprobs.MaxTop)
                    throw new RequestRejectedException(
                        $"{name} asks for {top} top log-probabilities per {what}; the range is 0 to {TokenLogprobs.MaxTop}.", param);
            if (request.PromptLogprobs is not null && !_runner.ReturnsAllLogits)
                throw new RequestRejectedException(
                    $"{name} asks for prompt log-probabilities, which this model runner ({_runner.GetType().Name}) cannot compute: it returns the logits of a chunk's last token only.", nameof(request.PromptLogprobs));
            ITokenSampler sampler;
            try
            {
                var sampling = request.Sampling ?? SamplingParams.ArgMax;
                sampler = _samplerFactory(sampling)
                    ?? throw new ArgumentException("the sampler factory returned no sampler.");
                foreach (int token in sampling.LogitBias?.Keys ?? [])
                    if ((uint)token >= (uint)_runner.VocabSize)
                        throw new ArgumentException($"logit_bias names token id {token}, outside the vocabulary [0, {_runner.VocabSize}).");
                if (sampling.AdjustsLogits)
                    sampler = new AdjustedTokenSampler(sampler, sampling, request.PromptTokenIds,
                        request.IgnoreEos ? request.StopTokenIds : request.StopTokenIds.Concat(request.EosTokenIds));
            }
            catch (Exception e) when (e is NotSupportedException or ArgumentException)
            {
                throw new RequestRejectedException($"{name} has unsupported sampling parameters: {e.Message}", nameof(request.Sampling));
            }
            // The greedy sampler's argmax is what a runner picks on the device: same ties, same NaN rule. Penalties and
            // log-probabilities need the logits row on the host.
            var sequence = new Sequence(id, request.PromptTokenIds, request.MaxNewTokens, request.Name)
            {
                TakesArgMax = sampler is GreedyTokenSampler && request.Logprobs is null,
                WantsPromptLogits = request.PromptLogprobs is not null,
            };
            return new PreparedRequest(id, request, sequence, sampler, arrivalTimestamp ?? Stopwatch.GetTimestamp());
        }
        catch (RequestRejectedException)
        {
            lock (_sync) _metrics.Rejected++;
            throw;
        }
    }

    /// <summary>Queues a prepared request.</summary>
    public void Add(PreparedRequest prepared)
    {
        ArgumentNullException.ThrowIfNull(prepared);
        lock (_sync)
        {
            if (!_active.TryAdd(prepared.Id, prepared))
                throw new ArgumentException($"Request id {prepared.Id} is already in use.", nameof(prepared));
            _scheduler.Add(prepared.Sequence);
        }
    }

    /// <summary>Prepares and queues a request (single-threaded use).</summary>
    public PreparedRequest Add(long id, GenerationRequest request)
    {
        var prepared = Prepare(id, request);
        Add(prepared);
        return prepared;
    }

    /// <summary>Ends a request now, freeing its blocks; null if it is not active (finished or unknown).</summary>
    public Completion? Abort(long id, FinishReason reason = FinishReason.Cancelled, string? error = null)
    {
        lock (_sync)
        {
            return _active.TryGetValue(id, out var request) ? Finish(request, reason, error) : null;
        }
    }

    /// <summary>Ends every active request (engine shutdown).</summary>
    public IReadOnlyList<Completion> AbortAll(FinishReason reason, string? error)
    {
        lock (_sync)
        {
            return _active.Values.OrderBy(r => r.Id).ToList().Select(r => Finish(r, reason, error)).ToList();
        }
    }

    /// <summary>Runs one step. Runner and sampler failures end the affected requests with <see cref="FinishReason.Error"/>.</summary>
    public IReadOnlyList<RequestEvent> Step()
    {
        SchedulerStep? step;
        lock (_sync)
            step = _scheduler.Schedule();
        if (step is null)
            return Array.Empty<RequestEvent>();

        long started = Stopwatch.GetTimestamp();
        StepResult? result = null;
        Exception? failure = null;
        try
        {
            result = _runner.Run(step.Batch);
            CheckResult(step, result);
        }
        catch (Exception e)
        {
            failure = e;
        }
        double seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;

        var events = new List<RequestEvent>();
        lock (_sync)
        {
            if (failure is not null)
            {
                _scheduler.OnStepFailed(step);
                foreach (var chunk in step.Chunks)
                {
                    var request = _active[chunk.Sequence.Id];
                    var completion = Finish(request, FinishReason.Error,
                        $"The model runner failed on a step with {request.DisplayName}: {failure.GetType().Name}: {failure.Message}");
                    events.Add(new RequestEvent(request.Id, null, completion));
                }
                return events;
            }

            _scheduler.OnStepExecuted(step);
            _metrics.RecordStep(step, seconds);
            long now = Stopwatch.GetTimestamp();
            for (int i = 0; i < step.Chunks.Count; i++)
            {
                var chunk = step.Chunks[i];
                if (result!.AllLogits?[i] is { } rows)
                    AddPromptLogprobs(_active[chunk.Sequence.Id], chunk.StartPosition, rows);
                if (!chunk.WantLogits)
                    continue;
                var request = _active[chunk.Sequence.Id];
                int token;
                TokenLogprobs? logprobs = null;
                try
                {
                    token = result!.TokenAt(i) ?? request.Sampler.Sample(result.Logits[i]);
                    if ((uint)token >= (uint)_runner.VocabSize)
                        throw new InvalidOperationException($"sampled token id {token} is outside the vocabulary [0, {_runner.VocabSize}).");
                    if (request.Request.Logprobs is { } top)
                        logprobs = TokenLogprobs.Compute(result.Logits[i], token, top);
                }
                catch (Exception e)
                {
                    events.Add(new RequestEvent(request.Id, null,
                        Finish(request, FinishReason.Error, $"Sampling failed for {request.DisplayName}: {e.Message}")));
                    continue;
                }
                events.Add(Deliver(request, token, logprobs, now));
            }
        }
        return events;
    }

    /// <summary>Measured statistics; thread-safe.</summary>
    public EngineStatistics Snapshot()
    {
        lock (_sync)
        {
            var m = _metrics;
            return new EngineStatistics
            {
                UptimeSeconds = m.UptimeSeconds,
                Steps = m.Steps,
                StepSeconds = m.StepSeconds,
                PrefillTokens = m.PrefillTokens,
                DecodeTokens = m.DecodeTokens,
                RecomputedTokens = m.RecomputedTokens,
                GeneratedTokens = m.GeneratedTokens,
                PrefillTokensPerSecond = EngineMetrics.Rate(m.PrefillTokens, m.PrefillStepSeconds),
                DecodeTokensPerSecond = EngineMetrics.Rate(m.DecodeOnlyTokens, m.DecodeOnlyStepSeconds),
                TimeToFirstToken = m.TimeToFirstToken.Summarize(),
                InterTokenLatency = m.InterTokenLatency.Summarize(),
                TimeToFirstTokenHistogram = m.TimeToFirstToken.Histogram(),
                InterTokenLatencyHistogram = m.InterTokenLatency.Histogram(),
                BatchSizeHistogram = m.BatchSizeHistogram.ToArray(),
                KvCache = _pool.Usage,
                PrefixCacheQueryTokens = _kv.PrefixQueryTokens,
                PrefixCacheHitTokens = _kv.PrefixHitTokens,
                Evictions = _pool.Evictions,
                Preemptions = _scheduler.Preemptions,
                RunningRequests = _scheduler.Running.Count,
                WaitingRequests = _scheduler.Waiting.Count,
                CompletedRequests = m.Completed,
                CancelledRequests = m.Cancelled,
                FailedRequests = m.Failed,
                RejectedRequests = m.Rejected,
            };
        }
    }

    /// <summary>The log-probability of each prompt token under the logits after the token before it: row j of a chunk that
    /// starts at position s predicts prompt token s + j + 1. A position already scored (a prompt computed again after a
    /// preemption) is not scored twice.</summary>
    private static void AddPromptLogprobs(PreparedRequest request, int start, float[][] rows)
    {
        var scored = request.PromptLogprobs!;
        var prompt = request.Request.PromptTokenIds;
        int top = request.Request.PromptLogprobs!.Value;
        for (int j = 0; j < rows.Length; j++)
        {
            int next = start + j + 1;
            if (next == scored.Count + 1 && next < prompt.Count)
                scored.Add(TokenLogprobs.Compute(rows[j], prompt[next], top));
        }
    }

    private RequestEvent Deliver(PreparedRequest request, int token, TokenLogprobs? logprobs, long now)
    {
        var sequence = request.Sequence;
        _scheduler.AppendToken(sequence, token);
        _metrics.GeneratedTokens++;
        if (sequence.OutputLength == 1)
        {
            request.TimeToFirstToken = Stopwatch.GetElapsedTime(request.ArrivalTimestamp, now);
            _metrics.TimeToFirstToken.Add(request.TimeToFirstToken.Value.TotalMilliseconds);
        }
        else
        {
            _metrics.InterTokenLatency.Add(Stopwatch.GetElapsedTime(request.LastTokenTimestamp, now).TotalMilliseconds);
        }
        request.LastTokenTimestamp = now;
        if (logprobs is not null)
            request.Logprobs!.Add(logprobs);

        var r = request.Request;
        FinishReason? reason =
            r.StopTokenIds.Contains(token) || (!r.IgnoreEos && r.EosTokenIds.Contains(token)) ? FinishReason.Stop
            : sequence.OutputLength >= sequence.MaxNewTokens ? FinishReason.Length
            : null;
        var generated = new GeneratedToken(request.Id, token, sequence.OutputLength - 1, reason, logprobs)
        {
            PromptLogprobs = sequence.OutputLength == 1 ? request.PromptLogprobs : null,
        };
        return new RequestEvent(request.Id, generated, reason is { } why ? Finish(request, why, null) : null);
    }

    private Completion Finish(PreparedRequest request, FinishReason reason, string? error)
    {
        var sequence = request.Sequence;
        _scheduler.Finish(sequence);
        _active.Remove(request.Id);
        switch (reason)
        {
            case FinishReason.Cancelled: _metrics.Cancelled++; break;
            case FinishReason.Error: _metrics.Failed++; break;
            default: _metrics.Completed++; break;
        }
        var output = new int[sequence.OutputLength];
        for (int i = 0; i < output.Length; i++)
            output[i] = sequence.Tokens[sequence.PromptLength + i];
        var usage = new CompletionUsage(sequence.PromptLength, output.Length, sequence.NumCachedPromptTokens, sequence.NumPreemptions, request.TimeToFirstToken);
        return new Completion(request.Id, output, reason, usage, error) { Logprobs = request.Logprobs, PromptLogprobs = request.PromptLogprobs };
    }

    private void CheckResult(SchedulerStep step, StepResult? result)
    {
        var logits = result?.Logits;
        if (logits is null || logits.Length != step.Chunks.Count)
            throw new InvalidOperationException(
                $"The model runner returned {logits?.Length.ToString() ?? "null"} logits arrays for {step.Chunks.Count} chunks.");
        if (result!.Tokens is { } tokens && tokens.Length != step.Chunks.Count)
            throw new InvalidOperationException($"The model runner returned {tokens.Length} tokens for {step.Chunks.Count} chunks.");
        for (int i = 0; i < logits.Length; i++)
        {
            if (result.TokenAt(i) is { } token)
            {
                // Only a greedy chunk may come back as a token (the range is checked with every sampled token).
                if (!step.Batch.Chunks[i].GreedyToken)
                    throw new InvalidOperationException($"The model runner picked token {token} for chunk {i} ({step.Chunks[i].Sequence.DisplayName}), which asked for its logits.");
            }
            else if (step.Chunks[i].WantLogits && (logits[i] is null || logits[i]!.Length != _runner.VocabSize))
            {
                throw new InvalidOperationException(
                    $"The model runner returned {(logits[i] is null ? "no logits" : $"{logits[i]!.Length} logits")} for chunk {i} ({step.Chunks[i].Sequence.DisplayName}); expected {_runner.VocabSize}.");
            }
            var chunk = step.Batch.Chunks[i];
            if (chunk.AllLogits && (result.AllLogits?[i] is not { } rows || rows.Length != chunk.TokenIds.Length || rows.Any(r => r?.Length != _runner.VocabSize)))
                throw new InvalidOperationException(
                    $"The model runner did not return a logits row of {_runner.VocabSize} for each of the {chunk.TokenIds.Length} tokens of chunk {i} ({step.Chunks[i].Sequence.DisplayName}), which asked for all of them.");
        }
    }
}
