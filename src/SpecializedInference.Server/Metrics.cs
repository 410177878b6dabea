using System.Globalization;
using System.Text;
using SpecializedInference.Engine;

namespace SpecializedInference.Server;

/// <summary>What the server itself counts (the engine counts the rest); thread-safe.</summary>
internal sealed class ServerMetrics
{
    private long _promptTokens;
    private long _finishedStop, _finishedLength, _aborted, _failed;
    private long _rejectedInvalid, _rejectedQueueFull, _rejectedUnavailable;

    public void AddPromptTokens(int tokens) => Interlocked.Add(ref _promptTokens, tokens);

    public void Finished(RequestOutcome outcome, string? finishReason)
    {
        switch (outcome)
        {
            case RequestOutcome.Finished when finishReason == "length": Interlocked.Increment(ref _finishedLength); break;
            case RequestOutcome.Finished: Interlocked.Increment(ref _finishedStop); break;
            case RequestOutcome.Aborted: Interlocked.Increment(ref _aborted); break;
            default: Interlocked.Increment(ref _failed); break;
        }
    }

    public void Rejected(int status)
    {
        switch (status)
        {
            case 429: Interlocked.Increment(ref _rejectedQueueFull); break;
            case >= 500: Interlocked.Increment(ref _rejectedUnavailable); break;
            default: Interlocked.Increment(ref _rejectedInvalid); break;
        }
    }

    public long PromptTokens => Interlocked.Read(ref _promptTokens);

    public IEnumerable<(string Reason, long Count)> FinishedByReason =>
    [
        ("stop", Interlocked.Read(ref _finishedStop)),
        ("length", Interlocked.Read(ref _finishedLength)),
        ("abort", Interlocked.Read(ref _aborted)),
        ("error", Interlocked.Read(ref _failed)),
    ];

    public IEnumerable<(string Reason, long Count)> RejectedByReason =>
    [
        ("invalid_request", Interlocked.Read(ref _rejectedInvalid)),
        ("queue_full", Interlocked.Read(ref _rejectedQueueFull)),
        ("unavailable", Interlocked.Read(ref _rejectedUnavailable)),
    ];
}

/// <summary>How a request that reached the engine ended.</summary>
internal enum RequestOutcome
{
    /// <summary>Stop (EOS, stop token or stop string) or length.</summary>
    Finished,

    /// <summary>The client left or the server is stopping; the engine freed the request's blocks.</summary>
    Aborted,

    /// <summary>The model runner or sampler failed on it.</summary>
    Failed,

    /// <summary>The engine was disposed under it.</summary>
    EngineStopped,
}

/// <summary>
/// Renders the metrics in the Prometheus text exposition format 0.0.4: per family a HELP and a TYPE line,
/// then its samples; every sample carries <c>model_name</c>. Latencies are in seconds.
/// </summary>
internal static class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    public static string Render(EngineStatistics s, ServerMetrics m, int inFlight, string modelName)
    {
        var w = new Writer(modelName);
        w.Family("si_requests_running", "gauge", "Requests running in the engine (holding KV blocks, scheduled every step).");
        w.Sample("si_requests_running", s.RunningRequests);
        w.Family("si_requests_waiting", "gauge", "Requests queued in the engine, waiting to be admitted (new or preempted).");
        w.Sample("si_requests_waiting", s.WaitingRequests);
        w.Family("si_requests_in_flight", "gauge", "Requests the HTTP server has accepted and not finished.");
        w.Sample("si_requests_in_flight", inFlight);

        var kv = s.KvCache;
        w.Family("si_kv_cache_usage_ratio", "gauge", "Fraction of KV-cache blocks held by requests (0 to 1).");
        w.Sample("si_kv_cache_usage_ratio", kv.TotalBlocks == 0 ? 0 : (double)kv.UsedBlocks / kv.TotalBlocks);
        w.Family("si_kv_cache_blocks", "gauge", "KV-cache blocks by state: used by requests, cached (reusable prefix, evictable), free.");
        w.Sample("si_kv_cache_blocks", kv.UsedBlocks, ("state", "used"));
        w.Sample("si_kv_cache_blocks", kv.CachedBlocks, ("state", "cached"));
        w.Sample("si_kv_cache_blocks", kv.FreeBlocks, ("state", "free"));
        w.Family("si_kv_cache_evictions_total", "counter", "Cached KV blocks evicted to make room.");
        w.Sample("si_kv_cache_evictions_total", s.Evictions);

        w.Family("si_prefix_cache_queries_total", "counter", "Prompt tokens looked up in the prefix cache at admission.");
        w.Sample("si_prefix_cache_queries_total", s.PrefixCacheQueryTokens);
        w.Family("si_prefix_cache_hits_total", "counter", "Prompt tokens served from the prefix cache instead of computed.");
        w.Sample("si_prefix_cache_hits_total", s.PrefixCacheHitTokens);
        w.Family("si_prefix_cache_hit_rate", "gauge", "Prefix-cache hits / queries in tokens since the start (0 before any query).");
        w.Sample("si_prefix_cache_hit_rate", s.PrefixCacheHitRate);

        w.Family("si_prompt_tokens_total", "counter", "Prompt tokens of the requests the server submitted to the engine.");
        w.Sample("si_prompt_tokens_total", m.PromptTokens);
        w.Family("si_prefill_tokens_total", "counter", "Prompt tokens the model computed (prefix-cache hits excluded, recomputation after preemption included).");
        w.Sample("si_prefill_tokens_total", s.PrefillTokens);
        w.Family("si_generation_tokens_total", "counter", "Tokens generated.");
        w.Sample("si_generation_tokens_total", s.GeneratedTokens);
        w.Family("si_num_preemptions_total", "counter", "Requests preempted (KV blocks freed, recomputed later).");
        w.Sample("si_num_preemptions_total", s.Preemptions);
        w.Family("si_engine_steps_total", "counter", "Model runner steps executed.");
        w.Sample("si_engine_steps_total", s.Steps);

        w.Family("si_request_finished_total", "counter", "Requests that reached the engine, by how they ended.");
        foreach (var (reason, count) in m.FinishedByReason)
            w.Sample("si_request_finished_total", count, ("finished_reason", reason));
        w.Family("si_request_rejected_total", "counter", "Requests answered with an error before reaching the engine, by reason.");
        foreach (var (reason, count) in m.RejectedByReason)
            w.Sample("si_request_rejected_total", count, ("reason", reason));

        w.Histogram("si_time_to_first_token_seconds", "From a request's submission to its first token.", s.TimeToFirstTokenHistogram);
        w.Histogram("si_inter_token_latency_seconds", "Between consecutive tokens of a request.", s.InterTokenLatencyHistogram);
        return w.ToString();
    }

    private sealed class Writer(string modelName)
    {
        private readonly StringBuilder _text = new();
        private readonly string _model = Escape(modelName);

        public void Family(string name, string type, string help)
        {
            _text.Append("# HELP ").Append(name).Append(' ').Append(help.Replace("\\", "\\\\").Replace("\n", "\\n")).Append('\n');
            _text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
        }

        public void Sample(string name, double value, params (string Name, string Value)[] labels)
        {
            _text.Append(name).Append("{model_name=\"").Append(_model).Append('"');
            foreach (var (label, v) in labels)
                _text.Append(',').Append(label).Append("=\"").Append(Escape(v)).Append('"');
            _text.Append("} ").Append(Format(value)).Append('\n');
        }

        public void Histogram(string name, string help, LatencyHistogram h)
        {
            Family(name, "histogram", help);
            long cumulative = 0;
            for (int i = 0; i < h.UpperBoundsMs.Count; i++)
            {
                cumulative += h.BucketCounts[i];
                Sample(name + "_bucket", cumulative, ("le", Format(h.UpperBoundsMs[i] / 1000)));
            }
            cumulative += h.BucketCounts[^1];
            Sample(name + "_bucket", cumulative, ("le", "+Inf"));
            Sample(name + "_sum", h.SumMs / 1000);
            Sample(name + "_count", h.Count);
        }

        public override string ToString() => _text.ToString();

        private static string Format(double value) =>
            double.IsPositiveInfinity(value) ? "+Inf"
            : double.IsNegativeInfinity(value) ? "-Inf"
            : double.IsNaN(value) ? "NaN"
            : value.ToString("R", CultureInfo.InvariantCulture);

        private static string Escape(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");
    }
}
