using SpecializedInference.Engine;
using SpecializedInference.Kernels;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Tests.Model;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Engine;

/// <summary>
/// One CPU accelerator and one f32 <see cref="LlamaModelRunner"/> over gqa-tiny, shared by the class (each
/// engine borrows the runner without owning it; kernels compile once).
/// </summary>
public sealed class GqaTinyRunnerFixture : IDisposable
{
    public const int BlockSize = 16;
    public const int Blocks = 32;
    public const int MaxSeqLen = 128;

    private readonly AcceleratorFixture _accelerator = new();
    private readonly Dictionary<(AttentionAlgorithm, HeadMapping, GreedySampling), LlamaModelRunner> _runners = new();

    public GqaTinyRunnerFixture()
    {
        Checkpoint = LlamaCheckpoint.Open(Directory);
        Prompts = ReferenceData.Load(Directory);
    }

    public static string Directory => TestPaths.HfCase("gqa-tiny");

    public LlamaCheckpoint Checkpoint { get; }

    public IReadOnlyList<ReferencePrompt> Prompts { get; }

    public LlamaModelRunner Runner => RunnerFor(AttentionAlgorithm.Flash, HeadMapping.Grouped);

    /// <summary>A runner with the use_flash_attention / use_gqa toggles and the greedy placement set as given (built on first use).</summary>
    public LlamaModelRunner RunnerFor(AttentionAlgorithm algorithm, HeadMapping heads, GreedySampling greedy = GreedySampling.Auto)
    {
        lock (_runners)
        {
            if (!_runners.TryGetValue((algorithm, heads, greedy), out var runner))
            {
                runner = new LlamaModelRunner(_accelerator.Accelerator, Checkpoint, ModelOptions.Float32 with
                {
                    KvBlockSize = BlockSize,
                    NumKvBlocks = Blocks,
                    MaxSeqLen = MaxSeqLen,
                    MaxBatchTokens = 64,
                    Algorithm = algorithm,
                    HeadMapping = heads,
                    GreedySampling = greedy,
                });
                _runners.Add((algorithm, heads, greedy), runner);
            }
            return runner;
        }
    }

    public void Dispose()
    {
        foreach (var runner in _runners.Values)
            runner.Dispose();
        Checkpoint.Dispose();
        _accelerator.Dispose();
    }
}

/// <summary>
/// The threaded engine over the real model runner (CPU accelerator, f32 weights and KV cache): every scheduling
/// configuration must give exactly Hugging Face's greedy continuations of gqa-tiny's reference prompts.
/// </summary>
[CiSeconds(85)]
public sealed class RealModelEngineTests(GqaTinyRunnerFixture fixture, ITestOutputHelper output) : IClassFixture<GqaTinyRunnerFixture>
{
    private const int NewTokens = 16;
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(2);

    private InferenceEngine Engine(EngineOptions options, IModelRunner? runner = null) =>
        new(runner ?? fixture.Runner, options, EngineSamplers.Factory, ownsRunner: false);

    private GenerationRequest[] ReferenceRequests() => fixture.Prompts.Select((p, i) => new GenerationRequest(p.Prompt, NewTokens)
    {
        IgnoreEos = true,
        EosTokenIds = fixture.Checkpoint.EosTokenIds,
        Name = $"gqa-tiny prompt {i}",
    }).ToArray();

    /// <summary>Submits the three reference prompts together and checks each against the HF greedy tokens.</summary>
    private async Task<EngineStatistics> AssertReferenceTokens(EngineOptions options, IModelRunner? runner = null)
    {
        await using var engine = Engine(options, runner);
        var requests = ReferenceRequests();
        var completions = await Task.WhenAll(requests.Select(r => Task.Run(() => engine.GenerateAsync(r)))).WaitAsync(Timeout);
        var stats = engine.Snapshot();
        output.WriteLine($"{options}: steps {stats.Steps}, preemptions {stats.Preemptions}, batch sizes [{string.Join(", ", stats.BatchSizeHistogram)}], prefill tokens {stats.PrefillTokens}");
        for (int i = 0; i < requests.Length; i++)
        {
            Assert.True(FinishReason.Length == completions[i].FinishReason, $"{requests[i].Name}: {completions[i].FinishReason} {completions[i].Error}");
            Assert.True(fixture.Prompts[i].Greedy.SequenceEqual(completions[i].Tokens),
                $"{requests[i].Name}: got [{string.Join(", ", completions[i].Tokens)}], Hugging Face greedy [{string.Join(", ", fixture.Prompts[i].Greedy)}]");
        }
        Assert.Equal(stats.KvCache.TotalBlocks, stats.KvCache.FreeBlocks + stats.KvCache.CachedBlocks);
        return stats;
    }

    [Fact]
    public async Task Three_prompts_together_give_the_Hugging_Face_greedy_tokens()
    {
        var stats = await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64 });
        Assert.Equal(3 * NewTokens, stats.GeneratedTokens);
    }

    [Fact]
    public async Task A_pool_too_small_for_all_three_preempts_and_still_gives_the_reference_tokens()
    {
        // Each sequence grows to 17..28 tokens = 2 blocks of 16; 3 blocks admit all three prompts (1 block each)
        // but cannot hold their second blocks, so decoding past position 16 must preempt.
        var stats = await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64, KvBlocks = 3 });
        Assert.True(stats.Preemptions > 0, $"expected preemptions with 3 KV blocks, got {stats.Preemptions}");
    }

    [Fact]
    public async Task Chunked_prefill_under_a_4_token_budget_gives_the_reference_tokens()
    {
        var stats = await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 3, MaxNumBatchedTokens = 4 });
        Assert.Equal(5 + 12 + 1, stats.PrefillTokens);
    }

    [Fact]
    public async Task Without_kv_cache_and_without_batching_the_reference_tokens_are_the_same()
    {
        var noCache = await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 128, UseKvCache = false });
        Assert.True(noCache.RecomputedTokens > 0);
        var noBatch = await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64, UseBatching = false });
        Assert.Equal(1, noBatch.BatchSizeHistogram.Select((n, size) => n > 0 ? size : 0).Max());
    }

    [Theory]
    [InlineData(AttentionAlgorithm.Materialized, HeadMapping.Grouped)]
    [InlineData(AttentionAlgorithm.Flash, HeadMapping.Expanded)]
    public async Task Materialized_attention_and_expanded_heads_give_the_reference_tokens(AttentionAlgorithm algorithm, HeadMapping heads)
    {
        await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64 }, fixture.RunnerFor(algorithm, heads));
    }

    /// <summary>The runner picks every greedy token on the device (the CPU accelerator's argmax kernel), through
    /// preemption and chunked prefill.</summary>
    [Fact]
    public async Task Greedy_tokens_picked_on_the_device_are_the_reference_tokens()
    {
        var runner = fixture.RunnerFor(AttentionAlgorithm.Flash, HeadMapping.Grouped, GreedySampling.Device);
        Assert.True(runner.PicksGreedyTokensOnDevice);
        var stats = await AssertReferenceTokens(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 8, KvBlocks = 3 }, runner);
        Assert.True(stats.Preemptions > 0, $"expected preemptions with 3 KV blocks, got {stats.Preemptions}");
    }

    /// <summary>Prompt and output log-probabilities through the engine, prompts prefilled 4 tokens a step, against the
    /// log-softmax of Hugging Face's float64 logits (the prompt's at each position, the first decode step's).</summary>
    [Fact]
    public async Task Prompt_logprobs_are_the_log_softmax_of_Hugging_Faces_logits()
    {
        await using var engine = Engine(new EngineOptions { MaxBatchSize = 3, MaxNumBatchedTokens = 4 });
        var requests = fixture.Prompts.Select(p => new GenerationRequest(p.Prompt, 1) { PromptLogprobs = 3, Logprobs = 3, IgnoreEos = true }).ToArray();
        var completions = await Task.WhenAll(requests.Select(r => engine.GenerateAsync(r))).WaitAsync(Timeout);
        for (int i = 0; i < requests.Length; i++)
        {
            var p = fixture.Prompts[i];
            var scored = completions[i].PromptLogprobs!;
            Assert.Equal(p.Prompt.Length - 1, scored.Count); // the 1-token prompt has none
            var rows = p.PromptLogits![..^1].Zip(p.Prompt[1..]).Append((p.StepLogits[0], p.Greedy[0]));
            var logprobs = scored.Append(completions[i].Logprobs![0]);
            foreach (var ((row, token), actual) in rows.Zip(logprobs))
            {
                double max = row.Max(), total = row.Sum(x => Math.Exp(x - max));
                double LogSoftmax(int v) => row[v] - max - Math.Log(total);
                double tolerance = 2e-4 * Math.Max(1, row.Max(Math.Abs));
                Assert.Equal(token, actual.Chosen.TokenId);
                Assert.True(Math.Abs(LogSoftmax(token) - actual.Chosen.Logprob) <= tolerance, $"prompt {i}: {actual.Chosen.Logprob} vs {LogSoftmax(token)}");
                // The top tokens are the reference's most likely, up to near-ties.
                double fourth = row.OrderDescending().ElementAt(3);
                Assert.All(actual.Top, t => Assert.True(Math.Abs(LogSoftmax(t.TokenId) - t.Logprob) <= tolerance && row[t.TokenId] >= fourth - tolerance));
            }
        }
    }

    [Fact]
    public async Task Same_40_token_prompt_twice_the_second_hits_the_prefix_cache_and_gives_the_same_tokens()
    {
        // 40 real token ids from the reference prompts (all < vocab), repeated as needed.
        var pool = fixture.Prompts.SelectMany(p => p.Prompt.Concat(p.Greedy)).ToArray();
        var prompt = Enumerable.Range(0, 40).Select(i => pool[i % pool.Length]).ToArray();
        Assert.All(prompt, id => Assert.InRange(id, 0, fixture.Runner.VocabSize - 1));
        await using var engine = Engine(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64 });
        var request = new GenerationRequest(prompt, 8) { IgnoreEos = true };
        var first = await engine.GenerateAsync(request).WaitAsync(Timeout);
        var second = await engine.GenerateAsync(request).WaitAsync(Timeout);
        Assert.Equal(FinishReason.Length, first.FinishReason);
        Assert.Equal(first.Tokens, second.Tokens);
        Assert.Equal(0, first.Usage.CachedPromptTokens);
        Assert.Equal(32, second.Usage.CachedPromptTokens); // 2 full blocks of 16
        var stats = engine.Snapshot();
        Assert.Equal(32, stats.PrefixCacheHitTokens);
        Assert.True(stats.PrefixCacheHitRate > 0);
    }

    [Fact]
    public async Task Cancelling_a_stream_mid_way_frees_every_block_of_the_request()
    {
        await using var engine = Engine(new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64 });
        var before = engine.Snapshot().KvCache;
        var p = fixture.Prompts[1];
        var request = new GenerationRequest(p.Prompt, 100) { IgnoreEos = true };
        using var cts = new CancellationTokenSource();
        var received = new List<int>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var t in engine.StreamAsync(request, cts.Token))
            {
                received.Add(t.TokenId);
                if (received.Count == 3)
                    cts.Cancel();
            }
        }).WaitAsync(Timeout);

        var after = engine.Snapshot();
        Assert.Equal(before.UsedBlocks, after.KvCache.UsedBlocks);
        Assert.Equal(0, after.KvCache.UsedBlocks);
        Assert.Equal(after.KvCache.TotalBlocks, after.KvCache.FreeBlocks + after.KvCache.CachedBlocks);
        Assert.Equal(1, after.CancelledRequests);
        Assert.InRange(received.Count, 3, 99);
        Assert.Equal(p.Greedy.Take(Math.Min(received.Count, p.Greedy.Length)), received.Take(p.Greedy.Length));
    }
}
