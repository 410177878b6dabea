using SpecializedInference.Engine;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Scheduling;
using SpecializedInference.Tests.Sampling;
using SpecializedInference.Tests.Scheduling;

namespace SpecializedInference.Tests.Engine;

/// <summary>Penalties and log-probabilities through the engine, over the fake model whose logits the tests can recompute.</summary>
public sealed class PenaltiesAndLogprobsTests
{
    private const int Vocab = 24;
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static int[] Prompt(int length, int seed) =>
        Enumerable.Range(0, length).Select(i => (i * 7 + seed * 5 + i * i) % Vocab).ToArray();

    // A pool of 9 blocks of 4 for requests of up to 8 + 24 tokens: six at once force preemptions and recomputes.
    private static InferenceEngine Engine(FakeModelRunner runner) =>
        new(runner, new EngineOptions { MaxBatchSize = 6, MaxNumBatchedTokens = 16 }, EngineSamplers.Factory);

    [Fact]
    public async Task Penalized_greedy_requests_give_the_reference_tokens_across_preemptions()
    {
        var penalties = new[]
        {
            new LogitPenalties(Repetition: 1.3), new LogitPenalties(Frequency: 0.2), new LogitPenalties(Presence: 0.15),
            new LogitPenalties(1.1, 0.1, -0.05), new LogitPenalties(Repetition: 0.8), LogitPenalties.None,
        };
        var requests = penalties.Select((p, i) => new GenerationRequest(Prompt(3 + i, i), 24)
        {
            Sampling = SamplingParams.ArgMax with { Penalties = p },
            Name = $"p{i}",
        }).ToArray();
        var runner = new FakeModelRunner(9, 4, Vocab) { PicksGreedyTokens = true };
        await using var engine = Engine(runner);
        var completions = await Task.WhenAll(requests.Select(r => engine.GenerateAsync(r))).WaitAsync(Timeout);

        Assert.True(engine.Snapshot().Preemptions > 0, "the small pool should preempt");
        for (int i = 0; i < requests.Length; i++)
            Assert.Equal(PenaltyReference.Greedy(requests[i].PromptTokenIds, 24, Vocab, penalties[i]), completions[i].Tokens);
        // The penalties change what greedy decoding picks (else this test would prove nothing).
        Assert.NotEqual(FakeModelRunner.GreedyReference(requests[0].PromptTokenIds, 24, Vocab), completions[0].Tokens);
        // Only the unpenalized request let the runner pick its tokens on the "device".
        Assert.Equal(24, runner.PickedTokens);
    }

    [Fact]
    public async Task Logprobs_are_the_log_softmax_of_the_models_logits_streamed_or_not()
    {
        var runner = new FakeModelRunner(64, 4, Vocab) { PicksGreedyTokens = true };
        await using var engine = Engine(runner);
        var prompt = Prompt(5, 3);
        var greedy = new GenerationRequest(prompt, 10) { Logprobs = 3 };
        var sampled = new GenerationRequest(prompt, 10)
        {
            Logprobs = 0,
            Sampling = new SamplingParams { Temperature = 1.5, Seed = 11, Penalties = new LogitPenalties(Frequency: 1) },
        };

        var streamed = new List<GeneratedToken>();
        await foreach (var token in engine.StreamAsync(greedy).WithCancellation(CancellationToken.None))
            streamed.Add(token);
        var completion = await engine.GenerateAsync(greedy).WaitAsync(Timeout);
        var sampledCompletion = await engine.GenerateAsync(sampled).WaitAsync(Timeout);

        Assert.Equal(FakeModelRunner.GreedyReference(prompt, 10, Vocab), completion.Tokens);
        Assert.Equal(0, runner.PickedTokens); // a request that wants log-probabilities needs the logits on the host
        Assert.Equal(completion.Logprobs!.Select(l => l.Chosen), streamed.Select(t => t.Logprobs!.Chosen));
        CheckAgainstTheModel(prompt, completion, top: 3);
        // Sampled and penalized: still the model's own distribution, before temperature and penalties.
        CheckAgainstTheModel(prompt, sampledCompletion, top: 0);
        Assert.Null((await engine.GenerateAsync(new GenerationRequest(prompt, 2)).WaitAsync(Timeout)).Logprobs);
    }

    /// <summary>
    /// Prompt log-probabilities, with a 5-token budget (prompts prefilled in several chunks) and a pool too small for all
    /// (preemption, the prompt computed again), after the same prompts ran once (their blocks are in the prefix cache,
    /// which must not be used, or the cached positions would have no logits): every prompt token after the first is
    /// scored once, against the fake model's distribution after the tokens before it.
    /// </summary>
    [Fact]
    public async Task Prompt_logprobs_score_each_prompt_token_once_through_chunks_preemption_and_a_cached_prefix()
    {
        var prompts = Enumerable.Range(0, 5).Select(i => Prompt(1 + 4 * i, i)).ToArray(); // 1 to 17 tokens
        var runner = new FakeModelRunner(10, 4, Vocab) { PicksGreedyTokens = true };
        await using var engine = new InferenceEngine(runner, new EngineOptions { MaxBatchSize = 5, MaxNumBatchedTokens = 5 }, EngineSamplers.Factory);
        await Task.WhenAll(prompts.Select(p => engine.GenerateAsync(new GenerationRequest(p, 1)))).WaitAsync(Timeout);
        Assert.True(engine.Snapshot().KvCache.CachedBlocks > 0);

        var requests = prompts.Select((p, i) => new GenerationRequest(p, 6) { PromptLogprobs = 2, Name = $"scored {i}" }).ToArray();
        var streamedFirst = new IReadOnlyList<TokenLogprobs>?[requests.Length];
        var completions = await Task.WhenAll(requests.Select(async (r, i) =>
        {
            var completion = engine.GenerateAsync(r);
            await foreach (var token in engine.StreamAsync(r))
                if (token.Index == 0) streamedFirst[i] = token.PromptLogprobs;
            return await completion;
        })).WaitAsync(Timeout);

        var stats = engine.Snapshot();
        Assert.True(stats.Preemptions > 0, "the small pool should preempt");
        for (int i = 0; i < prompts.Length; i++)
        {
            var prompt = prompts[i];
            var scored = completions[i].PromptLogprobs!;
            Assert.Equal(prompt.Length - 1, scored.Count);
            Assert.Equal(scored.Select(s => s.Chosen), streamedFirst[i]!.Select(s => s.Chosen));
            for (int p = 1; p < prompt.Length; p++)
            {
                var logits = FakeModelRunner.Logits(prompt[..p], Vocab);
                var reference = PenaltyReference.LogSoftmax(logits);
                Assert.Equal(prompt[p], scored[p - 1].Chosen.TokenId);
                Assert.Equal(reference[prompt[p]], scored[p - 1].Chosen.Logprob, 9);
                Assert.Equal(Enumerable.Range(0, Vocab).OrderByDescending(v => logits[v]).Take(2), scored[p - 1].Top.Select(t => t.TokenId));
            }
            // The generated tokens are the greedy ones (the prompt's own logits are what the first is chosen from).
            Assert.Equal(FakeModelRunner.GreedyReference(prompt, 6, Vocab), completions[i].Tokens);
        }
        Assert.Null(completions[0].Logprobs);
    }

    /// <summary>A runner that returns only last-token logits (the <see cref="IModelRunner"/> default) cannot score a prompt.</summary>
    private sealed class LastTokenOnlyRunner(FakeModelRunner inner) : IModelRunner
    {
        public int BlockSize => inner.BlockSize;
        public int NumBlocks => inner.NumBlocks;
        public int VocabSize => inner.VocabSize;
        public int MaxSeqLen => inner.MaxSeqLen;
        public float[]?[] Execute(StepBatch batch) => inner.Execute(batch);
        public void Dispose() => inner.Dispose();
    }

    [Fact]
    public async Task Prompt_logprobs_from_a_runner_that_cannot_give_them_are_rejected()
    {
        await using var engine = new InferenceEngine(new LastTokenOnlyRunner(new FakeModelRunner(16, 4, Vocab)), new EngineOptions(), EngineSamplers.Factory);
        var e = Assert.Throws<RequestRejectedException>(() => engine.StreamAsync(new GenerationRequest([1, 2, 3], 2) { PromptLogprobs = 0, Name = "score" }));
        Assert.Contains("'score'", e.Message);
        Assert.Contains("prompt log-probabilities", e.Message);
        Assert.Equal(2, (await engine.GenerateAsync(new GenerationRequest([1, 2, 3], 2))).Tokens.Count);
    }

    /// <summary>The single-request path of <c>si generate</c> applies the same penalties.</summary>
    [Fact]
    public void The_generator_applies_penalties_too()
    {
        var penalties = new LogitPenalties(1.2, 0.25, 0.1);
        var prompt = Prompt(6, 4);
        var runner = new FakeModelRunner(16, 4, Vocab) { PicksGreedyTokens = true };
        var result = new Generator(runner, eosTokenIds: []).Generate(prompt, new GenerationOptions(20, Penalties: penalties));
        Assert.Equal(PenaltyReference.Greedy(prompt, 20, Vocab, penalties), result.Tokens);
        Assert.Equal(0, runner.PickedTokens);
    }

    [Fact]
    public void The_generator_holds_eos_back_for_min_tokens()
    {
        var prompt = Prompt(6, 4);
        int eos = FakeModelRunner.GreedyReference(prompt, 1, Vocab)[0];
        var plain = new Generator(new FakeModelRunner(16, 4, Vocab), eosTokenIds: [eos]).Generate(prompt, new GenerationOptions(8));
        Assert.Equal([eos], plain.Tokens); // the greedy first token ends it
        var held = new Generator(new FakeModelRunner(16, 4, Vocab), eosTokenIds: [eos]).Generate(prompt, new GenerationOptions(8, MinTokens: 3));
        Assert.True(held.Tokens.Length >= 3);
        Assert.DoesNotContain(eos, held.Tokens[..3]);
    }

    private static void CheckAgainstTheModel(int[] prompt, Completion completion, int top)
    {
        var logprobs = completion.Logprobs!;
        Assert.Equal(completion.Tokens.Count, logprobs.Count);
        for (int i = 0; i < logprobs.Count; i++)
        {
            var logits = FakeModelRunner.Logits(prompt.Concat(completion.Tokens.Take(i)).ToArray(), Vocab);
            var reference = PenaltyReference.LogSoftmax(logits);
            Assert.Equal(completion.Tokens[i], logprobs[i].Chosen.TokenId);
            Assert.Equal(reference[completion.Tokens[i]], logprobs[i].Chosen.Logprob, 9);
            var expectedTop = Enumerable.Range(0, Vocab).OrderByDescending(v => logits[v]).Take(top).ToArray();
            Assert.Equal(expectedTop, logprobs[i].Top.Select(t => t.TokenId));
            Assert.All(logprobs[i].Top, t => Assert.Equal(reference[t.TokenId], t.Logprob, 9));
        }
    }

    [Fact]
    public async Task Bad_penalties_and_logprobs_are_rejected_naming_the_request()
    {
        await using var engine = Engine(new FakeModelRunner(64, 4, Vocab));
        var tooMany = Assert.Throws<RequestRejectedException>(() =>
            engine.StreamAsync(new GenerationRequest([1, 2], 4) { Logprobs = TokenLogprobs.MaxTop + 1, Name = "many" }));
        Assert.Contains("'many'", tooMany.Message);
        Assert.Contains($"0 to {TokenLogprobs.MaxTop}", tooMany.Message);
        var badPenalty = Assert.Throws<RequestRejectedException>(() => engine.StreamAsync(new GenerationRequest([1, 2], 4)
        {
            Sampling = SamplingParams.ArgMax with { Penalties = new LogitPenalties(Repetition: 0) },
            Name = "zero",
        }));
        Assert.Contains("'zero'", badPenalty.Message);
        Assert.Contains("repetition_penalty", badPenalty.Message);
        // Another request is unaffected.
        Assert.Equal(FakeModelRunner.GreedyReference([1, 2], 4, Vocab), (await engine.GenerateAsync(new GenerationRequest([1, 2], 4))).Tokens);
    }
}
