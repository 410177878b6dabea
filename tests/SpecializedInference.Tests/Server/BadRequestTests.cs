using System.Net;
using System.Text;
using System.Text.Json;
using SpecializedInference.Server;
using SpecializedInference.Tests.Scheduling;
using SpecializedInference.Text;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary>A token-id server (vocabulary 32, max_seq_len 64, body limit 4 KiB) that receives bad requests.</summary>
public sealed class BadRequestFixture : IAsyncLifetime
{
    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync(new ServerOptions { MaxRequestBodyBytes = 4096 });

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

public sealed class BadRequestTests(BadRequestFixture fixture) : IClassFixture<BadRequestFixture>
{
    private ServerHarness H => fixture.Harness;

    private static readonly string LongPrompt64 = Ids(Enumerable.Repeat(3, 64));
    private static readonly string LongPrompt100 = Ids(Enumerable.Repeat(3, 100));

    /// <summary>Body → the field the error must name (null: the body as a whole).</summary>
    public static TheoryData<string, string?> BadBodies => new()
    {
        { """{"prompt": [1, 2, 3], "max_tokens": 0}""", "max_tokens" },
        { """{"prompt": [1, 2, 3], "max_tokens": -5}""", "max_tokens" },
        { """{"prompt": [1, 2, 3], "max_tokens": "10"}""", "max_tokens" },
        { """{"prompt": [1, 2, 3], "max_tokens": 1.5}""", "max_tokens" },
        { """{"prompt": [1, 2, 3], "max_tokens": 65}""", "max_tokens" },
        { """{"prompt": [1, 2, 3], "max_tokens": 62}""", "max_tokens" },
        { """{"prompt": [1, 2, 3], "max_tokens": 99999999999}""", "max_tokens" },
        { $$"""{"prompt": {{LongPrompt64}}, "max_tokens": 1}""", "prompt" },
        { $$"""{"prompt": {{LongPrompt100}}}""", "prompt" },
        { """{"prompt": 5}""", "prompt" },
        { """{"prompt": {"text": "x"}}""", "prompt" },
        { """{"prompt": [1, "x"]}""", "prompt" },
        { """{"prompt": [1, 2.5]}""", "prompt" },
        { """{"prompt": [[1, 2], 3]}""", "prompt" },
        { """{"prompt": [[1, 2], []]}""", "prompt" },
        { """{"prompt": [[1, 2], [1, 32]]}""", "prompt" },
        { """{"prompt": [[1, 2], "text needs a tokenizer"]}""", "prompt" },
        { """{"prompt": []}""", "prompt" },
        { """{"prompt": [1, 32]}""", "prompt" },
        { """{"prompt": [-1]}""", "prompt" },
        { """{"max_tokens": 4}""", "prompt" },
        { """{"prompt": "text needs a tokenizer"}""", "prompt" },
        { """{"prompt": [1], "temperature": "hot"}""", "temperature" },
        { """{"prompt": [1], "temperature": 3}""", "temperature" },
        { """{"prompt": [1], "temperature": 0.7}""", "temperature" },
        { """{"prompt": [1], "top_p": 0}""", "top_p" },
        { """{"prompt": [1], "top_k": -2}""", "top_k" },
        { """{"prompt": [1], "seed": -1}""", "seed" },
        { """{"prompt": [1], "seed": "abc"}""", "seed" },
        { """{"prompt": [1], "stream": "yes"}""", "stream" },
        { """{"prompt": [1], "stream": true, "stream_options": {"include_usage": 1}}""", "stream_options.include_usage" },
        { """{"prompt": [1], "stop": 5}""", "stop" },
        { """{"prompt": [1], "stop": ["x"]}""", "stop" },
        { """{"prompt": [1], "stop_token_ids": [40]}""", "stop_token_ids" },
        { """{"prompt": [1], "stop_token_ids": "2"}""", "stop_token_ids" },
        { """{"prompt": [1], "n": 0}""", "n" },
        { """{"prompt": [1], "n": 17}""", "n" },
        { """{"prompt": [1], "n": 2, "best_of": 3}""", "best_of" },
        { """{"prompt": [1], "echo": "yes"}""", "echo" },
        { """{"prompt": [1], "logprobs": 21}""", "logprobs" },
        { """{"prompt": [1], "logprobs": -1}""", "logprobs" },
        { """{"prompt": [1], "logprobs": true}""", "logprobs" },
        { """{"prompt": [1], "logprobs": "2"}""", "logprobs" },
        { """{"prompt": [1], "presence_penalty": 2.5}""", "presence_penalty" },
        { """{"prompt": [1], "frequency_penalty": -3}""", "frequency_penalty" },
        { """{"prompt": [1], "frequency_penalty": "high"}""", "frequency_penalty" },
        { """{"prompt": [1], "repetition_penalty": 0}""", "repetition_penalty" },
        { """{"prompt": [1], "repetition_penalty": -1.2}""", "repetition_penalty" },
        { """{"prompt": [1], "logit_bias": []}""", "logit_bias" },
        { """{"prompt": [1], "logit_bias": {"abc": 1}}""", "logit_bias" },
        { """{"prompt": [1], "logit_bias": {"32": 1}}""", "logit_bias" },
        { """{"prompt": [1], "logit_bias": {"-1": 1}}""", "logit_bias" },
        { """{"prompt": [1], "logit_bias": {"3": 101}}""", "logit_bias" },
        { """{"prompt": [1], "logit_bias": {"3": "high"}}""", "logit_bias" },
        { """{"prompt": [1], "max_token": 4}""", "max_token" },
        { """{"prompt": [1], "min_p": 1.5}""", "min_p" },
        { """{"prompt": [1], "min_tokens": -1}""", "min_tokens" },
        { """{"prompt": [1], "max_tokens": 4, "min_tokens": 5}""", "min_tokens" },
        { """{"prompt": [1], "messages": []}""", "messages" },
        { """{"prompt": [1], "model": 7}""", "model" },
        { """{"prompt": [1], "ignore_eos": "no"}""", "ignore_eos" },
        { """{"prompt": [1, 2""", null },
        { """not json""", null },
        { """[1, 2, 3]""", null },
        { "", null },
    };

    [Theory]
    [MemberData(nameof(BadBodies))]
    public async Task BadInputGets400NamingTheField(string body, string? param)
    {
        using var response = await H.PostAsync("v1/completions", body);
        await AssertErrorAsync(response, HttpStatusCode.BadRequest, param);
    }

    [Fact]
    public async Task TextPromptWithoutTokenizerSaysOnlyTokenIdsCanBeUsed()
    {
        using var response = await H.PostAsync("v1/completions", """{"prompt": "hello"}""");
        var error = await AssertErrorAsync(response, HttpStatusCode.BadRequest, "prompt");
        Assert.Contains("only token ids", error.GetProperty("message").GetString());
        Assert.Equal("tokenizer_missing", error.GetProperty("code").GetString());
    }

    [Theory]
    [InlineData("tokenize", """{"prompt": "hello"}""", "prompt")]
    [InlineData("detokenize", """{"tokens": [1, 2]}""", "tokens")]
    public async Task TokenizingWithoutATokenizerSaysSo(string path, string body, string param)
    {
        using var response = await H.PostAsync(path, body);
        var error = await AssertErrorAsync(response, HttpStatusCode.BadRequest, param);
        Assert.Equal("tokenizer_missing", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task UnknownModelIs404ModelNotFound()
    {
        using var response = await H.PostAsync("v1/completions", """{"model": "gpt-4", "prompt": [1]}""");
        var error = await AssertErrorAsync(response, HttpStatusCode.NotFound, "model");
        Assert.Equal("model_not_found", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task BodyOverTheLimitIs400WithContentLength()
    {
        string body = $$"""{"prompt": [1], "padding": "{{new string('x', 5000)}}"}""";
        using var response = await H.PostAsync("v1/completions", body);
        var error = await AssertErrorAsync(response, HttpStatusCode.BadRequest, null);
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
    }

    [Fact]
    public async Task BodyOverTheLimitIs400WhenChunked()
    {
        byte[] body = Encoding.UTF8.GetBytes($$"""{"prompt": [1], "padding": "{{new string('x', 5000)}}"}""");
        var content = new StreamContent(new MemoryStream(body)); // no Content-Length: sent chunked
        content.Headers.ContentType = new("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;
        using var response = await H.Http.SendAsync(request);
        var error = await AssertErrorAsync(response, HttpStatusCode.BadRequest, null);
        Assert.Equal("request_too_large", error.GetProperty("code").GetString());
    }

    /// <summary>A stream runs while every bad request above is sent at once; it still gets exactly its tokens.</summary>
    [Fact]
    public async Task BadRequestsDoNotHarmARunningRequest()
    {
        int[] prompt = [4, 8, 15, 16, 23];
        var expected = FakeModelRunner.GreedyReference(prompt, 40, H.VocabSize);
        H.Runner.BeforeExecute = _ => Thread.Sleep(1);
        try
        {
            var good = H.PostStreamAsync("v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 40, "stream": true}""");
            var bad = BadBodies.Select(row => H.PostAsync("v1/completions", (string)row[0])).ToArray();
            foreach (var response in await Task.WhenAll(bad))
            {
                Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
                response.Dispose();
            }
            var events = await good;
            Assert.Equal(expected, events.SelectMany(e => TokensOf(e.GetProperty("choices")[0])));
        }
        finally
        {
            H.Runner.BeforeExecute = null;
        }
        var stats = await H.WaitUntilIdleAsync();
        Assert.Equal(0, stats.FailedRequests);
    }

    /// <summary>An exception the server did not expect becomes a 500 error object without any detail.</summary>
    [Fact]
    public async Task UnexpectedExceptionIs500WithoutDetails()
    {
        await using var h = await ServerHarness.StartAsync(tokenizer: new ThrowingTokenizer());
        using var response = await h.PostAsync("v1/completions", """{"prompt": "boom"}""");
        string body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        var error = JsonDocument.Parse(body).RootElement.GetProperty("error");
        Assert.Equal("server_error", error.GetProperty("type").GetString());
        Assert.Equal("internal_error", error.GetProperty("code").GetString());
        Assert.DoesNotContain(ThrowingTokenizer.Secret, body);
        Assert.DoesNotContain(" at ", body);
        Assert.DoesNotContain("Exception", body);

        // The server keeps serving.
        var ok = await h.PostOkAsync("v1/completions", """{"prompt": [1, 2], "max_tokens": 2}""");
        Assert.Equal(2, TokensOf(ok.GetProperty("choices")[0]).Length);
    }

    internal static async Task<JsonElement> AssertErrorAsync(HttpResponseMessage response, HttpStatusCode status, string? param)
    {
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(status == response.StatusCode, $"expected {(int)status}, got {(int)response.StatusCode}: {body}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var root = JsonDocument.Parse(body).RootElement;
        Assert.Single(root.EnumerateObject());
        var error = root.GetProperty("error");
        Assert.Equal(["message", "type", "param", "code"], error.EnumerateObject().Select(p => p.Name));
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(status == HttpStatusCode.TooManyRequests ? "rate_limit_error" : "invalid_request_error", error.GetProperty("type").GetString());
        if (param is null)
            Assert.Equal(JsonValueKind.Null, error.GetProperty("param").ValueKind);
        else
            Assert.Equal(param, error.GetProperty("param").GetString());
        Assert.Equal(JsonValueKind.String, error.GetProperty("code").ValueKind);
        Assert.DoesNotContain("   at ", body);
        return error.Clone();
    }

    private sealed class ThrowingTokenizer : ITextTokenizer
    {
        public const string Secret = "secret-internal-detail";

        public int[] Encode(string text, bool addBos) => throw new InvalidOperationException(Secret);

        public string Decode(ReadOnlySpan<int> ids) => "";

        public byte[] TokenBytes(int id) => [];
    }
}
