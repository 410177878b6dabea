using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Server;
using SpecializedInference.Tests.Scheduling;
using SpecializedInference.Text;

namespace SpecializedInference.Tests.Server;

/// <summary>
/// A real server on 127.0.0.1 (port 0, the bound address read back) over an <see cref="InferenceEngine"/>
/// whose model is the <see cref="FakeModelRunner"/>, and a real <see cref="HttpClient"/> talking to it.
/// </summary>
internal sealed class ServerHarness : IAsyncDisposable
{
    private ServerHarness(FakeModelRunner runner, InferenceEngine engine, InferenceServer server, HttpClient http)
    {
        Runner = runner;
        Engine = engine;
        Server = server;
        Http = http;
    }

    public FakeModelRunner Runner { get; }

    public InferenceEngine Engine { get; }

    public InferenceServer Server { get; }

    public HttpClient Http { get; }

    public int VocabSize => Runner.VocabSize;

    public static async Task<ServerHarness> StartAsync(
        ServerOptions? serverOptions = null,
        EngineOptions? engineOptions = null,
        ITextTokenizer? tokenizer = null,
        IChatTemplate? chatTemplate = null,
        TokenSamplerFactory? samplers = null,
        int numBlocks = 256,
        int blockSize = 4,
        int vocabSize = 32,
        int maxSeqLen = 64)
    {
        var runner = new FakeModelRunner(numBlocks, blockSize, vocabSize, maxSeqLen);
        var engine = new InferenceEngine(runner, engineOptions ?? new EngineOptions { MaxBatchSize = 8, MaxNumBatchedTokens = 64 }, samplers);
        InferenceServer? server = null;
        try
        {
            server = InferenceServer.Create(engine, (serverOptions ?? new ServerOptions()) with { Host = "127.0.0.1", Port = 0, ModelName = "fake" }, tokenizer, chatTemplate);
            await server.StartAsync();
            Assert.Equal("127.0.0.1", server.BaseAddress.Host);
            Assert.NotEqual(0, server.BaseAddress.Port);
            var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
            return new ServerHarness(runner, engine, server, http);
        }
        catch
        {
            if (server is not null)
                await server.DisposeAsync();
            engine.Dispose();
            throw;
        }
    }

    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public Task<HttpResponseMessage> PostAsync(string path, string json) => Http.PostAsync(path, Json(json));

    /// <summary>POSTs and returns the parsed 200 body.</summary>
    public async Task<JsonElement> PostOkAsync(string path, string json)
    {
        using var response = await PostAsync(path, json);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"HTTP {(int)response.StatusCode}: {body}");
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>POSTs a streaming request and returns its events, checking the framing strictly:
    /// every event is exactly <c>data: &lt;json&gt;\n\n</c> and the last is <c>data: [DONE]</c>.</summary>
    public async Task<List<JsonElement>> PostStreamAsync(string path, string json)
    {
        using var response = await PostAsync(path, json);
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"HTTP {(int)response.StatusCode}: {body}");
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        return ParseEvents(body);
    }

    public static List<JsonElement> ParseEvents(string body)
    {
        Assert.EndsWith("data: [DONE]\n\n", body);
        var events = body[..^"data: [DONE]\n\n".Length].Split("\n\n");
        Assert.Equal("", events[^1]);
        var parsed = new List<JsonElement>();
        foreach (var e in events[..^1])
        {
            Assert.StartsWith("data: ", e);
            Assert.DoesNotContain('\n', e);
            parsed.Add(JsonDocument.Parse(e["data: ".Length..]).RootElement.Clone());
        }
        return parsed;
    }

    public async Task<string> MetricsAsync()
    {
        using var response = await Http.GetAsync("metrics");
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>Waits until the engine holds no request and no KV block (blocks are freed on the engine thread).</summary>
    public async Task<EngineStatistics> WaitUntilIdleAsync(TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(10));
        while (true)
        {
            var s = Engine.Snapshot();
            if (s.RunningRequests == 0 && s.WaitingRequests == 0 && s.KvCache.UsedBlocks == 0 && Server.InFlight == 0)
                return s;
            if (DateTime.UtcNow > deadline)
                Assert.Fail($"The engine did not become idle: {s.RunningRequests} running, {s.WaitingRequests} waiting, {s.KvCache.UsedBlocks} blocks used, {Server.InFlight} in flight.");
            await Task.Delay(10);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await Server.DisposeAsync();
        Engine.Dispose();
    }

    public static string Ids(IEnumerable<int> ids) => "[" + string.Join(",", ids) + "]";

    public static int[] TokensOf(JsonElement choice) => choice.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
}

/// <summary>
/// A sampler factory for tests that must control the output: a request whose <c>seed</c> names a script
/// gets exactly that script's tokens (then EOS); other requests are greedy.
/// </summary>
internal static class ScriptedSamplers
{
    public static TokenSamplerFactory For(IReadOnlyDictionary<ulong, int[]> scripts, int eos) => parameters =>
        parameters.Seed is { } seed && scripts.TryGetValue(seed, out var script) ? new Scripted(script, eos)
        : parameters.IsGreedy ? GreedyTokenSampler.Instance
        : throw new NotSupportedException("The test engine decodes greedily.");

    private sealed class Scripted(int[] script, int eos) : ITokenSampler
    {
        private int _next;

        public int Sample(ReadOnlySpan<float> logits) => _next < script.Length ? script[_next++] : eos;
    }
}

/// <summary>A chat template for tests: "role: content" lines, then "assistant:".</summary>
internal sealed class LineChatTemplate : IChatTemplate
{
    public bool AddBos => true;

    public string Render(IReadOnlyList<ChatMessage> messages) =>
        string.Concat(messages.Select(m => $"{m.Role}: {m.Content}\n")) + "assistant:";
}
