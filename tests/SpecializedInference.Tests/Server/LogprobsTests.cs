using System.Net;
using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Sampling;
using SpecializedInference.Server;
using SpecializedInference.Tests.Sampling;
using SpecializedInference.Tests.Scheduling;
using SpecializedInference.Tests.Text;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary><c>logprobs</c>/<c>top_logprobs</c> and the penalties over HTTP, against log-probabilities recomputed from the fake model.</summary>
public sealed class LogprobsTests
{
    private static readonly int[] Prompt = [5, 9, 2, 7];

    [Fact]
    public async Task Completion_logprobs_without_a_tokenizer_name_tokens_by_id_and_stream_the_same_values()
    {
        await using var h = await StartAsync(samplers: EngineSamplers.Factory);
        string body = $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 6, "temperature": 0, "logprobs": 2""";
        var choice = (await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0];
        var tokens = TokensOf(choice);
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt, 6, h.VocabSize), tokens);

        var logprobs = choice.GetProperty("logprobs");
        Assert.Equal(tokens.Select(t => $"token_id:{t}"), logprobs.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
        Assert.All(logprobs.GetProperty("text_offset").EnumerateArray(), e => Assert.Equal(0, e.GetInt32())); // no text
        var tokenLogprobs = logprobs.GetProperty("token_logprobs").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var top = logprobs.GetProperty("top_logprobs").EnumerateArray().ToArray();
        for (int i = 0; i < tokens.Length; i++)
        {
            var logits = FakeModelRunner.Logits(Prompt.Concat(tokens.Take(i)).ToArray(), h.VocabSize);
            var reference = PenaltyReference.LogSoftmax(logits);
            Assert.Equal(reference[tokens[i]], tokenLogprobs[i], 9);
            // The two most likely tokens; the chosen (greedy) one is the first of them, so no third entry.
            var best = Enumerable.Range(0, h.VocabSize).OrderByDescending(v => logits[v]).Take(2).ToArray();
            Assert.Equal(best.Select(v => $"token_id:{v}"), top[i].EnumerateObject().Select(p => p.Name));
            Assert.All(top[i].EnumerateObject(), p => Assert.Equal(reference[int.Parse(p.Name["token_id:".Length..])], p.Value.GetDouble(), 9));
        }

        var events = await h.PostStreamAsync("v1/completions", body + """, "stream": true}""");
        var streamed = events.Select(e => e.GetProperty("choices")[0].GetProperty("logprobs")).ToArray();
        Assert.Equal(tokens.Length, streamed.Length);
        Assert.Equal(tokenLogprobs, streamed.Select(l => Assert.Single(l.GetProperty("token_logprobs").EnumerateArray().ToArray()).GetDouble()));
    }

    [Fact]
    public async Task A_sampled_token_outside_the_top_n_is_listed_too()
    {
        // The script makes the least likely token the output; top_logprobs then lists the top 1 and that token.
        var logits = FakeModelRunner.Logits(Prompt, 32);
        int worst = Enumerable.Range(0, 32).OrderBy(v => logits[v]).First();
        int best = Enumerable.Range(0, 32).OrderByDescending(v => logits[v]).First();
        await using var h = await StartAsync(samplers: ScriptedSamplers.For(new Dictionary<ulong, int[]> { [1] = [worst] }, eos: 0));
        var choice = (await h.PostOkAsync("v1/completions",
            $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 1, "temperature": 1, "seed": 1, "logprobs": 1}""")).GetProperty("choices")[0];
        var top = choice.GetProperty("logprobs").GetProperty("top_logprobs")[0];
        Assert.Equal([$"token_id:{best}", $"token_id:{worst}"], top.EnumerateObject().Select(p => p.Name));
    }

    /// <summary>A word, a three-byte character in byte pieces, a word and a piece of punctuation, through the fake
    /// SentencePiece-like tokenizer: token names, bytes and text offsets.</summary>
    [Fact]
    public async Task Tokens_are_named_by_their_text_or_bytes_with_offsets_into_the_text()
    {
        var tokenizer = new FakeTokenizer();
        int[] script = [tokenizer.WordId("▁hello"), FakeTokenizer.ByteId(0xE2), FakeTokenizer.ByteId(0x82), FakeTokenizer.ByteId(0xAC), tokenizer.WordId("▁world"), tokenizer.WordId(".")];
        await using var h = await StartAsync(tokenizer: tokenizer, chatTemplate: new LineChatTemplate(), vocabSize: tokenizer.VocabSize, maxSeqLen: 128,
            samplers: ScriptedSamplers.For(new Dictionary<ulong, int[]> { [3] = script }, eos: FakeTokenizer.Eos));
        string[] names = [" hello", "bytes:\\xe2", "bytes:\\x82", "bytes:\\xac", " world", "."];

        var completion = (await h.PostOkAsync("v1/completions",
            """{"prompt": "the module", "max_tokens": 6, "temperature": 1, "seed": 3, "logprobs": 0}""")).GetProperty("choices")[0];
        Assert.Equal(" hello€ world.", completion.GetProperty("text").GetString()); // continuing the prompt: " hello"
        var logprobs = completion.GetProperty("logprobs");
        Assert.Equal(names, logprobs.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
        // " hello" starts the text; the euro sign's three bytes all start where it appears; " world" after it.
        Assert.Equal([0, 6, 6, 6, 7, 13], logprobs.GetProperty("text_offset").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(names, logprobs.GetProperty("top_logprobs").EnumerateArray().Select(o => Assert.Single(o.EnumerateObject()).Name));

        var chat = (await h.PostOkAsync("v1/chat/completions",
            """{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 6, "temperature": 1, "seed": 3, "logprobs": true, "top_logprobs": 2}"""))
            .GetProperty("choices")[0];
        Assert.Equal("hello€ world.", chat.GetProperty("message").GetProperty("content").GetString()); // a reply stands alone
        var content = chat.GetProperty("logprobs").GetProperty("content").EnumerateArray().ToArray();
        Assert.Equal(names, content.Select(c => c.GetProperty("token").GetString()));
        Assert.Equal([226], content[1].GetProperty("bytes").EnumerateArray().Select(b => b.GetInt32()));
        Assert.Equal(" world"u8.ToArray().Select(b => (int)b), content[4].GetProperty("bytes").EnumerateArray().Select(b => b.GetInt32()));
        Assert.All(content, c =>
        {
            var top = c.GetProperty("top_logprobs").EnumerateArray().ToArray();
            Assert.Equal(2, top.Length);
            Assert.True(top[0].GetProperty("logprob").GetDouble() >= top[1].GetProperty("logprob").GetDouble());
            Assert.True(c.GetProperty("logprob").GetDouble() <= top[0].GetProperty("logprob").GetDouble());
            Assert.Equal(JsonValueKind.Array, top[1].GetProperty("bytes").ValueKind);
        });

        var withoutLogprobs = (await h.PostOkAsync("v1/chat/completions",
            """{"messages": [{"role": "user", "content": "hello"}], "max_tokens": 2, "logprobs": false}""")).GetProperty("choices")[0];
        Assert.Equal(JsonValueKind.Null, withoutLogprobs.GetProperty("logprobs").ValueKind);
    }

    /// <summary>OpenAI's <c>echo</c> with <c>logprobs</c>, as evaluation harnesses score a text: the prompt's tokens come
    /// first, the first with null (nothing predicts it), the others scored under the model after the tokens before them.</summary>
    [Fact]
    public async Task Echo_with_logprobs_scores_the_prompt_tokens()
    {
        await using var h = await StartAsync(samplers: EngineSamplers.Factory);
        string body = $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 2, "temperature": 0, "echo": true, "logprobs": 1""";
        var choice = (await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0];
        var generated = TokensOf(choice);
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt, 2, h.VocabSize), generated); // "tokens" stays the generated ids
        var logprobs = choice.GetProperty("logprobs");
        Assert.Equal(Prompt.Concat(generated).Select(t => $"token_id:{t}"), logprobs.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
        var tokenLogprobs = logprobs.GetProperty("token_logprobs").EnumerateArray().ToArray();
        var top = logprobs.GetProperty("top_logprobs").EnumerateArray().ToArray();
        Assert.Equal(JsonValueKind.Null, tokenLogprobs[0].ValueKind);
        Assert.Equal(JsonValueKind.Null, top[0].ValueKind);
        int[] all = [.. Prompt, .. generated];
        for (int p = 1; p < all.Length; p++)
        {
            var logits = FakeModelRunner.Logits(all[..p], h.VocabSize);
            Assert.Equal(PenaltyReference.LogSoftmax(logits)[all[p]], tokenLogprobs[p].GetDouble(), 9);
            Assert.Contains($"token_id:{Enumerable.Range(0, h.VocabSize).MaxBy(v => logits[v])}", top[p].EnumerateObject().Select(e => e.Name));
        }

        // Streamed: the first chunk carries the prompt's entries and the first token's.
        var events = await h.PostStreamAsync("v1/completions", body + """, "stream": true}""");
        var counts = events.Select(e => e.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("tokens").GetArrayLength());
        Assert.Equal([Prompt.Length + 1, 1], counts);
        Assert.Equal(tokenLogprobs.Skip(1).Select(e => e.GetDouble()), events.SelectMany(e =>
            e.GetProperty("choices")[0].GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray()).Skip(1).Select(e => e.GetDouble()));
    }

    /// <summary>max_tokens 0 with echo scores the prompt alone, as OpenAI allowed and scoring clients ask.</summary>
    [Fact]
    public async Task Zero_max_tokens_with_echo_scores_the_prompt_alone()
    {
        await using var h = await StartAsync(samplers: EngineSamplers.Factory);
        string[] bodies =
        [
            $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 0, "echo": true, "logprobs": 0}""",
            $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 0, "echo": true, "logprobs": 0, "stream": true}""",
        ];
        var plain = (await h.PostOkAsync("v1/completions", bodies[0]));
        var streamed = await h.PostStreamAsync("v1/completions", bodies[1]);
        foreach (var choice in new[] { plain.GetProperty("choices")[0], Assert.Single(streamed).GetProperty("choices")[0] })
        {
            Assert.Empty(TokensOf(choice));
            Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
            var scores = choice.GetProperty("logprobs").GetProperty("token_logprobs").EnumerateArray().ToArray();
            Assert.Equal(Prompt.Length, scores.Length);
            Assert.Equal(PenaltyReference.LogSoftmax(FakeModelRunner.Logits(Prompt[..3], h.VocabSize))[Prompt[3]], scores[3].GetDouble(), 9);
        }
        Assert.Equal(0, plain.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
    }

    [Fact]
    public async Task Echo_puts_the_prompts_text_first_with_offsets_into_it()
    {
        var tokenizer = new FakeTokenizer();
        int[] script = [tokenizer.WordId("▁hello"), tokenizer.WordId("▁world")];
        await using var h = await StartAsync(tokenizer: tokenizer, vocabSize: tokenizer.VocabSize, maxSeqLen: 128,
            samplers: ScriptedSamplers.For(new Dictionary<ulong, int[]> { [3] = script }, eos: FakeTokenizer.Eos));
        string body = """{"prompt": "the module", "max_tokens": 2, "temperature": 1, "seed": 3, "echo": true, "logprobs": 0""";
        var choice = (await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0];
        Assert.Equal("the module hello world", choice.GetProperty("text").GetString());
        var logprobs = choice.GetProperty("logprobs");
        // <s> (no text), "the", " module", then the two generated words.
        Assert.Equal(["<s>", " the", " module", " hello", " world"], logprobs.GetProperty("tokens").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal([0, 0, 3, 10, 16], logprobs.GetProperty("text_offset").EnumerateArray().Select(e => e.GetInt32()));

        var events = await h.PostStreamAsync("v1/completions", body + """, "stream": true}""");
        var texts = events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()!).ToArray();
        Assert.Equal(["the module hello", " world"], texts);

        var plain = (await h.PostOkAsync("v1/completions", """{"prompt": "the module", "max_tokens": 2, "temperature": 1, "seed": 3, "echo": true}"""))
            .GetProperty("choices")[0];
        Assert.Equal("the module hello world", plain.GetProperty("text").GetString());
        Assert.Equal(JsonValueKind.Null, plain.GetProperty("logprobs").ValueKind);
    }

    [Theory]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}""", "top_logprobs")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}""", "top_logprobs")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "logprobs": 2}""", "logprobs")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "echo": true}""", "echo")]
    public async Task Bad_chat_logprobs_get_400_naming_the_field(string body, string param)
    {
        var tokenizer = new FakeTokenizer();
        await using var h = await StartAsync(tokenizer: tokenizer, chatTemplate: new LineChatTemplate(), vocabSize: tokenizer.VocabSize, maxSeqLen: 128);
        using var response = await h.PostAsync("v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal(param, error.GetProperty("param").GetString());
    }

    [Fact]
    public async Task Penalties_reach_the_engine()
    {
        await using var h = await StartAsync(samplers: EngineSamplers.Factory);
        var penalties = new LogitPenalties(Repetition: 1.25, Frequency: 0.3, Presence: 0.1);
        var tokens = TokensOf((await h.PostOkAsync("v1/completions",
            $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 16, "temperature": 0, "repetition_penalty": 1.25, "frequency_penalty": 0.3, "presence_penalty": 0.1}"""))
            .GetProperty("choices")[0]);
        Assert.Equal(PenaltyReference.Greedy(Prompt, 16, h.VocabSize, penalties), tokens);
        Assert.NotEqual(FakeModelRunner.GreedyReference(Prompt, 16, h.VocabSize), tokens);
    }

    [Fact]
    public async Task Min_tokens_holds_eos_back_and_min_p_keeps_only_likely_tokens()
    {
        int eos = FakeModelRunner.GreedyReference(Prompt, 1, 32)[0];
        await using var h = await StartAsync(new ServerOptions { EosTokenIds = [eos] }, samplers: EngineSamplers.Factory);
        var plain = (await h.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 8}""")).GetProperty("choices")[0];
        Assert.Equal([eos], TokensOf(plain)); // the greedy first token is EOS

        var held = TokensOf((await h.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 8, "min_tokens": 3}""")).GetProperty("choices")[0]);
        Assert.True(held.Length >= 3);
        Assert.DoesNotContain(eos, held[..3]);
        var first = FakeModelRunner.Logits(Prompt, 32);
        first[eos] = float.NegativeInfinity;
        Assert.Equal(Array.IndexOf(first, first.Max()), held[0]);

        // min_p 0.9 at temperature 1.5: every drawn token within a factor 0.9 of the most likely at that temperature.
        var sampled = TokensOf((await h.PostOkAsync("v1/completions",
            $$"""{"prompt": {{Ids(Prompt)}}, "max_tokens": 16, "temperature": 1.5, "seed": 5, "min_p": 0.9, "ignore_eos": true}""")).GetProperty("choices")[0]);
        for (int i = 0; i < sampled.Length; i++)
        {
            var logits = FakeModelRunner.Logits(Prompt.Concat(sampled.Take(i)).ToArray(), 32);
            Assert.True(Math.Exp((logits[sampled[i]] - logits.Max()) / 1.5) >= 0.9 - 1e-6, $"token {i}");
        }
    }

    [Fact]
    public async Task Logit_bias_bans_and_favours_tokens_before_the_penalties()
    {
        await using var h = await StartAsync(samplers: EngineSamplers.Factory);
        int first = FakeModelRunner.GreedyReference(Prompt, 1, h.VocabSize)[0];
        var bias = new Dictionary<int, float> { [first] = -100, [3] = 0.25f };
        var penalties = new LogitPenalties(Frequency: 0.5);
        var tokens = TokensOf((await h.PostOkAsync("v1/completions",
            $$$"""{"prompt": {{{Ids(Prompt)}}}, "max_tokens": 12, "temperature": 0, "frequency_penalty": 0.5, "logit_bias": {"{{{first}}}": -100, "3": 0.25}}"""))
            .GetProperty("choices")[0]);
        Assert.Equal(PenaltyReference.Greedy(Prompt, 12, h.VocabSize, penalties, bias), tokens);
        Assert.DoesNotContain(first, tokens);
        Assert.Contains(3, tokens);

        var forced = TokensOf((await h.PostOkAsync("v1/completions", $$$"""{"prompt": {{{Ids(Prompt)}}}, "max_tokens": 5, "logit_bias": {"7": 100}}"""))
            .GetProperty("choices")[0]);
        Assert.Equal([7, 7, 7, 7, 7], forced);
    }
}
