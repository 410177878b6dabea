using System.Net;
using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Tests.Scheduling;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary>One token-id server (no tokenizer) shared by the tests of this class.</summary>
public sealed class TokenServerFixture : IAsyncLifetime
{
    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync();

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

public sealed class CompletionEndpointTests(TokenServerFixture fixture) : IClassFixture<TokenServerFixture>
{
    private ServerHarness H => fixture.Harness;

    /// <summary>Prompt lengths around the block size (4) and 1; max_tokens 1, across a block, many.</summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 5)]
    [InlineData(4, 4)]
    [InlineData(5, 12)]
    [InlineData(9, 30)]
    public async Task PlainAndStreamedCompletionsEqualGenerateAsync(int promptLength, int maxTokens)
    {
        var prompt = Enumerable.Range(0, promptLength).Select(i => (i * 7 + promptLength) % H.VocabSize).ToArray();
        var expected = FakeModelRunner.GreedyReference(prompt, maxTokens, H.VocabSize);
        var direct = await H.Engine.GenerateAsync(new GenerationRequest(prompt, maxTokens));
        Assert.Equal(expected, direct.Tokens);

        var plain = await H.PostOkAsync("v1/completions", $$"""{"model": "fake", "prompt": {{Ids(prompt)}}, "max_tokens": {{maxTokens}}}""");
        Assert.Equal("text_completion", plain.GetProperty("object").GetString());
        Assert.StartsWith("cmpl-", plain.GetProperty("id").GetString());
        Assert.Equal("fake", plain.GetProperty("model").GetString());
        var choice = Assert.Single(plain.GetProperty("choices").EnumerateArray());
        Assert.Equal(expected, TokensOf(choice));
        Assert.Equal("", choice.GetProperty("text").GetString());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
        var usage = plain.GetProperty("usage");
        Assert.Equal(promptLength, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(maxTokens, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(promptLength + maxTokens, usage.GetProperty("total_tokens").GetInt32());

        var events = await H.PostStreamAsync("v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": {{maxTokens}}, "stream": true}""");
        Assert.Equal(maxTokens, events.Count);
        var streamed = events.SelectMany(e => TokensOf(e.GetProperty("choices")[0])).ToArray();
        Assert.Equal(expected, streamed);
        Assert.Single(events.Select(e => e.GetProperty("id").GetString()).Distinct());
        Assert.All(events.SkipLast(1), e => Assert.Equal(JsonValueKind.Null, e.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
        var last = events[^1];
        Assert.Equal("length", last.GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        Assert.Equal(promptLength + maxTokens, last.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task StopTokenIdsFinishWithStopAndIncludeTheStopToken()
    {
        int[] prompt = [5, 6, 7];
        var free = FakeModelRunner.GreedyReference(prompt, 10, H.VocabSize);
        int stopToken = free[3];
        var expected = FakeModelRunner.GreedyReference(prompt, 10, H.VocabSize, [stopToken]);
        string body = $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 10, "stop_token_ids": [{{stopToken}}]""";

        var plain = await H.PostOkAsync("v1/completions", body + "}");
        Assert.Equal(expected, TokensOf(plain.GetProperty("choices")[0]));
        Assert.Equal("stop", plain.GetProperty("choices")[0].GetProperty("finish_reason").GetString());

        var events = await H.PostStreamAsync("v1/completions", body + """, "stream": true, "stream_options": {"include_usage": true}}""");
        var usageChunk = events[^1];
        Assert.Empty(usageChunk.GetProperty("choices").EnumerateArray());
        Assert.Equal(expected.Count, usageChunk.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(expected, events.SkipLast(1).SelectMany(e => TokensOf(e.GetProperty("choices")[0])));
        Assert.Equal("stop", events[^2].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task ModelsListsTheServedModel()
    {
        using var response = await H.Http.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var root = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("list", root.GetProperty("object").GetString());
        var model = Assert.Single(root.GetProperty("data").EnumerateArray());
        Assert.Equal("fake", model.GetProperty("id").GetString());
        Assert.Equal("model", model.GetProperty("object").GetString());
        Assert.Equal(64, model.GetProperty("max_model_len").GetInt32());
    }

    [Fact]
    public async Task HealthIsOk()
    {
        using var response = await H.Http.GetAsync("health");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ok", JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("status").GetString());
    }

    [Fact]
    public async Task UnknownRouteAndWrongMethodGetErrorObjects()
    {
        using var missing = await H.Http.GetAsync("v1/nothing");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("not_found", JsonDocument.Parse(await missing.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString());
        using var wrongMethod = await H.Http.GetAsync("v1/completions");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, wrongMethod.StatusCode);
        Assert.Equal("invalid_request_error", JsonDocument.Parse(await wrongMethod.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("type").GetString());
    }

    [Fact]
    public async Task ChatWithoutATemplateIsA400SayingWhy()
    {
        using var response = await H.PostAsync("v1/chat/completions", """{"messages": [{"role": "user", "content": "hi"}]}""");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.Equal("invalid_request_error", error.GetProperty("type").GetString());
        Assert.Equal("chat_template_missing", error.GetProperty("code").GetString());
        Assert.Contains("tokenizer", error.GetProperty("message").GetString());
        Assert.Contains("/v1/completions", error.GetProperty("message").GetString());
    }
}
