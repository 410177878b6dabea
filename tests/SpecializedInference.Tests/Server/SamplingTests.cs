using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Sampling;
using SpecializedInference.Tests.Scheduling;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary>temperature / top_k / top_p / seed reach the engine's samplers (<see cref="EngineSamplers"/>).</summary>
public sealed class SamplingTests
{
    [Fact]
    public async Task SeededSamplingIsReproducibleStreamedOrNotAndTopK1IsGreedy()
    {
        await using var h = await ServerHarness.StartAsync(samplers: EngineSamplers.Factory, vocabSize: 64);
        int[] prompt = [9, 8, 7, 6];
        string body = $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 20, "temperature": 1.5, "top_p": 0.95, "seed": 42""";

        var first = TokensOf((await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0]);
        var again = TokensOf((await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0]);
        var streamed = (await h.PostStreamAsync("v1/completions", body + """, "stream": true}"""))
            .SelectMany(e => TokensOf(e.GetProperty("choices")[0])).ToArray();
        var direct = await h.Engine.GenerateAsync(new GenerationRequest(prompt, 20)
        {
            Sampling = new SamplingParams { Temperature = 1.5, TopP = 0.95, Seed = 42 },
        });
        Assert.Equal(first, again);
        Assert.Equal(first, streamed);
        Assert.Equal(first, direct.Tokens);
        Assert.NotEqual(FakeModelRunner.GreedyReference(prompt, 20, h.VocabSize), first); // 20 draws at temperature 1.5 over 64 tokens

        var topK1 = TokensOf((await h.PostOkAsync("v1/completions",
            $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 20, "temperature": 1.5, "top_k": 1, "seed": 7}""")).GetProperty("choices")[0]);
        Assert.Equal(FakeModelRunner.GreedyReference(prompt, 20, h.VocabSize), topK1);
    }
}

/// <summary><c>n</c> choices: each its own engine request, choice i seeded with seed + i; streamed chunks interleave
/// and name their choice.</summary>
public sealed class ChoicesTests
{
    [Fact]
    public async Task Seeded_choices_are_the_engines_requests_with_seed_plus_index_streamed_or_not()
    {
        await using var h = await ServerHarness.StartAsync(samplers: EngineSamplers.Factory, vocabSize: 64);
        int[] prompt = [9, 8, 7, 6];
        string body = $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 12, "temperature": 1.2, "seed": 40, "n": 3""";

        var plain = await h.PostOkAsync("v1/completions", body + "}");
        var choices = plain.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal([0, 1, 2], choices.Select(c => c.GetProperty("index").GetInt32()));
        for (int i = 0; i < 3; i++)
        {
            var direct = await h.Engine.GenerateAsync(new GenerationRequest(prompt, 12) { Sampling = new SamplingParams { Temperature = 1.2, Seed = 40 + (ulong)i } });
            Assert.Equal(direct.Tokens, TokensOf(choices[i]));
        }
        Assert.NotEqual(TokensOf(choices[0]), TokensOf(choices[1]));
        Assert.Equal(36, plain.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(4, plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var events = await h.PostStreamAsync("v1/completions", body + """, "stream": true}""");
        for (int i = 0; i < 3; i++)
            Assert.Equal(TokensOf(choices[i]), events.Select(e => e.GetProperty("choices")[0]).Where(c => c.GetProperty("index").GetInt32() == i).SelectMany(TokensOf));
        // Only the request's last chunk carries the usage, of all three choices.
        var withUsage = events.Where(e => e.TryGetProperty("usage", out _)).ToArray();
        Assert.Single(withUsage);
        Assert.True(events[^1].TryGetProperty("usage", out _));
        Assert.Equal(36, withUsage[0].GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        await h.WaitUntilIdleAsync();
    }

    /// <summary>A prompt's n choices compute it once: the others wait for the first one's first token and find the prompt's
    /// full blocks in the prefix cache.</summary>
    [Fact]
    public async Task A_prompts_choices_compute_it_once()
    {
        await using var h = await ServerHarness.StartAsync(vocabSize: 64, maxSeqLen: 128);
        int[] prompt = Enumerable.Range(0, 41).Select(i => (i * 7 + 3) % 64).ToArray(); // 10 full blocks of 4, and 1 token
        var plain = await h.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 6, "n": 4, "stream": false}""");
        var reference = FakeModelRunner.GreedyReference(prompt, 6, 64);
        Assert.All(plain.GetProperty("choices").EnumerateArray(), c => Assert.Equal(reference, TokensOf(c)));
        var stats = await h.WaitUntilIdleAsync();
        Assert.Equal(3 * 40, stats.PrefixCacheHitTokens);      // the other three found the first's 10 full blocks
        Assert.Equal(41 + 3 * 1, stats.PrefillTokens);           // and computed only the last prompt token each
    }

    [Fact]
    public async Task Greedy_choices_are_the_same_and_each_chat_choice_names_its_role_once()
    {
        var tokenizer = new Text.FakeTokenizer();
        await using var h = await ServerHarness.StartAsync(tokenizer: tokenizer, chatTemplate: new LineChatTemplate(), vocabSize: tokenizer.VocabSize, maxSeqLen: 128);
        var plain = await h.PostOkAsync("v1/chat/completions", """{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "n": 2}""");
        var choices = plain.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(TokensOf(choices[0]), TokensOf(choices[1]));
        Assert.Equal(choices[0].GetProperty("message").GetProperty("content").GetString(), choices[1].GetProperty("message").GetProperty("content").GetString());

        var events = await h.PostStreamAsync("v1/chat/completions", """{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5, "n": 2, "stream": true}""");
        var deltas = events.Select(e => e.GetProperty("choices")[0]).ToArray();
        for (int i = 0; i < 2; i++)
        {
            var mine = deltas.Where(d => d.GetProperty("index").GetInt32() == i).ToArray();
            Assert.Equal(5, mine.Length);
            Assert.Equal("assistant", mine[0].GetProperty("delta").GetProperty("role").GetString());
            Assert.All(mine.Skip(1), d => Assert.False(d.GetProperty("delta").TryGetProperty("role", out _)));
            Assert.Equal(choices[i].GetProperty("message").GetProperty("content").GetString(),
                string.Concat(mine.Select(d => d.GetProperty("delta").GetProperty("content").GetString())));
        }
    }
}

/// <summary>A batch of prompts in one completion request, as OpenAI takes it and evaluation harnesses send it.</summary>
public sealed class BatchedPromptTests
{
    /// <summary>lm-evaluation-harness scores contexts this way: token-id prompts, max_tokens 1, echo and logprobs 1; each
    /// choice (index = prompt × n + choice) carries its prompt's scores.</summary>
    [Fact]
    public async Task A_batch_of_token_prompts_is_scored_and_continued_prompt_by_prompt()
    {
        await using var h = await ServerHarness.StartAsync(samplers: EngineSamplers.Factory);
        int[][] prompts = [[5, 9, 2, 7], [3, 1, 4], [8]];
        var plain = await h.PostOkAsync("v1/completions",
            $$"""{"prompt": [{{string.Join(",", prompts.Select(Ids))}}], "max_tokens": 2, "temperature": 0, "echo": true, "logprobs": 1, "n": 2}""");
        var choices = plain.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(Enumerable.Range(0, 6), choices.Select(c => c.GetProperty("index").GetInt32()));
        for (int c = 0; c < 6; c++)
        {
            var prompt = prompts[c / 2];
            var generated = TokensOf(choices[c]);
            Assert.Equal(FakeModelRunner.GreedyReference(prompt, 2, h.VocabSize), generated);
            var scores = choices[c].GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().ToArray();
            Assert.Equal(prompt.Length + 2, scores.Length);
            Assert.Equal(JsonValueKind.Null, scores[0].ValueKind);
            int[] all = [.. prompt, .. generated];
            for (int t = 1; t < all.Length; t++)
                Assert.Equal(Sampling.PenaltyReference.LogSoftmax(FakeModelRunner.Logits(all[..t], h.VocabSize))[all[t]], scores[t].GetDouble(), 9);
        }
        Assert.Equal(8, plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(12, plain.GetProperty("usage").GetProperty("completion_tokens").GetInt32());

        var events = await h.PostStreamAsync("v1/completions", $$"""{"prompt": [{{string.Join(",", prompts.Select(Ids))}}], "max_tokens": 2, "stream": true}""");
        for (int p = 0; p < 3; p++)
            Assert.Equal(FakeModelRunner.GreedyReference(prompts[p], 2, h.VocabSize),
                events.Select(e => e.GetProperty("choices")[0]).Where(c => c.GetProperty("index").GetInt32() == p).SelectMany(TokensOf));
    }

    [Fact]
    public async Task A_batch_of_texts_continues_each()
    {
        var tokenizer = new Text.FakeTokenizer();
        await using var h = await ServerHarness.StartAsync(tokenizer: tokenizer, vocabSize: tokenizer.VocabSize, maxSeqLen: 128);
        var plain = await h.PostOkAsync("v1/completions", """{"prompt": ["the module", "hello world"], "max_tokens": 3, "echo": true}""");
        var choices = plain.GetProperty("choices").EnumerateArray().ToArray();
        Assert.Equal(2, choices.Length);
        Assert.StartsWith("the module", choices[0].GetProperty("text").GetString());
        Assert.StartsWith("hello world", choices[1].GetProperty("text").GetString());
        var ids = tokenizer.Encode("hello world", addBos: true);
        Assert.Equal(FakeModelRunner.GreedyReference(ids, 3, tokenizer.VocabSize), TokensOf(choices[1]));
    }
}
