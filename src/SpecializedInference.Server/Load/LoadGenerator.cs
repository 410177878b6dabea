using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace SpecializedInference.Server.Load;

/// <summary>A bounded load check against <c>POST /v1/completions</c>.</summary>
public sealed record LoadTestOptions
{
    /// <summary>The server, e.g. <c>http://127.0.0.1:8000/</c>.</summary>
    public required Uri BaseAddress { get; init; }

    /// <summary>Requests to send in all (the check stops at this count or at <see cref="Duration"/>).</summary>
    public int Requests { get; init; } = 200;

    /// <summary>Requests in flight at once (closed loop: each client sends its next request when one ends).</summary>
    public int Concurrency { get; init; } = 16;

    /// <summary><c>max_tokens</c> of each request (sent with <c>ignore_eos</c>, so every request generates this many).</summary>
    public int MaxTokens { get; init; } = 16;

    /// <summary>Prompt length in token ids (when <see cref="PromptText"/> is null).</summary>
    public int PromptTokens { get; init; } = 8;

    /// <summary>Prompt token ids are drawn from [1, this): keep it within the model's vocabulary.</summary>
    public int PromptVocabulary { get; init; } = 32;

    /// <summary>A text prompt instead of random token ids (the server needs a tokenizer).</summary>
    public string? PromptText { get; init; }

    public bool Stream { get; init; } = true;

    /// <summary>No new request starts after this much time.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Requests sent first, at the same concurrency, and not measured (JIT, connection pool, thread pool warm-up).</summary>
    public int WarmupRequests { get; init; }

    /// <summary>Seed of the random prompts (request i uses seed + i).</summary>
    public int Seed { get; init; } = 1234;
}

/// <summary>What a load check measured. Latencies are end to end as the client saw them, in milliseconds.</summary>
public sealed record LoadTestResult(
    int Sent,
    int Succeeded,
    int Failed,
    double Seconds,
    double RequestsPerSecond,
    double LatencyP50Ms,
    double LatencyP95Ms,
    double LatencyMaxMs,
    double TimeToFirstTokenP50Ms,
    double TimeToFirstTokenP95Ms,
    long CompletionTokens,
    double CompletionTokensPerSecond,
    IReadOnlyList<string> FirstErrors)
{
    public string Summary =>
        FormattableString.Invariant($"{Succeeded}/{Sent} requests ok in {Seconds:F2} s: {RequestsPerSecond:F1} req/s, latency p50 {LatencyP50Ms:F1} ms, p95 {LatencyP95Ms:F1} ms, max {LatencyMaxMs:F1} ms; ")
        + (double.IsNaN(TimeToFirstTokenP50Ms) ? "" : FormattableString.Invariant($"TTFT p50 {TimeToFirstTokenP50Ms:F1} ms, p95 {TimeToFirstTokenP95Ms:F1} ms; "))
        + FormattableString.Invariant($"{CompletionTokens} tokens, {CompletionTokensPerSecond:F0} tokens/s");
}

/// <summary>Sends completion requests from <see cref="LoadTestOptions.Concurrency"/> clients and measures them.</summary>
public static class LoadGenerator
{
    public static async Task<LoadTestResult> RunAsync(HttpClient http, LoadTestOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(http);
        ArgumentNullException.ThrowIfNull(options);
        if (options.Requests < 1 || options.Concurrency < 1 || options.MaxTokens < 1 || options.PromptTokens < 1 || options.PromptVocabulary < 2 || options.WarmupRequests < 0)
            throw new ArgumentOutOfRangeException(nameof(options), "requests, concurrency, max_tokens and prompt tokens must be at least 1, the prompt vocabulary at least 2, warm-up requests at least 0.");
        var endpoint = new Uri(options.BaseAddress, "v1/completions");
        if (options.WarmupRequests > 0)
        {
            int warm = -1;
            await Task.WhenAll(Enumerable.Range(0, options.Concurrency).Select(_ => Task.Run(async () =>
            {
                while (Interlocked.Increment(ref warm) < options.WarmupRequests)
                    await SendAsync(http, endpoint, Body(options, -1 - warm), options.Stream, Stopwatch.GetTimestamp(), cancellationToken).ConfigureAwait(false);
            }, cancellationToken))).ConfigureAwait(false);
        }
        var latencies = new ConcurrentBag<double>();
        var ttfts = new ConcurrentBag<double>();
        var errors = new ConcurrentQueue<string>();
        int next = -1, failed = 0, sent = 0;
        long tokens = 0;
        var clock = Stopwatch.StartNew();

        async Task Client()
        {
            while (true)
            {
                int i = Interlocked.Increment(ref next);
                if (i >= options.Requests || clock.Elapsed >= options.Duration || cancellationToken.IsCancellationRequested)
                    return;
                Interlocked.Increment(ref sent);
                long start = Stopwatch.GetTimestamp();
                try
                {
                    var (count, ttft) = await SendAsync(http, endpoint, Body(options, i), options.Stream, start, cancellationToken).ConfigureAwait(false);
                    latencies.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                    if (ttft is { } t)
                        ttfts.Add(t);
                    Interlocked.Add(ref tokens, count);
                }
                catch (Exception e) when (!cancellationToken.IsCancellationRequested)
                {
                    Interlocked.Increment(ref failed);
                    if (errors.Count < 5)
                        errors.Enqueue($"request {i}: {e.Message}");
                }
            }
        }

        await Task.WhenAll(Enumerable.Range(0, options.Concurrency).Select(_ => Task.Run(Client, cancellationToken))).ConfigureAwait(false);
        double seconds = clock.Elapsed.TotalSeconds;
        var sorted = latencies.OrderBy(x => x).ToArray();
        var sortedTtft = ttfts.OrderBy(x => x).ToArray();
        return new LoadTestResult(sent, sorted.Length, failed, seconds, sorted.Length / seconds,
            Rank(sorted, 0.50), Rank(sorted, 0.95), sorted.Length == 0 ? double.NaN : sorted[^1],
            Rank(sortedTtft, 0.50), Rank(sortedTtft, 0.95), tokens, tokens / seconds, errors.ToArray());
    }

    // Nearest rank.
    private static double Rank(double[] sorted, double p) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static byte[] Body(LoadTestOptions o, int index)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            if (o.PromptText is { } text)
            {
                w.WriteString("prompt", text);
            }
            else
            {
                var random = new Random(o.Seed + index);
                w.WriteStartArray("prompt");
                for (int t = 0; t < o.PromptTokens; t++)
                    w.WriteNumberValue(random.Next(1, o.PromptVocabulary));
                w.WriteEndArray();
            }
            w.WriteNumber("max_tokens", o.MaxTokens);
            w.WriteBoolean("ignore_eos", true);
            w.WriteBoolean("stream", o.Stream);
            w.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static async Task<(long Tokens, double? TtftMs)> SendAsync(HttpClient http, Uri endpoint, byte[] body, bool stream, long start, CancellationToken cancellationToken)
    {
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, endpoint) { Content = content };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            string error = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            throw new HttpRequestException($"HTTP {(int)response.StatusCode}: {error}");
        }
        if (!stream)
        {
            using var json = JsonDocument.Parse(await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false));
            return (json.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt64(), null);
        }

        long tokens = 0;
        double? ttft = null;
        bool done = false;
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false), Encoding.UTF8);
        while (await reader.ReadLineAsync(cancellationToken).ConfigureAwait(false) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal))
                continue;
            var data = line.AsMemory(6);
            if (data.Span.SequenceEqual("[DONE]"))
            {
                done = true;
                break;
            }
            using var chunk = JsonDocument.Parse(data);
            if (chunk.RootElement.TryGetProperty("error", out var error))
                throw new HttpRequestException($"stream error: {error.GetProperty("message").GetString()}");
            foreach (var choice in chunk.RootElement.GetProperty("choices").EnumerateArray())
            {
                int n = choice.GetProperty("tokens").GetArrayLength();
                if (n > 0 && ttft is null)
                    ttft = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
                tokens += n;
            }
        }
        if (!done)
            throw new HttpRequestException("The stream ended without data: [DONE].");
        return (tokens, ttft);
    }
}
