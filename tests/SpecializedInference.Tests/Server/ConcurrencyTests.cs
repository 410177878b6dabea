using System.Net;
using System.Text;
using SpecializedInference.Engine;
using SpecializedInference.Server;
using SpecializedInference.Tests.Scheduling;
using Xunit.Abstractions;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

public sealed class ConcurrencyTests(ITestOutputHelper output)
{
    /// <summary>64 streams at once over a batch of 16: every one gets exactly the tokens it would get alone.</summary>
    [Fact]
    public async Task SixtyFourConcurrentStreamsAllCompleteWithCorrectTokens()
    {
        await using var h = await ServerHarness.StartAsync(
            new ServerOptions { MaxWaitingRequests = 64 },
            new EngineOptions { MaxBatchSize = 16, MaxNumBatchedTokens = 64 },
            numBlocks: 512, maxSeqLen: 64);
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var requests = Enumerable.Range(0, 64).Select(i =>
        {
            // Some prompts share a prefix (prefix cache), lengths cross block boundaries.
            var prompt = (i % 4 == 0 ? new[] { 1, 2, 3, 4, 5 } : Array.Empty<int>())
                .Concat(Enumerable.Range(0, random.Next(1, 12)).Select(_ => random.Next(h.VocabSize))).ToArray();
            return (Prompt: prompt, MaxTokens: random.Next(1, 25));
        }).ToArray();

        var results = await Task.WhenAll(requests.Select(r =>
            h.PostStreamAsync("v1/completions", $$"""{"prompt": {{Ids(r.Prompt)}}, "max_tokens": {{r.MaxTokens}}, "stream": true}""")));

        for (int i = 0; i < requests.Length; i++)
        {
            var expected = FakeModelRunner.GreedyReference(requests[i].Prompt, requests[i].MaxTokens, h.VocabSize);
            Assert.True(expected.SequenceEqual(results[i].SelectMany(e => TokensOf(e.GetProperty("choices")[0]))),
                $"seed {seed}: request {i} (prompt {Ids(requests[i].Prompt)}) got other tokens than it gets alone");
            Assert.Equal("length", results[i][^1].GetProperty("choices")[0].GetProperty("finish_reason").GetString());
        }
        var stats = await h.WaitUntilIdleAsync();
        Assert.True(stats.BatchSizeHistogram.Skip(2).Any(n => n > 0), "requests never ran batched");
        Assert.Equal(64, stats.CompletedRequests);
    }

    /// <summary>A client that disconnects mid-stream cancels its request, every choice of it: the engine frees their blocks.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public async Task DisconnectCancelsTheRequestAndFreesItsBlocks(int choices)
    {
        await using var h = await ServerHarness.StartAsync(maxSeqLen: 256, numBlocks: 128);
        h.Runner.BeforeExecute = _ => Thread.Sleep(5); // ~5 ms per token: the stream is still running when we leave
        int[] prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5];
        byte[] body = Encoding.UTF8.GetBytes($$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 200, "stream": true, "n": {{choices}}}""");

        // A raw socket, so leaving really closes the connection (HttpClient would drain the response to reuse it).
        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync(h.Server.BaseAddress.Host, h.Server.BaseAddress.Port);
            var stream = client.GetStream();
            string head = $"POST /v1/completions HTTP/1.1\r\nHost: {h.Server.BaseAddress.Authority}\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\n\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
            await stream.WriteAsync(body);
            var received = new StringBuilder();
            var buffer = new byte[4096];
            while (!received.ToString().Contains("data: {"))
            {
                int n = await stream.ReadAsync(buffer);
                Assert.True(n > 0, $"the server closed the connection: {received}");
                received.Append(Encoding.UTF8.GetString(buffer, 0, n));
            }
            Assert.StartsWith("HTTP/1.1 200", received.ToString());
            // A prompt's later choices are submitted once its first has its first token.
            var during = h.Engine.Snapshot();
            for (var wait = System.Diagnostics.Stopwatch.StartNew(); during.RunningRequests + during.WaitingRequests < choices && wait.Elapsed.TotalSeconds < 5; during = h.Engine.Snapshot())
                await Task.Delay(5);
            Assert.Equal(choices, during.RunningRequests + during.WaitingRequests);
            Assert.True(during.KvCache.UsedBlocks >= 3, $"{during.KvCache.UsedBlocks} blocks used while running");
            client.Client.Close(); // leave
        }

        var after = await h.WaitUntilIdleAsync();
        Assert.Equal(0, after.KvCache.UsedBlocks);
        Assert.Equal(choices, after.CancelledRequests);
        Assert.True(after.GeneratedTokens < 200 * choices, $"{after.GeneratedTokens} tokens: the request was not cancelled");
        var metrics = PrometheusTextParser.Parse(await h.MetricsAsync());
        Assert.Equal(0, metrics.Value("si_kv_cache_usage_ratio"));
        Assert.Equal(choices, metrics.Value("si_request_finished_total", ("finished_reason", "abort")));
        Assert.Equal(0, metrics.Value("si_requests_running"));
    }

    /// <summary>A client that gives up on a plain (non-streamed) request before its answer cancels it too.</summary>
    [Fact]
    public async Task ClientTimeoutOnAPlainRequestCancelsIt()
    {
        await using var h = await ServerHarness.StartAsync(maxSeqLen: 256, numBlocks: 128);
        // The client gives up once the request is running (a fixed timeout could fire before the request even
        // reaches the engine on a loaded machine, and then there is nothing to cancel).
        var running = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Runner.BeforeExecute = _ => { running.TrySetResult(); Thread.Sleep(5); };
        using var giveUp = new CancellationTokenSource();
        var post = h.Http.PostAsync("v1/completions", Json("""{"prompt": [1, 2, 3], "max_tokens": 200}"""), giveUp.Token);
        await running.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await Task.Delay(50);
        giveUp.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => post);
        var after = await h.WaitUntilIdleAsync();
        Assert.Equal(1, after.CancelledRequests);
        Assert.Equal(0, after.KvCache.UsedBlocks);
        Assert.True(after.GeneratedTokens < 200, $"{after.GeneratedTokens} tokens: the request was not cancelled");
    }

    /// <summary>Past max batch + max waiting, a request gets 429 with Retry-After; others are unharmed.</summary>
    [Fact]
    public async Task FullQueueIs429WithRetryAfter()
    {
        await using var h = await ServerHarness.StartAsync(
            new ServerOptions { MaxWaitingRequests = 1, RetryAfterSeconds = 2 },
            new EngineOptions { MaxBatchSize = 1, MaxNumBatchedTokens = 16 });
        Assert.Equal(2, h.Server.Capacity);
        using var gate = new ManualResetEventSlim(false);
        h.Runner.BeforeExecute = _ => gate.Wait(TimeSpan.FromSeconds(30));

        int[] prompt = [7, 7, 7];
        string body = $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 3, "stream": true}""";
        var running = new List<HttpResponseMessage>();
        for (int i = 0; i < 2; i++)
        {
            var message = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = Json(body) };
            running.Add(await h.Http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead));
            Assert.Equal(HttpStatusCode.OK, running[^1].StatusCode);
        }
        Assert.Equal(2, h.Server.InFlight);

        using (var rejected = await h.PostAsync("v1/completions", body))
        {
            var error = await BadRequestTests.AssertErrorAsync(rejected, HttpStatusCode.TooManyRequests, null);
            Assert.Equal("queue_full", error.GetProperty("code").GetString());
            Assert.Equal(TimeSpan.FromSeconds(2), rejected.Headers.RetryAfter?.Delta);
        }

        gate.Set();
        var expected = FakeModelRunner.GreedyReference(prompt, 3, h.VocabSize);
        foreach (var response in running)
        {
            var events = ParseEvents(await response.Content.ReadAsStringAsync());
            Assert.Equal(expected, events.SelectMany(e => TokensOf(e.GetProperty("choices")[0])));
            response.Dispose();
        }
        await h.WaitUntilIdleAsync();
        var again = await h.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 3}""");
        Assert.Equal(expected, TokensOf(again.GetProperty("choices")[0]));
        var metrics = PrometheusTextParser.Parse(await h.MetricsAsync());
        Assert.Equal(1, metrics.Value("si_request_rejected_total", ("reason", "queue_full")));
    }
}
