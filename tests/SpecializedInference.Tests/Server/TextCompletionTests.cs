using System.Net;
using System.Text;
using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Server;
using SpecializedInference.Tests.Scheduling;
using SpecializedInference.Tests.Text;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary>
/// A server with the <see cref="FakeTokenizer"/> (byte-fallback pieces) and a chat template. Requests with a
/// scripted seed produce known tokens, the others the fake model's greedy tokens.
/// </summary>
public sealed class TextServerFixture : IAsyncLifetime
{
    internal static readonly FakeTokenizer Tokenizer = new();

    /// <summary>"café €😀 done": "é" is a word piece, "€" and "😀" come as byte-fallback pieces.</summary>
    internal static readonly int[] MultiByteScript = Tokenizer.Encode("café €😀 done", addBos: false);

    /// <summary>"hello world. bye" as word pieces, to cut with stop strings.</summary>
    internal static readonly int[] HelloScript = Tokenizer.Encode("hello world. bye", addBos: false);

    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync(
        new ServerOptions { EosTokenIds = [FakeTokenizer.Eos] },
        tokenizer: Tokenizer,
        chatTemplate: new LineChatTemplate(),
        samplers: ScriptedSamplers.For(new Dictionary<ulong, int[]> { [1] = MultiByteScript, [2] = HelloScript }, FakeTokenizer.Eos),
        vocabSize: Tokenizer.VocabSize,
        maxSeqLen: 128);

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

public sealed class TextCompletionTests(TextServerFixture fixture) : IClassFixture<TextServerFixture>
{
    private ServerHarness H => fixture.Harness;
    private static FakeTokenizer Tokenizer => TextServerFixture.Tokenizer;

    /// <summary>What <paramref name="tokens"/> add to the text of <paramref name="prompt"/>, by decoding both whole.</summary>
    private static string Continuation(int[] prompt, IReadOnlyList<int> tokens) =>
        Tokenizer.Decode([.. prompt, .. tokens])[Tokenizer.Decode(prompt).Length..];

    private static string StreamedText(List<JsonElement> events) =>
        string.Concat(events.Where(e => e.GetProperty("choices").GetArrayLength() > 0).Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()));

    [Fact]
    public void ScriptsReallyContainByteFallbackPieces()
    {
        Assert.Contains(FakeTokenizer.ByteId(0xE2), TextServerFixture.MultiByteScript);
        Assert.Contains(FakeTokenizer.ByteId(0xF0), TextServerFixture.MultiByteScript);
    }

    /// <summary>Greedy output of the fake model over the whole vocabulary: random bytes, words and specials.</summary>
    [Theory]
    [InlineData("the module provides", 40)]
    [InlineData("hello", 25)]
    [InlineData("é€", 60)]
    public async Task TextPromptStreamedTextJoinsToPlainTextWhichDecodesTheTokens(string prompt, int maxTokens)
    {
        int[] ids = Tokenizer.Encode(prompt, addBos: true);
        var direct = await H.Engine.GenerateAsync(new GenerationRequest(ids, maxTokens) { EosTokenIds = [FakeTokenizer.Eos] });
        string body = JsonSerializer.Serialize(new { prompt, max_tokens = maxTokens });

        var plain = await H.PostOkAsync("v1/completions", body);
        var choice = plain.GetProperty("choices")[0];
        Assert.Equal(direct.Tokens, TokensOf(choice));
        Assert.Equal(Continuation(ids, direct.Tokens), choice.GetProperty("text").GetString());
        Assert.Equal(ids.Length, plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(direct.FinishReason == FinishReason.Length ? "length" : "stop", choice.GetProperty("finish_reason").GetString());

        var events = await H.PostStreamAsync("v1/completions", body[..^1] + ""","stream":true}""");
        Assert.Equal(direct.Tokens, events.SelectMany(e => TokensOf(e.GetProperty("choices")[0])));
        Assert.Equal(choice.GetProperty("text").GetString(), StreamedText(events));
    }

    [Fact]
    public async Task MultiByteCharactersAreNeverSplitAcrossChunks()
    {
        const string body = """{"prompt": "x", "max_tokens": 40, "seed": 1, "stream": true}""";
        var events = await H.PostStreamAsync("v1/completions", body);
        var texts = events.Select(e => e.GetProperty("choices")[0].GetProperty("text").GetString()!).ToList();
        Assert.All(texts, t => Assert.DoesNotContain('\uFFFD', t));
        Assert.Equal(" café €😀 done", string.Concat(texts)); // continuing the prompt "x": the first word keeps its space
        Assert.Contains("€", texts);
        Assert.Contains("😀", texts);
        // The chunk of each non-final byte of a character is empty; the character comes whole with its last byte.
        Assert.True(texts.Count(t => t.Length == 0) >= 5, string.Join("|", texts));
        Assert.Equal("stop", events[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString()); // EOS after the script

        var plain = await H.PostOkAsync("v1/completions", body.Replace("true", "false"));
        Assert.Equal(" café €😀 done", plain.GetProperty("choices")[0].GetProperty("text").GetString());
    }

    [Theory]
    [InlineData("\"world\"", " hello ")]
    [InlineData("[\"ld.\", \"bye\"]", " hello wor")]
    [InlineData("[\"o w\"]", " hell")]
    [InlineData("[\"nothing like it\"]", " hello world. bye")]
    [InlineData("\" hello\"", "")]
    public async Task StopStringsEndTheTextBeforeThem(string stop, string expected)
    {
        string body = $$"""{"prompt": "x", "max_tokens": 40, "seed": 2, "stop": {{stop}}}""";
        var plain = await H.PostOkAsync("v1/completions", body);
        var choice = plain.GetProperty("choices")[0];
        Assert.Equal(expected, choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());

        var events = await H.PostStreamAsync("v1/completions", body[..^1] + ""","stream":true}""");
        Assert.Equal(expected, StreamedText(events));
        Assert.Equal("stop", events[^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(TokensOf(choice), events.SelectMany(e => TokensOf(e.GetProperty("choices")[0])));
        // A stop string ends the request in the engine too: its blocks come back.
        await H.WaitUntilIdleAsync();
    }

    /// <summary>min_tokens holds stop strings back too (vLLM's rule): "world" is the 2nd token of "hello world. bye", inside
    /// the first 3, so only "bye" can stop the text.</summary>
    [Fact]
    public async Task StopStringsAreLookedForOnlyAfterMinTokens()
    {
        string body = """{"prompt": "x", "max_tokens": 40, "seed": 2, "stop": ["world", "bye"], "min_tokens": 3}""";
        var choice = (await H.PostOkAsync("v1/completions", body)).GetProperty("choices")[0];
        Assert.Equal(" hello world. ", choice.GetProperty("text").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        var events = await H.PostStreamAsync("v1/completions", body[..^1] + ""","stream":true}""");
        Assert.Equal(" hello world. ", StreamedText(events));
        await H.WaitUntilIdleAsync();
    }

    [Fact]
    public async Task ChatCompletionRendersTheTemplateAndStreamsDeltas()
    {
        const string messages = """[{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hello"}]}]""";
        int[] ids = Tokenizer.Encode("system: be brief\nuser: hello\nassistant:", addBos: true);
        var direct = await H.Engine.GenerateAsync(new GenerationRequest(ids, 12) { EosTokenIds = [FakeTokenizer.Eos] });
        string expectedText = Tokenizer.Decode(direct.Tokens.ToArray()); // a reply stands alone: no leading space

        var plain = await H.PostOkAsync("v1/chat/completions", $$"""{"model": "fake", "messages": {{messages}}, "max_tokens": 12}""");
        Assert.Equal("chat.completion", plain.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", plain.GetProperty("id").GetString());
        var message = plain.GetProperty("choices")[0].GetProperty("message");
        Assert.Equal("assistant", message.GetProperty("role").GetString());
        Assert.Equal(expectedText, message.GetProperty("content").GetString());
        Assert.Equal(ids.Length, plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        var events = await H.PostStreamAsync("v1/chat/completions", $$"""{"messages": {{messages}}, "max_completion_tokens": 12, "stream": true}""");
        Assert.All(events, e => Assert.Equal("chat.completion.chunk", e.GetProperty("object").GetString()));
        Assert.Equal("assistant", events[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());
        Assert.Equal(expectedText, string.Concat(events.Select(e => e.GetProperty("choices")[0].GetProperty("delta").GetProperty("content").GetString())));
    }

    [Theory]
    [InlineData("""{"messages": "hi"}""", "messages")]
    [InlineData("""{"messages": []}""", "messages")]
    [InlineData("""{"messages": [{"role": "wizard", "content": "hi"}]}""", "messages[0].role")]
    [InlineData("""{"messages": [{"role": "user"}]}""", "messages[0].content")]
    [InlineData("""{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}""", "messages[0].content[0]")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 0}""", "max_completion_tokens")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "prompt": "hi"}""", "prompt")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "low"}""", "reasoning_effort")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function", "function": {"name": "f"}}]}""", "tools")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"}""", "tool_choice")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}}""", "response_format")]
    [InlineData("""{"messages": [{"role": "user", "content": "hi"}], "modalities": ["text", "audio"]}""", "modalities")]
    public async Task BadChatRequestsNameTheField(string body, string param)
    {
        using var response = await H.PostAsync("v1/chat/completions", body);
        await BadRequestTests.AssertErrorAsync(response, HttpStatusCode.BadRequest, param);
    }

    /// <summary>vLLM's /tokenize and /detokenize: the ids a completion or a chat would be given, and text back.</summary>
    [Fact]
    public async Task TokenizeAndDetokenizeUseTheServersTokenizerAndTemplate()
    {
        var tokens = await H.PostOkAsync("tokenize", """{"prompt": "the module é"}""");
        int[] ids = Tokenizer.Encode("the module é", addBos: true);
        Assert.Equal(ids, tokens.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(ids.Length, tokens.GetProperty("count").GetInt32());
        Assert.Equal(128, tokens.GetProperty("max_model_len").GetInt32());
        var bare = await H.PostOkAsync("tokenize", """{"prompt": "the module é", "add_special_tokens": false}""");
        Assert.Equal(ids[1..], bare.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));

        var chat = await H.PostOkAsync("tokenize", """{"messages": [{"role": "user", "content": "hello"}]}""");
        Assert.Equal(Tokenizer.Encode("user: hello\nassistant:", addBos: true), chat.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()));

        var text = await H.PostOkAsync("detokenize", $$"""{"tokens": {{Ids(ids)}}}""");
        Assert.Equal("the module é", text.GetProperty("prompt").GetString());

        foreach (var (path, body, param) in new[]
        {
            ("tokenize", """{"prompt": "x", "messages": [{"role": "user", "content": "x"}]}""", "messages"),
            ("tokenize", """{"text": "x"}""", "text"),
            ("tokenize", """{"prompt": [1, 2]}""", "prompt"),
            ("tokenize", """{"messages": [{"role": "user", "content": "x"}], "add_generation_prompt": false}""", "add_generation_prompt"),
            ("detokenize", """{"tokens": [1, 99999]}""", "tokens"),
            ("detokenize", """{}""", "tokens"),
        })
        {
            using var response = await H.PostAsync(path, body);
            await BadRequestTests.AssertErrorAsync(response, HttpStatusCode.BadRequest, param);
        }
    }

    /// <summary>What clients send that changes nothing here is accepted: who asks, no tools, plain text.</summary>
    [Fact]
    public async Task HarmlessOpenAiFieldsAreAccepted()
    {
        var plain = await H.PostOkAsync("v1/chat/completions", """
            {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "user": "u1", "metadata": {"k": "v"}, "store": false,
             "tools": [], "tool_choice": "none", "parallel_tool_calls": true, "response_format": {"type": "text"}, "modalities": ["text"], "n": 1}
            """);
        Assert.Equal(2, TokensOf(plain.GetProperty("choices")[0]).Length);
    }

    [Fact]
    public async Task PromptAsTokenIdsStillGetsText()
    {
        int[] ids = Tokenizer.Encode("the module", addBos: true);
        var expected = FakeModelRunner.GreedyReference(ids, 10, Tokenizer.VocabSize, [FakeTokenizer.Eos]);
        var plain = await H.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(ids)}}, "max_tokens": 10}""");
        var choice = plain.GetProperty("choices")[0];
        Assert.Equal(expected, TokensOf(choice));
        Assert.Equal(Continuation(ids, expected), choice.GetProperty("text").GetString());
    }
}
