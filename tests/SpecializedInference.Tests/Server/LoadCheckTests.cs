using SpecializedInference.Engine;
using SpecializedInference.Server;
using SpecializedInference.Server.Load;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Server;

/// <summary>
/// A bounded load check over loopback (at most 200 requests or 20 s). It prints requests/s and latency
/// percentiles; it asserts only correctness (every request succeeded with all its tokens), never speed.
/// </summary>
public sealed class LoadCheckTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task LoadCheckReportsThroughputAndLatency(bool stream)
    {
        await using var h = await ServerHarness.StartAsync(
            new ServerOptions { MaxWaitingRequests = 64 },
            new EngineOptions { MaxBatchSize = 16, MaxNumBatchedTokens = 128 },
            numBlocks: 512, maxSeqLen: 64);
        var options = new LoadTestOptions
        {
            BaseAddress = h.Server.BaseAddress,
            Requests = 200,
            Concurrency = 16,
            MaxTokens = 16,
            PromptTokens = 8,
            PromptVocabulary = h.VocabSize,
            Stream = stream,
            WarmupRequests = 16,
            Duration = TimeSpan.FromSeconds(20),
        };
        var result = await LoadGenerator.RunAsync(h.Http, options);
        output.WriteLine($"{(stream ? "streaming" : "plain")}, concurrency {options.Concurrency}, fake model runner: {result.Summary}");
        Assert.True(result.Failed == 0, string.Join("; ", result.FirstErrors));
        Assert.Equal(result.Sent, result.Succeeded);
        Assert.Equal(result.Succeeded * 16L, result.CompletionTokens);
        var stats = await h.WaitUntilIdleAsync();
        Assert.Equal(result.Succeeded + options.WarmupRequests, stats.CompletedRequests);
    }
}
