using SpecializedInference.Engine;
using SpecializedInference.Server;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

public sealed class MetricsTests
{
    [Fact]
    public async Task MetricsParseStrictlyAndCountWhatHappened()
    {
        await using var h = await ServerHarness.StartAsync(new ServerOptions(), new EngineOptions { MaxBatchSize = 4, MaxNumBatchedTokens = 32 });
        var before = PrometheusTextParser.Parse(await h.MetricsAsync());
        Assert.Equal(0, before.Value("si_generation_tokens_total"));
        Assert.Equal(0, before.Value("si_time_to_first_token_seconds_count"));

        // Two requests with the same 8-token prompt: the second finds two full blocks in the prefix cache.
        int[] prompt = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        for (int i = 0; i < 2; i++)
            await h.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 5}""");
        var events = await h.PostStreamAsync("v1/completions", """{"prompt": [3, 3], "max_tokens": 4, "stream": true}""");
        Assert.Equal(4, events.Count);
        using (var bad = await h.PostAsync("v1/completions", """{"prompt": [3], "max_tokens": 0}""")) { }
        await h.WaitUntilIdleAsync();

        var m = PrometheusTextParser.Parse(await h.MetricsAsync());
        var expectedFamilies = new Dictionary<string, string>
        {
            ["si_requests_running"] = "gauge",
            ["si_requests_waiting"] = "gauge",
            ["si_requests_in_flight"] = "gauge",
            ["si_kv_cache_usage_ratio"] = "gauge",
            ["si_kv_cache_blocks"] = "gauge",
            ["si_kv_cache_evictions_total"] = "counter",
            ["si_prefix_cache_queries_total"] = "counter",
            ["si_prefix_cache_hits_total"] = "counter",
            ["si_prefix_cache_hit_rate"] = "gauge",
            ["si_prompt_tokens_total"] = "counter",
            ["si_prefill_tokens_total"] = "counter",
            ["si_generation_tokens_total"] = "counter",
            ["si_num_preemptions_total"] = "counter",
            ["si_engine_steps_total"] = "counter",
            ["si_request_finished_total"] = "counter",
            ["si_request_rejected_total"] = "counter",
            ["si_time_to_first_token_seconds"] = "histogram",
            ["si_inter_token_latency_seconds"] = "histogram",
        };
        foreach (var (name, type) in expectedFamilies)
        {
            Assert.True(m.Families.TryGetValue(name, out var family), $"missing {name}");
            Assert.Equal(type, family!.Type);
            Assert.False(string.IsNullOrWhiteSpace(family.Help));
            Assert.All(family.Samples, s => Assert.Equal("fake", s.Labels["model_name"]));
        }

        Assert.Equal(0, m.Value("si_requests_running"));
        Assert.Equal(0, m.Value("si_requests_waiting"));
        Assert.Equal(0, m.Value("si_kv_cache_usage_ratio"));
        Assert.Equal(256, m.Value("si_kv_cache_blocks", ("state", "used")) + m.Value("si_kv_cache_blocks", ("state", "cached")) + m.Value("si_kv_cache_blocks", ("state", "free")));
        Assert.Equal(5 + 5 + 4, m.Value("si_generation_tokens_total"));
        Assert.Equal(9 + 9 + 2, m.Value("si_prompt_tokens_total"));
        Assert.Equal(8, m.Value("si_prefix_cache_hits_total"));
        Assert.Equal(9 + 9 + 2, m.Value("si_prefix_cache_queries_total"));
        Assert.Equal(8.0 / 20, m.Value("si_prefix_cache_hit_rate"), 12);
        Assert.Equal(9 + 1 + 2, m.Value("si_prefill_tokens_total"));
        Assert.Equal(0, m.Value("si_num_preemptions_total"));
        Assert.Equal(3, m.Value("si_request_finished_total", ("finished_reason", "length")));
        Assert.Equal(0, m.Value("si_request_finished_total", ("finished_reason", "abort")));
        Assert.Equal(1, m.Value("si_request_rejected_total", ("reason", "invalid_request")));
        Assert.Equal(3, m.Value("si_time_to_first_token_seconds_count"));
        Assert.Equal(3, m.Value("si_time_to_first_token_seconds_bucket", ("le", "+Inf")));
        Assert.True(m.Value("si_time_to_first_token_seconds_sum") > 0);
        Assert.Equal(4 + 4 + 3, m.Value("si_inter_token_latency_seconds_count"));
        var stats = h.Engine.Snapshot();
        Assert.Equal(stats.TimeToFirstTokenHistogram.BucketCounts[0], m.Value("si_time_to_first_token_seconds_bucket", ("le", "0.001")));
    }

    [Fact]
    public void ParserRejectsBrokenExpositions()
    {
        string[] broken =
        [
            "a 1",                                                     // no trailing newline
            "a 1\n",                                                   // no TYPE
            "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",            // duplicate series
            "# TYPE a gauge\na{x=1} 1\n",                              // unquoted label value
            "# TYPE a gauge\na{x=\"\\t\"} 1\n",                        // bad escape
            "# TYPE a gauge\na  1\n",                                  // two spaces
            "# TYPE a counter\na -1\n",                                // negative counter
            "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n",              // families interleaved
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", // not cumulative
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",        // no +Inf
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",     // count differs
            "# TYPE a gauge\na one\n",                                 // bad value
            "# TYPE a gauge\n# TYPE a gauge\na 1\n",                   // TYPE twice
        ];
        foreach (var text in broken)
            Assert.Throws<FormatException>(() => PrometheusTextParser.Parse(text));
        var ok = PrometheusTextParser.Parse("# HELP a x\\ny\n# TYPE a gauge\na{b=\"q\\\"\\\\\\n\"} +Inf 123\n");
        Assert.Equal("q\"\\\n", ok.Families["a"].Samples[0].Labels["b"]);
    }
}
