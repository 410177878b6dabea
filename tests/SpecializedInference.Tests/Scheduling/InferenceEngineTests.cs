using SpecializedInference.Engine;
using SpecializedInference.KvCache;
using SpecializedInference.Runtime;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Tests.Scheduling;

/// <summary>The threaded engine API over the fake runner.</summary>
public sealed class InferenceEngineTests
{
    private const int Vocab = 32;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static int[] Prompt(int length, int seed) =>
        Enumerable.Range(0, length).Select(i => (i * 5 + seed * 11 + i * i * 3) % Vocab).ToArray();

    // Prompts of varied lengths; some share a long prefix (prefix-cache hits).
    private static readonly GenerationRequest[] Workload = Enumerable.Range(0, 10).Select(i => new GenerationRequest(
        i % 3 == 0 ? Prompt(17, 99).Concat(Prompt(1 + i, i)).ToArray() : Prompt(3 + 2 * i, i),
        MaxNewTokens: 4 + i % 5) { Name = $"w{i}" }).ToArray();

    private static List<int> Reference(GenerationRequest r) => FakeModelRunner.GreedyReference(r.PromptTokenIds, r.MaxNewTokens, Vocab);

    /// <summary>Fails the step if a chunk writes a block that is shared or prefix-cached.</summary>
    private static void AssertWritesArePrivate(BlockPool pool, StepBatch batch, bool cachingOn)
    {
        foreach (var chunk in batch.Chunks)
            for (int p = chunk.StartPosition; p < chunk.ContextLength; p++)
            {
                int b = chunk.BlockTable[p / pool.BlockSize];
                if (pool.RefCount(b) != 1 || (cachingOn && pool.IsHashed(b)))
                    throw new InvalidOperationException($"Sequence {chunk.SequenceId} writes position {p} into shared/cached block {b}.");
            }
    }

    private static InferenceEngine Make(FakeModelRunner runner, EngineOptions options, TokenSamplerFactory? sampler = null)
    {
        var engine = new InferenceEngine(runner, options, sampler);
        var pool = engine.Core.Pool;
        var previous = runner.BeforeExecute;
        runner.BeforeExecute = batch =>
        {
            AssertWritesArePrivate(pool, batch, options.UseKvCache && options.EnablePrefixCaching);
            previous?.Invoke(batch);
        };
        return engine;
    }

    public static TheoryData<string> Configurations => new() { "default", "tiny pool", "tiny budget", "no kv cache", "no batching", "greedy picked by the runner" };

    private static (FakeModelRunner Runner, EngineOptions Options) Configuration(string name) => name switch
    {
        "default" => (new FakeModelRunner(64, 4, Vocab), new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 64 }),
        // The largest request needs 10 blocks of 4 (prompt 27 + 8 new - 1): room for barely one at a time.
        "tiny pool" => (new FakeModelRunner(11, 4, Vocab), new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 64 }),
        "tiny budget" => (new FakeModelRunner(64, 4, Vocab), new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 5 }),
        "no kv cache" => (new FakeModelRunner(64, 4, Vocab), new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 64, UseKvCache = false }),
        "no batching" => (new FakeModelRunner(64, 4, Vocab), new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 64, UseBatching = false }),
        "greedy picked by the runner" => (new FakeModelRunner(11, 4, Vocab) { PicksGreedyTokens = true }, new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 5 }),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Configurations))]
    public async Task Requests_submitted_together_from_many_threads_give_the_tokens_each_gives_alone(string configuration)
    {
        // Alone: one engine, one request at a time.
        var (aloneRunner, aloneOptions) = Configuration(configuration);
        var alone = new List<IReadOnlyList<int>>();
        await using (var engine = Make(aloneRunner, aloneOptions))
            foreach (var request in Workload)
                alone.Add((await engine.GenerateAsync(request).WaitAsync(Timeout)).Tokens);

        // Together: all at once, from thread-pool threads.
        var (runner, options) = Configuration(configuration);
        Completion[] together;
        EngineStatistics stats;
        await using (var engine = Make(runner, options))
        {
            together = await Task.WhenAll(Workload.Select(r => Task.Run(() => engine.GenerateAsync(r)))).WaitAsync(Timeout);
            stats = engine.Snapshot();
        }

        for (int i = 0; i < Workload.Length; i++)
        {
            Assert.Equal(Reference(Workload[i]), alone[i]);
            Assert.Equal(Reference(Workload[i]), together[i].Tokens);
            Assert.Equal(FinishReason.Length, together[i].FinishReason);
        }
        Assert.Equal(0, stats.KvCache.UsedBlocks);
        Assert.Equal(Workload.Length, stats.CompletedRequests);

        var chunks = runner.Batches.SelectMany(b => b.Chunks).ToList();
        switch (configuration)
        {
            case "default":
                Assert.Contains(runner.Batches, b => b.Chunks.Count > 1);
                Assert.True(stats.PrefixCacheHitTokens > 0);
                break;
            case "tiny pool":
                Assert.True(stats.Preemptions > 0, "The tiny pool should force preemption.");
                break;
            case "tiny budget":
                Assert.Contains(chunks, c => !c.WantLogits); // a prompt was split into chunks
                Assert.All(runner.Batches, b => Assert.True(b.Chunks.Sum(c => c.TokenIds.Length) <= 5));
                break;
            case "no kv cache":
                Assert.All(chunks, c => Assert.Equal(0, c.StartPosition));
                Assert.Equal(0, stats.PrefixCacheHitTokens);
                Assert.True(stats.RecomputedTokens > 0);
                break;
            case "no batching":
                Assert.All(runner.Batches, b => Assert.Single(b.Chunks));
                break;
            case "greedy picked by the runner":
                // Every request is greedy: each chunk that ends its prompt or decodes asks for a token, and the runner
                // picked every token, across preemptions and split prompts.
                Assert.All(chunks, c => Assert.Equal(c.WantLogits, c.GreedyToken));
                Assert.Equal(stats.GeneratedTokens, runner.PickedTokens);
                Assert.True(stats.Preemptions > 0);
                break;
        }
    }

    [Fact]
    public async Task Streaming_yields_tokens_in_order_and_marks_the_last()
    {
        await using var engine = Make(new FakeModelRunner(64, 4, Vocab), new EngineOptions());
        var request = new GenerationRequest(Prompt(9, 1), 7);
        var tokens = new List<GeneratedToken>();
        await foreach (var t in engine.StreamAsync(request))
            tokens.Add(t);
        Assert.Equal(Reference(request), tokens.Select(t => t.TokenId));
        Assert.Equal(Enumerable.Range(0, 7), tokens.Select(t => t.Index));
        Assert.All(tokens.SkipLast(1), t => Assert.Null(t.FinishReason));
        Assert.Equal(FinishReason.Length, tokens[^1].FinishReason);
    }

    [Fact]
    public async Task Eos_stops_unless_ignored_and_stop_tokens_always_stop()
    {
        await using var engine = Make(new FakeModelRunner(64, 4, Vocab), new EngineOptions());
        var prompt = Prompt(6, 2);
        var full = FakeModelRunner.GreedyReference(prompt, 12, Vocab);
        int third = full[2];
        int firstIndex = full.IndexOf(third); // the first time that token appears

        var eos = await engine.GenerateAsync(new GenerationRequest(prompt, 12) { EosTokenIds = [third] });
        Assert.Equal(FinishReason.Stop, eos.FinishReason);
        Assert.Equal(full.Take(firstIndex + 1), eos.Tokens); // the EOS token is the last token

        var ignored = await engine.GenerateAsync(new GenerationRequest(prompt, 12) { EosTokenIds = [third], IgnoreEos = true });
        Assert.Equal(FinishReason.Length, ignored.FinishReason);
        Assert.Equal(full, ignored.Tokens);

        var stop = await engine.GenerateAsync(new GenerationRequest(prompt, 12) { StopTokenIds = [third], IgnoreEos = true });
        Assert.Equal(FinishReason.Stop, stop.FinishReason);
        Assert.Equal(full.Take(firstIndex + 1), stop.Tokens);
    }

    [Fact]
    public async Task Same_40_token_prompt_twice_the_second_hits_the_prefix_cache_and_gives_the_same_tokens()
    {
        await using var engine = Make(new FakeModelRunner(64, 8, Vocab), new EngineOptions());
        var request = new GenerationRequest(Prompt(40, 3), 10);
        var first = await engine.GenerateAsync(request);
        var second = await engine.GenerateAsync(request);
        Assert.Equal(Reference(request), first.Tokens);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.Equal(0, first.Usage.CachedPromptTokens);
        Assert.Equal(39, second.Usage.CachedPromptTokens); // 5 full blocks; the last token reruns in a copied block
        var stats = engine.Snapshot();
        Assert.Equal(39, stats.PrefixCacheHitTokens);
        Assert.Equal(80, stats.PrefixCacheQueryTokens);
        Assert.Equal(39.0 / 80, stats.PrefixCacheHitRate, 12);
        Assert.Equal(41, stats.PrefixCacheMissTokens);
    }

    /// <summary>
    /// The runner sleeps 1 ms a step and holds step <paramref name="step"/> until <paramref name="released"/> is set (at
    /// most <see cref="Timeout"/>): a test that acts on the stream mid-way (cancels, submits a second request) then
    /// acts while the request still runs, however late its reader is scheduled.
    /// </summary>
    private static FakeModelRunner HeldAtStep(FakeModelRunner runner, int step, ManualResetEventSlim released)
    {
        int steps = 0;
        runner.BeforeExecute = _ =>
        {
            if (++steps == step) released.Wait(Timeout);
            Thread.Sleep(1);
        };
        return runner;
    }

    [Fact]
    public async Task Same_prompt_while_the_first_is_still_decoding_shares_blocks_without_changing_the_first()
    {
        // The engine holds its sixth step until the second request is in, so the first is still decoding then,
        // however late the reader is scheduled.
        var secondSubmitted = new ManualResetEventSlim();
        var runner = HeldAtStep(new FakeModelRunner(64, 8, Vocab), 6, secondSubmitted);
        await using var engine = Make(runner, new EngineOptions());
        var request = new GenerationRequest(Prompt(40, 4), 30);
        var firstTokens = new List<int>();
        Task<Completion>? second = null;
        await foreach (var t in engine.StreamAsync(request).WithCancellation(new CancellationTokenSource(Timeout).Token))
        {
            firstTokens.Add(t.TokenId);
            if (t.Index == 2)
            {
                second = engine.GenerateAsync(request);
                secondSubmitted.Set();
            }
        }
        var secondCompletion = await second!.WaitAsync(Timeout);
        Assert.Equal(Reference(request), firstTokens);
        Assert.Equal(Reference(request), secondCompletion.Tokens);
        Assert.True(secondCompletion.Usage.CachedPromptTokens >= 39);
        Assert.Contains(runner.Batches, b => b.BlockCopies.Count == 1);
    }

    [Fact]
    public async Task Cancelling_a_stream_mid_way_frees_every_block_of_the_request()
    {
        // The engine holds its fifth step until the reader has cancelled (as in the early-reader test): a reader
        // scheduled late under load would otherwise find the request already finished.
        var readerCancelled = new ManualResetEventSlim();
        var runner = HeldAtStep(new FakeModelRunner(64, 4, Vocab), 5, readerCancelled);
        await using var engine = Make(runner, new EngineOptions());
        var before = engine.Snapshot().KvCache;
        using var cts = new CancellationTokenSource();
        var request = new GenerationRequest(Prompt(10, 5), 200);
        var received = new List<int>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var t in engine.StreamAsync(request, cts.Token))
            {
                received.Add(t.TokenId);
                if (received.Count == 3)
                {
                    cts.Cancel();
                    readerCancelled.Set();
                }
            }
        }).WaitAsync(Timeout);

        // The engine frees the blocks before it tells the reader.
        var after = engine.Snapshot();
        Assert.Equal(before.UsedBlocks, after.KvCache.UsedBlocks);
        Assert.Equal(after.KvCache.TotalBlocks, after.KvCache.FreeBlocks + after.KvCache.CachedBlocks);
        Assert.Equal(0, after.RunningRequests + after.WaitingRequests);
        Assert.Equal(1, after.CancelledRequests);
        Assert.True(received.Count < 200);
        Assert.Equal(Reference(request).Take(received.Count), received);
    }

    [Fact]
    public async Task Cancelling_generate_returns_the_tokens_so_far_and_other_requests_are_unaffected()
    {
        // The engine holds its tenth step until the cancellation, so the long request is still running then.
        var cancelledNow = new ManualResetEventSlim();
        var runner = HeldAtStep(new FakeModelRunner(256, 4, Vocab), 10, cancelledNow);
        await using var engine = Make(runner, new EngineOptions());
        using var cts = new CancellationTokenSource();
        var longRequest = new GenerationRequest(Prompt(8, 6), 300);
        var other = new GenerationRequest(Prompt(8, 7), 20);
        var cancelled = engine.GenerateAsync(longRequest, cts.Token);
        var unaffected = engine.GenerateAsync(other);
        await Task.Delay(20);
        cts.Cancel();
        cancelledNow.Set();
        var completion = await cancelled.WaitAsync(Timeout);
        Assert.Equal(FinishReason.Cancelled, completion.FinishReason);
        Assert.Equal(Reference(longRequest).Take(completion.Tokens.Count), completion.Tokens);
        Assert.Equal(Reference(other), (await unaffected.WaitAsync(Timeout)).Tokens);
        Assert.Equal(0, engine.Snapshot().KvCache.UsedBlocks);

        // An already-cancelled token: nothing runs.
        var none = await engine.GenerateAsync(longRequest, new CancellationToken(true)).WaitAsync(Timeout);
        Assert.Equal(FinishReason.Cancelled, none.FinishReason);
        Assert.Empty(none.Tokens);
    }

    [Fact]
    public async Task A_reader_that_stops_early_cancels_its_request()
    {
        // The engine holds its fourth step until the reader has left the loop: under load a reader that is scheduled
        // late would otherwise find all 500 tokens already generated, and nothing left to cancel.
        var readerLeft = new ManualResetEventSlim();
        var runner = HeldAtStep(new FakeModelRunner(256, 4, Vocab), 4, readerLeft);
        await using var engine = Make(runner, new EngineOptions());
        await foreach (var t in engine.StreamAsync(new GenerationRequest(Prompt(5, 8), 500)))
            if (t.Index == 1)
                break;
        readerLeft.Set();
        var deadline = DateTime.UtcNow + Timeout;
        while (engine.Snapshot() is { CancelledRequests: 0 } && DateTime.UtcNow < deadline)
            await Task.Delay(5);
        var stats = engine.Snapshot();
        Assert.Equal(1, stats.CancelledRequests);
        Assert.Equal(0, stats.KvCache.UsedBlocks);
    }

    [Fact]
    public async Task Disposing_the_engine_ends_every_outstanding_request()
    {
        int steps = 0;
        var running = new TaskCompletionSource();
        var runner = new FakeModelRunner(256, 4, Vocab)
        {
            BeforeExecute = _ =>
            {
                if (++steps == 5) running.TrySetResult();
                Thread.Sleep(2);
            },
        };
        var engine = Make(runner, new EngineOptions { MaxBatchSize = 3 }); // most requests stay waiting
        var streams = Enumerable.Range(0, 3).Select(i => Task.Run(async () =>
        {
            await foreach (var t in engine.StreamAsync(new GenerationRequest(Prompt(7, 10 + i), 400))) { }
        })).ToList();
        var generations = Enumerable.Range(0, 6).Select(i => engine.GenerateAsync(new GenerationRequest(Prompt(6, i), 400))).ToList();
        await running.Task.WaitAsync(Timeout);

        await engine.DisposeAsync().AsTask().WaitAsync(Timeout);

        foreach (var g in generations)
        {
            var c = await g.WaitAsync(Timeout);
            Assert.Equal(FinishReason.Cancelled, c.FinishReason);
            Assert.Contains("disposed", c.Error);
        }
        foreach (var s in streams)
            await Assert.ThrowsAsync<ObjectDisposedException>(() => s.WaitAsync(Timeout));
        Assert.True(runner.Disposed);
        Assert.Throws<ObjectDisposedException>(() => { _ = engine.GenerateAsync(new GenerationRequest(Prompt(3, 1), 2)); });
        engine.Dispose(); // twice is fine
    }

    [Fact]
    public async Task Submissions_racing_with_dispose_either_fail_at_once_or_complete()
    {
        var runner = new FakeModelRunner(512, 4, Vocab) { BeforeExecute = _ => Thread.SpinWait(2000) };
        var engine = Make(runner, new EngineOptions { MaxBatchSize = 4 });
        using var go = new ManualResetEventSlim();
        var submitters = Enumerable.Range(0, 4).Select(t => Task.Run(() =>
        {
            var accepted = new List<Task<Completion>>();
            int refused = 0;
            go.Wait();
            for (int i = 0; i < 200; i++)
            {
                try
                {
                    accepted.Add(engine.GenerateAsync(new GenerationRequest(Prompt(3 + i % 5, t * 1000 + i), 1 + i % 7)));
                }
                catch (ObjectDisposedException)
                {
                    refused++;
                }
            }
            return (accepted, refused);
        })).ToList();
        go.Set();
        await Task.Delay(5);
        engine.Dispose();
        foreach (var (accepted, _) in await Task.WhenAll(submitters).WaitAsync(Timeout))
            foreach (var completion in await Task.WhenAll(accepted).WaitAsync(Timeout))
                Assert.True(completion.FinishReason is FinishReason.Length or FinishReason.Cancelled, completion.FinishReason.ToString());
        Assert.True(runner.Disposed);
    }

    [Fact]
    public async Task Bad_requests_are_rejected_at_once_naming_the_request_and_the_limit_without_harming_others()
    {
        await using var engine = Make(new FakeModelRunner(16, 4, Vocab, maxSeqLen: 100), new EngineOptions { MaxBatchSize = 4 });
        var good = Workload.Take(4).Select(r => engine.GenerateAsync(r)).ToList();

        void Rejected(GenerationRequest request, params string[] expected)
        {
            var e = Assert.Throws<RequestRejectedException>(() => { _ = engine.GenerateAsync(request); });
            foreach (var text in expected)
                Assert.Contains(text, e.Message);
            Assert.Throws<RequestRejectedException>(() => engine.StreamAsync(request));
        }
        Rejected(new GenerationRequest([], 5) { Name = "empty" }, "request 'empty'", "empty prompt");
        Rejected(new GenerationRequest(Prompt(4, 1), 0) { Name = "zero" }, "request 'zero'", "max_new_tokens = 0");
        Rejected(new GenerationRequest(Prompt(4, 1), -2) { Name = "negative" }, "max_new_tokens = -2");
        Rejected(new GenerationRequest(Prompt(90, 1), 20) { Name = "long" }, "request 'long'", "110 positions", "max_seq_len is 100");
        Rejected(new GenerationRequest(Prompt(60, 1), 20) { Name = "pool" }, "request 'pool'", "20 KV blocks", "whole pool has 16 blocks");
        Rejected(new GenerationRequest([1, 2, Vocab + 5], 3) { Name = "vocab" }, "token id 37 at index 2", $"[0, {Vocab})");
        Rejected(new GenerationRequest(Prompt(4, 1), 3) { Name = "sampling", Sampling = new SamplingParams { Temperature = 0.8 } }, "request 'sampling'", "greedy decoding only");

        var completions = await Task.WhenAll(good).WaitAsync(Timeout);
        for (int i = 0; i < completions.Length; i++)
            Assert.Equal(Reference(Workload[i]), completions[i].Tokens);
        var stats = engine.Snapshot();
        Assert.Equal(14, stats.RejectedRequests);
        Assert.Equal(4, stats.CompletedRequests);
    }

    [Fact]
    public async Task A_runner_failure_fails_the_requests_of_that_step_and_the_engine_keeps_serving()
    {
        // A prompt starting 30, 30, 30 makes the runner throw.
        var runner = new FakeModelRunner(64, 4, Vocab)
        {
            BeforeExecute = b =>
            {
                if (b.Chunks.Any(c => c.StartPosition == 0 && c.TokenIds.Take(3).SequenceEqual([30, 30, 30])))
                    throw new InvalidOperationException("device fault (test)");
            },
        };
        await using var engine = Make(runner, new EngineOptions { UseBatching = false });
        var bad = new GenerationRequest([30, 30, 30, 1], 3) { Name = "poisoned" };
        var goodRequest = new GenerationRequest(Prompt(6, 9), 5);
        var failed = engine.GenerateAsync(bad);
        var fine = engine.GenerateAsync(goodRequest);
        var failure = await failed.WaitAsync(Timeout);
        Assert.Equal(FinishReason.Error, failure.FinishReason);
        Assert.Contains("request 'poisoned'", failure.Error);
        Assert.Contains("device fault (test)", failure.Error);
        var ex = await Assert.ThrowsAsync<InferenceRequestException>(async () =>
        {
            await foreach (var _ in engine.StreamAsync(bad)) { }
        }).WaitAsync(Timeout);
        Assert.Contains("device fault", ex.Message);
        Assert.Equal(FakeModelRunner.GreedyReference(goodRequest.PromptTokenIds, 5, Vocab), (await fine.WaitAsync(Timeout)).Tokens);
        var stats = engine.Snapshot();
        Assert.Equal(2, stats.FailedRequests);
        Assert.Equal(0, stats.KvCache.UsedBlocks);
    }

    [Fact]
    public async Task Statistics_are_measured_per_token_and_per_step()
    {
        var runner = new FakeModelRunner(128, 4, Vocab);
        var requests = Enumerable.Range(0, 6).Select(i => new GenerationRequest([i, .. Prompt(4 + i, 40 + i)], 3 + i)).ToArray();
        await using var engine = Make(runner, new EngineOptions { MaxBatchSize = 4, EnablePrefixCaching = false });
        var completions = await Task.WhenAll(requests.Select(r => engine.GenerateAsync(r))).WaitAsync(Timeout);
        var s = engine.Snapshot();

        int generated = completions.Sum(c => c.Tokens.Count);
        Assert.Equal(generated, s.GeneratedTokens);
        Assert.Equal(requests.Sum(r => r.PromptTokenIds.Count), s.PrefillTokens);
        Assert.Equal(generated - requests.Length, s.DecodeTokens); // the first token of each comes from its prefill
        Assert.Equal(0, s.RecomputedTokens);
        Assert.Equal(runner.Batches.Count, s.Steps);
        Assert.Equal(s.Steps, s.BatchSizeHistogram.Sum());
        for (int n = 0; n < s.BatchSizeHistogram.Count; n++)
            Assert.Equal(runner.Batches.Count(b => b.Chunks.Count == n), s.BatchSizeHistogram[n]);
        Assert.Equal(requests.Length, s.TimeToFirstToken.Count);
        Assert.Equal(generated - requests.Length, s.InterTokenLatency.Count);
        Assert.True(s.TimeToFirstToken.P50Ms <= s.TimeToFirstToken.P95Ms && s.TimeToFirstToken.P95Ms <= s.TimeToFirstToken.MaxMs);
        Assert.True(s.InterTokenLatency.P50Ms <= s.InterTokenLatency.P95Ms);
        Assert.True(s.StepSeconds > 0 && s.PrefillTokensPerSecond > 0 && s.DecodeTokensPerSecond > 0);
        Assert.All(completions, c => Assert.NotNull(c.Usage.TimeToFirstToken));
        Assert.Equal(0, s.KvCache.UsedBlocks);
        Assert.Equal(s.KvCache.TotalBlocks, s.KvCache.FreeBlocks + s.KvCache.CachedBlocks);
        Assert.Equal(0, s.PrefixCacheQueryTokens);
        Assert.Equal(6, s.CompletedRequests);
    }

    [Fact]
    public async Task The_sampler_is_pluggable_one_instance_per_request()
    {
        int created = 0;
        TokenSamplerFactory argMin = p =>
        {
            Interlocked.Increment(ref created);
            return new ArgMinSampler();
        };
        await using var engine = Make(new FakeModelRunner(64, 4, Vocab), new EngineOptions(), argMin);
        var prompt = Prompt(5, 12);
        var completions = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ =>
            engine.GenerateAsync(new GenerationRequest(prompt, 6) { Sampling = new SamplingParams { Temperature = 0.7, Seed = 1 } })));

        var history = new List<int>(prompt);
        for (int i = 0; i < 6; i++)
        {
            var logits = FakeModelRunner.Logits(history.ToArray(), Vocab);
            history.Add(Array.IndexOf(logits, logits.Min()));
        }
        Assert.All(completions, c => Assert.Equal(history.Skip(5), c.Tokens));
        Assert.Equal(3, created);
    }

    /// <summary>Greedy and seeded requests together: only the greedy ones' chunks ask the runner for a token, and every
    /// request gets the tokens it gets from a runner that returns logits only.</summary>
    [Fact]
    public async Task Only_greedy_requests_take_the_token_the_runner_picks()
    {
        var requests = Workload.Select((r, i) => i % 2 == 0 ? r : r with { Sampling = new SamplingParams { Temperature = 0.9, TopK = 8, Seed = (ulong)i } }).ToArray();
        var results = new List<IReadOnlyList<int>[]>();
        foreach (bool picks in new[] { false, true })
        {
            var runner = new FakeModelRunner(64, 4, Vocab) { PicksGreedyTokens = picks };
            await using var engine = Make(runner, new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 64 }, SpecializedInference.Sampling.EngineSamplers.Factory);
            var completions = await Task.WhenAll(requests.Select(r => engine.GenerateAsync(r))).WaitAsync(Timeout);
            results.Add(completions.Select(c => c.Tokens).ToArray());
            var greedyIds = runner.Batches.SelectMany(b => b.Chunks).Where(c => c.GreedyToken).Select(c => c.SequenceId).ToHashSet();
            Assert.Equal(requests.Where(r => r.Sampling.IsGreedy).Sum(r => r.MaxNewTokens), picks ? runner.PickedTokens : runner.Batches.SelectMany(b => b.Chunks).Count(c => c.GreedyToken));
            Assert.Equal(requests.Count(r => r.Sampling.IsGreedy), greedyIds.Count);
        }

        Assert.Equal(results[0], results[1]);
        for (int i = 0; i < requests.Length; i += 2) Assert.Equal(Reference(requests[i]), results[1][i]);
    }

    /// <summary>A runner that returns a token for a chunk that asked for its logits fails that step's requests.</summary>
    [Fact]
    public async Task A_token_for_a_chunk_that_wanted_logits_fails_the_step()
    {
        await using var engine = new InferenceEngine(new WrongPicks(), new EngineOptions(), SpecializedInference.Sampling.EngineSamplers.Factory);
        var completion = await engine.GenerateAsync(new GenerationRequest(Prompt(5, 3), 3) { Sampling = new SamplingParams { Temperature = 1, Seed = 5 } }).WaitAsync(Timeout);
        Assert.Equal(FinishReason.Error, completion.FinishReason);
        Assert.Contains("picked token 7", completion.Error);
        Assert.Contains("which asked for its logits", completion.Error);
    }

    private sealed class WrongPicks : IModelRunner
    {
        private readonly FakeModelRunner _inner = new(64, 4, Vocab);

        public int BlockSize => _inner.BlockSize;

        public int NumBlocks => _inner.NumBlocks;

        public int VocabSize => _inner.VocabSize;

        public int MaxSeqLen => _inner.MaxSeqLen;

        public float[]?[] Execute(StepBatch batch) => _inner.Execute(batch);

        public StepResult Run(StepBatch batch) => new(new float[]?[batch.Chunks.Count], Enumerable.Repeat(7, batch.Chunks.Count).ToArray());

        public void Dispose() => _inner.Dispose();
    }

    [Fact]
    public async Task Factories_build_the_runner_from_the_options_or_a_checkpoint_directory()
    {
        FakeModelRunner? built = null;
        int builtOnThread = -1;
        await using (var engine = InferenceEngine.Create(o =>
        {
            builtOnThread = Environment.CurrentManagedThreadId;
            return built = new FakeModelRunner(o.KvBlocks ?? 8, 4, Vocab);
        }, new EngineOptions { KvBlocks = 12 }))
        {
            Assert.Equal(12, engine.NumBlocks);
            Assert.Equal(Reference(Workload[1]), (await engine.GenerateAsync(Workload[1])).Tokens);
        }
        Assert.True(built!.Disposed);
        Assert.Equal(builtOnThread, built.ExecutingThreadId); // built where it runs: the engine thread
        Assert.NotEqual(Environment.CurrentManagedThreadId, builtOnThread);

        string? loadedFrom = null;
        var dir = Path.GetTempPath();
        await using (var engine = InferenceEngine.FromCheckpoint(dir, new EngineOptions(), (d, _) => { loadedFrom = d; return new FakeModelRunner(8, 4, Vocab); }))
            Assert.Equal(8, engine.NumBlocks);
        Assert.Equal(dir, loadedFrom);
        Assert.Throws<DirectoryNotFoundException>(() => InferenceEngine.FromCheckpoint(Path.Combine(dir, "no-such-checkpoint-" + Guid.NewGuid()),
            new EngineOptions(), (_, _) => throw new InvalidOperationException("not called")));
        var tooMany = new FakeModelRunner(8, 4, Vocab);
        Assert.Throws<ArgumentOutOfRangeException>(() => InferenceEngine.Create(_ => tooMany, new EngineOptions { KvBlocks = 9 }));
        Assert.True(tooMany.Disposed);
    }

    private sealed class ArgMinSampler : ITokenSampler
    {
        public int Sample(ReadOnlySpan<float> logits)
        {
            int best = 0;
            for (int i = 1; i < logits.Length; i++)
                if (logits[i] < logits[best]) best = i;
            return best;
        }
    }
}
