using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using SpecializedInference.Engine;
using SpecializedInference.Kernels;
using SpecializedInference.KvCache;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Text;

namespace SpecializedInference.Cli.Commands;

/// <summary>
/// <c>si generate --prompts-file requests.jsonl</c>: every request line runs concurrently through one
/// <see cref="InferenceEngine"/> (built like <c>si serve</c>'s, by <see cref="ModelLoading"/>); prints one JSON
/// object per request, in file order, then <c>{"stats": {...}}</c>.
/// </summary>
internal static class BatchGeneration
{
    private const int BlockSize = 16; // ModelLoading's block size (the generated kernel sets' too)

    /// <summary>One line of the prompts file, checked for shape but not yet tokenized.</summary>
    private sealed record RequestLine(int Line, JsonNode Id, int[]? PromptIds, string? Prompt, IReadOnlyList<ChatMessage>? Messages, int MaxNewTokens,
        SamplingParams Sampling, bool IgnoreEos, int? Logprobs);

    private static readonly HashSet<string> Fields = new(StringComparer.Ordinal)
    {
        "id", "prompt_ids", "prompt", "messages", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "greedy", "ignore_eos",
        "repetition_penalty", "frequency_penalty", "presence_penalty", "min_p", "min_tokens", "logprobs",
    };

    public static int Run(GenerateCommand.Settings s)
    {
        var lines = Parse(s.PromptsFile!, s);
        var device = GenerateCommand.ParseDevice(s.Device);
        var weightDtype = GenerateCommand.ParseWeightDtype(s.WeightDtype);
        var kvDtype = GenerateCommand.ParseKvDtype(s.KvDtype);

        int? kvBlocks = null;
        if (s.KvMemory is { } bytes)
        {
            var config = LlamaConfig.Load(Path.Combine(s.Model, "config.json"));
            kvBlocks = KvCacheSizing.BlocksFor(bytes, config.NumHiddenLayers, config.NumKeyValueHeads, config.HeadDim, BlockSize,
                kvDtype == KvDtype.F16 ? 2 : 4);
            if (kvBlocks < 1)
                throw new ArgumentException($"--kv-memory {bytes}: less than one KV block of {BlockSize} tokens " +
                    $"({KvCacheSizing.BytesPerBlock(config.NumHiddenLayers, config.NumKeyValueHeads, config.HeadDim, BlockSize, kvDtype == KvDtype.F16 ? 2 : 4)} bytes)");
        }

        LoadedModel loaded;
        try
        {
            loaded = ModelLoading.Load(new ModelRequest(s.Model, Synthetic: false, Name: null, s.MaxBatchSize, kvBlocks, device,
                SyntheticVocabSize: 0, SyntheticMaxSeqLen: 0, SyntheticStepDelay: TimeSpan.Zero,
                s.MaxNumBatchedTokens, weightDtype, kvDtype, TensorCores: !s.CudaCores,
                s.ParsedPrefetch, s.ParsedFusedLaunch, s.ParsedDecodeLaunches, s.ParsedStream, s.CudaGraphs), new Progress<ModelLoadProgress>());
        }
        catch (UsageException e)
        {
            throw new ArgumentException(e.Message, e);
        }

        using var engine = loaded.Engine;
        var tokenizer = loaded.Tokenizer;

        // Tokenize and check every line before any runs: a bad file runs nothing.
        var requests = lines.Select(l =>
        {
            string where = $"{s.PromptsFile}:{l.Line}";
            int[] prompt;
            if (l.PromptIds is not null)
            {
                prompt = l.PromptIds;
            }
            else if (l.Messages is not null)
            {
                prompt = ChatPromptIds(l.Messages, loaded, where, s.Model);
            }
            else
            {
                if (tokenizer is null)
                    throw new ArgumentException($"{where}: \"prompt\" is text but {s.Model} has no tokenizer; give \"prompt_ids\"");
                prompt = tokenizer.Encode(l.Prompt!, loaded.AddBos);
                if (prompt.Length == 0) throw new ArgumentException($"{where}: \"prompt\" encodes to no tokens");
            }
            foreach (int id in prompt)
                if (id >= engine.VocabSize)
                    throw new ArgumentException($"{where}: token id {id} is outside the vocabulary (0..{engine.VocabSize - 1})");
            if (prompt.Length + l.MaxNewTokens > engine.MaxSeqLen)
                throw new ArgumentException($"{where}: {prompt.Length} prompt tokens + max_new_tokens {l.MaxNewTokens} exceed max_seq_len {engine.MaxSeqLen}");
            return new GenerationRequest(prompt, l.MaxNewTokens)
            {
                Sampling = l.Sampling,
                IgnoreEos = l.IgnoreEos,
                EosTokenIds = loaded.EosTokenIds,
                Logprobs = l.Logprobs,
                Name = $"{where} (id {l.Id.ToJsonString()})",
            };
        }).ToArray();

        var clock = Stopwatch.StartNew();
        var completions = requests.Select(r => engine.GenerateAsync(r)).ToArray();
        Task.WaitAll(completions);
        double wall = clock.Elapsed.TotalSeconds;

        for (int i = 0; i < lines.Count; i++)
        {
            var c = completions[i].Result;
            var json = new JsonObject
            {
                ["id"] = lines[i].Id.DeepClone(),
                ["tokens"] = new JsonArray(c.Tokens.Select(t => (JsonNode)JsonValue.Create(t)).ToArray()),
                ["finish_reason"] = c.FinishReason.ToString().ToLowerInvariant(),
            };
            // What the tokens add to the prompt's text (a chat reply stands alone, as in the server).
            if (tokenizer is not null)
                json["text"] = IncrementalDetokenizer.Continuation(tokenizer, lines[i].Messages is null ? requests[i].PromptTokenIds.ToArray() : [], c.Tokens.ToArray());
            if (c.Logprobs is { } logprobs)
                json["logprobs"] = new JsonArray(logprobs.Select(l => (JsonNode)new JsonObject
                {
                    ["token"] = l.Chosen.TokenId,
                    ["logprob"] = TokenLogprobs.ForJson(l.Chosen.Logprob),
                    ["top"] = new JsonArray(l.Top.Select(t => (JsonNode)new JsonArray(t.TokenId, TokenLogprobs.ForJson(t.Logprob))).ToArray()),
                }).ToArray());
            json["prompt_tokens"] = c.Usage.PromptTokens;
            json["cached_prompt_tokens"] = c.Usage.CachedPromptTokens;
            json["preemptions"] = c.Usage.Preemptions;
            json["ttft_ms"] = c.Usage.TimeToFirstToken is { } ttft ? Math.Round(ttft.TotalMilliseconds, 3) : null;
            if (c.Error is not null) json["error"] = c.Error;
            Console.Out.WriteLine(json.ToJsonString());
        }

        Console.Out.WriteLine(new JsonObject { ["stats"] = Stats(engine.Snapshot(), wall) }.ToJsonString());
        return completions.All(c => c.Result.FinishReason is FinishReason.Length or FinishReason.Stop) ? 0 : 1;
    }

    private static JsonObject Stats(EngineStatistics st, double wallSeconds)
    {
        static JsonNode? Num(double v) => double.IsFinite(v) ? JsonValue.Create(Math.Round(v, 3)) : null;
        static JsonObject Latency(LatencySummary l) => new() { ["p50"] = Num(l.P50Ms), ["p95"] = Num(l.P95Ms), ["mean"] = Num(l.MeanMs), ["max"] = Num(l.MaxMs), ["count"] = l.Count };
        var histogram = new JsonObject();
        for (int size = 0; size < st.BatchSizeHistogram.Count; size++)
            if (st.BatchSizeHistogram[size] > 0)
                histogram[size.ToString(CultureInfo.InvariantCulture)] = st.BatchSizeHistogram[size];
        return new JsonObject
        {
            ["wall_s"] = Num(wallSeconds),
            ["steps"] = st.Steps,
            ["prefill_tokens"] = st.PrefillTokens,
            ["decode_tokens"] = st.DecodeTokens,
            ["generated_tokens"] = st.GeneratedTokens,
            ["prefill_tokens_per_s"] = Num(st.PrefillTokensPerSecond),
            ["decode_tokens_per_s"] = Num(st.DecodeTokensPerSecond),
            ["ttft_ms"] = Latency(st.TimeToFirstToken),
            ["inter_token_ms"] = Latency(st.InterTokenLatency),
            ["batch_size_histogram"] = histogram,
            ["kv_blocks"] = new JsonObject
            {
                ["total"] = st.KvCache.TotalBlocks,
                ["used"] = st.KvCache.UsedBlocks,
                ["cached"] = st.KvCache.CachedBlocks,
                ["free"] = st.KvCache.FreeBlocks,
                ["block_size"] = st.KvCache.BlockSize,
            },
            ["prefix_cache_hit_rate"] = Num(st.PrefixCacheHitRate),
            ["prefix_cache_hit_tokens"] = st.PrefixCacheHitTokens,
            ["evictions"] = st.Evictions,
            ["preemptions"] = st.Preemptions,
        };
    }

    /// <summary>Reads and checks every line (blank lines are skipped); the first bad one throws naming file and line.</summary>
    /// <summary>The file's lines; a field a line leaves out takes the command line's value (<paramref name="defaults"/>).</summary>
    private static List<RequestLine> Parse(string path, GenerateCommand.Settings defaults)
    {
        if (!File.Exists(path))
            throw new ArgumentException($"--prompts-file {path}: no such file");
        var result = new List<RequestLine>();
        int lineNumber = 0;
        foreach (var text in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            string where = $"{path}:{lineNumber}";
            JsonObject obj;
            try
            {
                obj = JsonNode.Parse(text) as JsonObject ?? throw new ArgumentException($"{where}: expected a JSON object per line");
            }
            catch (JsonException e)
            {
                throw new ArgumentException($"{where}: not valid JSON: {e.Message}");
            }
            foreach (var (key, _) in obj)
                if (!Fields.Contains(key))
                    throw new ArgumentException($"{where}: unknown field \"{key}\" (expected {string.Join(", ", Fields)})");

            T Get<T>(string field, T fallback, string expected)
            {
                if (!obj.TryGetPropertyValue(field, out var node) || node is null) return fallback;
                try
                {
                    return node.GetValue<T>();
                }
                catch (Exception e) when (e is InvalidOperationException or FormatException)
                {
                    throw new ArgumentException($"{where}: \"{field}\" must be {expected}, got {node.ToJsonString()}");
                }
            }

            int[]? ids = null;
            string? prompt = Get<string?>("prompt", null, "a string");
            if (obj.TryGetPropertyValue("prompt_ids", out var idsNode) && idsNode is not null)
            {
                if (idsNode is not JsonArray array || array.Count == 0)
                    throw new ArgumentException($"{where}: \"prompt_ids\" must be a non-empty array of token ids");
                ids = array.Select((e, i) => e is JsonValue v && v.TryGetValue<int>(out int id) && id >= 0
                    ? id
                    : throw new ArgumentException($"{where}: \"prompt_ids\"[{i}] must be a non-negative integer, got {e?.ToJsonString() ?? "null"}")).ToArray();
            }
            var messages = obj["messages"] is { } messagesNode ? ParseMessages(messagesNode, where) : null;
            if ((ids is null ? 0 : 1) + (prompt is null ? 0 : 1) + (messages is null ? 0 : 1) != 1)
                throw new ArgumentException($"{where}: give exactly one of \"prompt_ids\", \"prompt\" or \"messages\"");

            int maxNew = Get("max_new_tokens", defaults.MaxNewTokens, "an integer");
            if (maxNew < 1) throw new ArgumentException($"{where}: \"max_new_tokens\" must be at least 1, got {maxNew}");
            double? temperature = obj["temperature"] is null ? null : Get("temperature", 0.0, "a number");
            int topK = Get("top_k", 0, "an integer");
            double topP = Get("top_p", 1.0, "a number");
            ulong? seed = obj["seed"] is null ? null : Get("seed", 0UL, "a non-negative integer");
            bool greedy = Get("greedy", temperature is null, "true or false");
            if (temperature is < 0) throw new ArgumentException($"{where}: \"temperature\" must be non-negative, got {temperature}");
            if (topK < 0) throw new ArgumentException($"{where}: \"top_k\" must be non-negative, got {topK}");
            if (!(topP > 0 && topP <= 1)) throw new ArgumentException($"{where}: \"top_p\" must be in (0, 1], got {topP}");
            if (greedy && temperature is > 0 && obj["greedy"] is not null)
                throw new ArgumentException($"{where}: \"greedy\": true and \"temperature\" {temperature} contradict each other");
            var penalties = new LogitPenalties(
                Get("repetition_penalty", defaults.RepetitionPenalty, "a number"),
                Get("frequency_penalty", defaults.FrequencyPenalty, "a number"),
                Get("presence_penalty", defaults.PresencePenalty, "a number"));
            if (penalties.FindProblem() is var (field, expected))
                throw new ArgumentException($"{where}: \"{field}\" must be {expected}, got {penalties.Value(field)}");

            double minP = Get("min_p", defaults.MinP, "a number");
            if (!(minP is >= 0 and <= 1)) throw new ArgumentException($"{where}: \"min_p\" must be in [0, 1], got {minP}");
            int minTokens = Get("min_tokens", Math.Min(defaults.MinTokens, maxNew), "an integer");
            if (minTokens < 0 || minTokens > maxNew) throw new ArgumentException($"{where}: \"min_tokens\" must be between 0 and max_new_tokens ({maxNew}), got {minTokens}");
            int? logprobs = obj["logprobs"] is null ? null : Get("logprobs", 0, "an integer");
            if (logprobs is < 0 or > TokenLogprobs.MaxTop) throw new ArgumentException($"{where}: \"logprobs\" must be between 0 and {TokenLogprobs.MaxTop}, got {logprobs}");

            JsonNode id = obj["id"]?.DeepClone() ?? JsonValue.Create(lineNumber);
            var sampling = new SamplingParams
            {
                Greedy = greedy, Temperature = temperature ?? 1.0, TopK = topK, TopP = topP, Seed = seed, Penalties = penalties, MinP = minP, MinTokens = minTokens,
            };
            result.Add(new RequestLine(lineNumber, id, ids, prompt, messages, maxNew, sampling, Get("ignore_eos", defaults.IgnoreEos, "true or false"), logprobs));
        }
        if (result.Count == 0)
            throw new ArgumentException($"--prompts-file {path}: no requests (one JSON object per line)");
        return result;
    }
    /// <summary>A line's <c>"messages"</c>: <c>[{"role": "system"|"user"|"assistant", "content": "..."}, ...]</c>, as the
    /// server's chat endpoint takes them.</summary>
    private static List<ChatMessage> ParseMessages(JsonNode node, string where)
    {
        if (node is not JsonArray array || array.Count == 0)
            throw new ArgumentException($"{where}: \"messages\" must be a non-empty array of {{\"role\", \"content\"}} objects");
        return array.Select((m, i) =>
        {
            string field = $"\"messages\"[{i}]";
            if (m is not JsonObject message
                || message["role"] is not JsonValue roleValue || !roleValue.TryGetValue<string>(out var role)
                || message["content"] is not JsonValue contentValue || !contentValue.TryGetValue<string>(out var content))
                throw new ArgumentException($"{where}: {field} must be an object with a string \"role\" and a string \"content\", got {m?.ToJsonString() ?? "null"}");
            if (!ChatMessage.IsKnownRole(role))
                throw new ArgumentException($"{where}: {field}.role is \"{role}\"; expected system, user or assistant");
            return new ChatMessage(role, content);
        }).ToList();
    }

    /// <summary>A chat line's prompt: rendered by the checkpoint's chat template and encoded with its special tokens, as
    /// the server's /v1/chat/completions does.</summary>
    private static int[] ChatPromptIds(IReadOnlyList<ChatMessage> messages, LoadedModel loaded, string where, string model)
    {
        if (loaded.Tokenizer is not { } tokenizer)
            throw new ArgumentException($"{where}: \"messages\" are text but {model} has no tokenizer; give \"prompt_ids\"");
        if (loaded.ChatTemplate is not { } template)
            throw new ArgumentException($"{where}: \"messages\" need a chat template, and " + (loaded.ChatTemplateError is { } error
                ? $"the checkpoint's cannot be used: {error}"
                : $"{model} has none ({JinjaChatTemplate.TemplateFileName}, or 'chat_template' in tokenizer_config.json); give \"prompt\""));
        string text;
        try
        {
            text = template.Render(messages);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{where}: the chat template cannot format these messages: {e.Message}", e);
        }
        return tokenizer.EncodeWithSpecialTokens(text, template.AddBos);
    }
}
