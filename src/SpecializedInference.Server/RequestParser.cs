using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Sampling;
using SpecializedInference.Text;

namespace SpecializedInference.Server;

/// <summary>A completion or chat request, checked and tokenized, ready for the engine.</summary>
internal sealed record ParsedRequest
{
    /// <summary>The prompts' token ids: one, or a completion request's batch (each prompt gets its <see cref="N"/> choices).</summary>
    public required IReadOnlyList<int[]> Prompts { get; init; }

    public required int MaxTokens { get; init; }

    public required SamplingParams Sampling { get; init; }

    /// <summary>Stop strings (text mode only).</summary>
    public required IReadOnlyList<string> Stop { get; init; }

    public required IReadOnlyList<int> StopTokenIds { get; init; }

    public required bool IgnoreEos { get; init; }

    public required bool Stream { get; init; }

    /// <summary><c>stream_options.include_usage</c>: a last chunk with empty choices and the usage.</summary>
    public required bool IncludeUsage { get; init; }

    /// <summary>How many top log-probabilities to report per token (0 = the chosen token's only); null = none.</summary>
    public required int? Logprobs { get; init; }

    /// <summary>Completions' <c>echo</c>: the prompt comes first in the text (and in the log-probabilities).</summary>
    public bool Echo { get; init; }

    /// <summary>Choices to generate (<c>n</c>), each its own engine request.</summary>
    public required int N { get; init; }
}

/// <summary>
/// Reads OpenAI request bodies field by field, so every problem becomes a 400 that names its field and says
/// what was expected (no model binding, whose errors name C# types).
/// </summary>
internal sealed class RequestParser
{
    private readonly ServerOptions _options;
    private readonly ITextTokenizer? _tokenizer;
    private readonly IChatTemplate? _chatTemplate;
    private readonly int _maxSeqLen;
    private readonly int _vocabSize;

    public RequestParser(ServerOptions options, ITextTokenizer? tokenizer, IChatTemplate? chatTemplate, int maxSeqLen, int vocabSize)
    {
        _options = options;
        _tokenizer = tokenizer;
        _chatTemplate = chatTemplate;
        _maxSeqLen = maxSeqLen;
        _vocabSize = vocabSize;
    }

    /// <summary>Parses the body as JSON; throws a 400 naming the problem.</summary>
    public static JsonDocument ParseJson(byte[] body)
    {
        if (body.Length == 0)
            throw new ApiException(400, "The request body is empty; expected a JSON object.", null, "invalid_json");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body, new JsonDocumentOptions { MaxDepth = 32 });
        }
        catch (JsonException e)
        {
            throw new ApiException(400, $"The request body is not valid JSON: {e.Message}", null, "invalid_json");
        }
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            string kind = Describe(document.RootElement);
            document.Dispose();
            throw new ApiException(400, $"The request body must be a JSON object, got {kind}.", null, "invalid_json");
        }
        return document;
    }

    /// <summary><c>POST /v1/completions</c>.</summary>
    public ParsedRequest ParseCompletion(JsonElement root)
    {
        CheckModel(root);
        CheckUnsupported(root, chat: false);
        if (!root.TryGetProperty("prompt", out var prompt) || prompt.ValueKind == JsonValueKind.Null)
            throw ApiException.BadField("prompt", "'prompt' is required: a string, or an array of token ids.", "missing_field");
        bool echo = ReadBool(root, "echo") ?? false;
        return ParseCommon(root, ReadPrompts(prompt), "prompt", "max_tokens", ReadCompletionLogprobs(root), zeroTokensAllowed: echo) with { Echo = echo };
    }

    /// <summary><c>POST /v1/chat/completions</c>.</summary>
    public ParsedRequest ParseChat(JsonElement root)
    {
        CheckChatAvailable("Chat completions", "Use POST /v1/completions with a prompt instead.");
        CheckModel(root);
        CheckUnsupported(root, chat: true);
        string maxTokensField = root.TryGetProperty("max_completion_tokens", out var mct) && mct.ValueKind != JsonValueKind.Null ? "max_completion_tokens" : "max_tokens";
        return ParseCommon(root, [ChatPromptIds(root)], "messages", maxTokensField, ReadChatLogprobs(root));
    }

    /// <summary><c>POST /tokenize</c> (vLLM's): a prompt's token ids as a completion would take them (BOS as the checkpoint
    /// says, unless <c>add_special_tokens</c> is false), or a conversation's as a chat completion would.</summary>
    public int[] ParseTokenize(JsonElement root)
    {
        CheckModel(root);
        CheckKnownFields(root, TokenizeFields, "/tokenize");
        bool hasPrompt = root.TryGetProperty("prompt", out var prompt) && prompt.ValueKind != JsonValueKind.Null;
        bool hasMessages = root.TryGetProperty("messages", out var messages) && messages.ValueKind != JsonValueKind.Null;
        if (hasPrompt == hasMessages)
            throw ApiException.BadField(hasPrompt ? "messages" : "prompt", "Give exactly one of 'prompt' (a string) or 'messages'.", hasPrompt ? "invalid_value" : "missing_field");
        if (hasMessages)
        {
            if (ReadBool(root, "add_generation_prompt") == false)
                throw ApiException.BadField("add_generation_prompt", "'add_generation_prompt' must be true or left out: a conversation is rendered as a chat completion renders it, ending where the reply begins.", "unsupported_value");
            CheckChatAvailable("Tokenizing messages", "Tokenize a 'prompt' instead.");
            return ChatPromptIds(root);
        }
        if (prompt.ValueKind != JsonValueKind.String)
            throw ApiException.BadField("prompt", $"'prompt' must be a string, got {Describe(prompt)}.", "invalid_type");
        return EncodeText(prompt.GetString()!, ReadBool(root, "add_special_tokens") ?? _options.AddBos, "prompt");
    }

    /// <summary><c>POST /detokenize</c> (vLLM's): the text of <c>tokens</c>.</summary>
    public string ParseDetokenize(JsonElement root)
    {
        CheckModel(root);
        CheckKnownFields(root, DetokenizeFields, "/detokenize");
        if (!root.TryGetProperty("tokens", out var tokens) || tokens.ValueKind == JsonValueKind.Null)
            throw ApiException.BadField("tokens", "'tokens' is required: an array of token ids.", "missing_field");
        var ids = ReadTokenIdArray(root, "tokens");
        if (_tokenizer is null)
            throw ApiException.BadField("tokens", $"This server has no tokenizer (model '{_options.ModelName}' was loaded without one), so token ids cannot be turned into text.", "tokenizer_missing");
        return _tokenizer.Decode(ids);
    }

    private void CheckChatAvailable(string what, string instead)
    {
        if (_tokenizer is not null && _chatTemplate is not null)
            return;
        string why = _tokenizer is null ? "this server has no tokenizer, so it cannot turn messages into tokens"
            : _options.ChatTemplateError is { } error ? $"the checkpoint's chat template cannot be used ({error})"
            : "no chat template is loaded (the checkpoint has no chat_template.jinja and its tokenizer_config.json no 'chat_template'), so there is no way to know how this model expects a conversation to be formatted";
        throw new ApiException(400, $"{what} are not available for model '{_options.ModelName}': {why}. {instead}", null, "chat_template_missing");
    }

    /// <summary>The token ids of a request's <c>messages</c>, rendered by the chat template.</summary>
    private int[] ChatPromptIds(JsonElement root)
    {
        if (!root.TryGetProperty("messages", out var messagesJson) || messagesJson.ValueKind == JsonValueKind.Null)
            throw ApiException.BadField("messages", "'messages' is required: an array of {\"role\", \"content\"} objects.", "missing_field");
        if (messagesJson.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField("messages", $"'messages' must be an array, got {Describe(messagesJson)}.", "invalid_type");
        if (messagesJson.GetArrayLength() == 0)
            throw ApiException.BadField("messages", "'messages' must contain at least one message.");
        var messages = new List<ChatMessage>();
        int index = 0;
        foreach (var m in messagesJson.EnumerateArray())
        {
            string field = $"messages[{index}]";
            if (m.ValueKind != JsonValueKind.Object)
                throw ApiException.BadField(field, $"'{field}' must be an object with 'role' and 'content', got {Describe(m)}.", "invalid_type");
            string role = m.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String
                ? r.GetString()!
                : throw ApiException.BadField($"{field}.role", $"'{field}.role' must be a string (system, user or assistant).", "invalid_type");
            if (!ChatMessage.IsKnownRole(role))
                throw ApiException.BadField($"{field}.role", $"'{field}.role' is '{role}'; expected system, user or assistant.");
            messages.Add(new ChatMessage(role, ReadContent(m, $"{field}.content")));
            index++;
        }
        string text;
        try
        {
            text = _chatTemplate!.Render(messages);
        }
        catch (ArgumentException e)
        {
            throw ApiException.BadField("messages", $"The chat template cannot format these messages: {e.Message}");
        }
        // The rendered prompt holds special-token text (<s>, <|eot_id|>) that stands for the tokens themselves.
        return EncodeText(text, _chatTemplate.AddBos, "messages", specialTokens: true);
    }

    /// <param name="zeroTokensAllowed">With echo, max_tokens 0 asks for the prompt alone (to score it), as OpenAI allowed.</param>
    private ParsedRequest ParseCommon(JsonElement root, int[][] prompts, string promptField, string maxTokensField, int? logprobs, bool zeroTokensAllowed = false)
    {
        for (int p = 0; p < prompts.Length; p++)
        {
            var ids = prompts[p];
            string which = prompts.Length == 1 ? $"'{promptField}'" : $"'{promptField}[{p}]'";
            if (ids.Length == 0)
                throw ApiException.BadField(promptField, $"{which} is empty: at least one prompt token is needed.");
            for (int i = 0; i < ids.Length; i++)
                if ((uint)ids[i] >= (uint)_vocabSize)
                    throw ApiException.BadField(promptField, $"{which} has token id {ids[i]} at index {i}, outside the vocabulary [0, {_vocabSize}).");
            if (ids.Length >= _maxSeqLen)
                throw ApiException.BadField(promptField,
                    $"{(prompts.Length == 1 ? "The prompt" : $"Prompt {p}")} is {ids.Length} tokens but this model's context (max_seq_len) is {_maxSeqLen} tokens, which leaves no room to generate. Shorten the prompt.",
                    "context_length_exceeded");
        }

        int longest = prompts.Max(ids => ids.Length);
        int room = _maxSeqLen - longest;
        int limit = Math.Min(_options.MaxTokensLimit ?? _maxSeqLen, _maxSeqLen);
        int? asked = ReadInt(root, maxTokensField);
        int maxTokens;
        if (asked is { } m)
        {
            if (m < (zeroTokensAllowed ? 0 : 1))
                throw ApiException.BadField(maxTokensField, $"'{maxTokensField}' is {m}; it must be at least 1{(maxTokensField == "max_tokens" ? " (or 0 with echo, to score the prompt alone)" : "")}.");
            if (m > limit)
                throw ApiException.BadField(maxTokensField, $"'{maxTokensField}' is {m}; this server allows at most {limit}.");
            if (m > room)
                throw ApiException.BadField(maxTokensField,
                    $"This model's context (max_seq_len) is {_maxSeqLen} tokens, but {longest + m} were requested ({longest} in the {(prompts.Length == 1 ? "prompt" : "longest prompt")}, {m} to generate). Ask for at most {room} tokens or shorten the prompt.",
                    "context_length_exceeded");
            maxTokens = m;
        }
        else
        {
            maxTokens = Math.Min(Math.Min(_options.DefaultMaxTokens, room), limit);
        }

        double temperature = ReadNumber(root, "temperature") ?? _options.DefaultTemperature;
        if (!(temperature >= 0 && temperature <= 2))
            throw ApiException.BadField("temperature", $"'temperature' is {temperature}; it must be between 0 and 2.");
        double topP = ReadNumber(root, "top_p") ?? 1.0;
        if (!(topP > 0 && topP <= 1))
            throw ApiException.BadField("top_p", $"'top_p' is {topP}; it must be greater than 0 and at most 1.");
        int topK = ReadInt(root, "top_k") ?? 0;
        if (topK < -1)
            throw ApiException.BadField("top_k", $"'top_k' is {topK}; it must be at least 1, or 0 or -1 to turn it off.");
        ulong? seed = ReadSeed(root);
        var sampling = new SamplingParams
        {
            Temperature = temperature, TopP = topP, TopK = Math.Max(topK, 0), Seed = seed, Penalties = ReadPenalties(root),
            LogitBias = ReadLogitBias(root),
            MinP = ReadNumber(root, "min_p") is { } minP
                ? minP is >= 0 and <= 1 ? minP : throw ApiException.BadField("min_p", $"'min_p' is {minP}; it must be between 0 and 1 (0 = off).")
                : 0,
            MinTokens = ReadInt(root, "min_tokens") is { } minTokens
                ? minTokens >= 0 && minTokens <= maxTokens ? minTokens
                    : throw ApiException.BadField("min_tokens", $"'min_tokens' is {minTokens}; it must be between 0 and the request's maximum, {maxTokens} tokens.")
                : 0,
        };

        var stop = ReadStop(root);
        var stopTokenIds = ReadTokenIdArray(root, "stop_token_ids");
        bool ignoreEos = ReadBool(root, "ignore_eos") ?? false;
        bool stream = ReadBool(root, "stream") ?? false;
        bool includeUsage = false;
        if (root.TryGetProperty("stream_options", out var so) && so.ValueKind != JsonValueKind.Null)
        {
            if (so.ValueKind != JsonValueKind.Object)
                throw ApiException.BadField("stream_options", $"'stream_options' must be an object, got {Describe(so)}.", "invalid_type");
            includeUsage = ReadBool(so, "include_usage", "stream_options.include_usage") ?? false;
        }

        return new ParsedRequest
        {
            Prompts = prompts,
            MaxTokens = maxTokens,
            Sampling = sampling,
            Stop = stop,
            StopTokenIds = stopTokenIds,
            IgnoreEos = ignoreEos,
            Stream = stream,
            IncludeUsage = includeUsage,
            Logprobs = logprobs,
            N = ReadChoiceCount(root),
        };
    }

    // n choices; best_of (completions) may only repeat n, since choices are not ranked here.
    private int ReadChoiceCount(JsonElement root)
    {
        int n = ReadInt(root, "n") ?? 1;
        if (n < 1 || n > _options.MaxChoices)
            throw ApiException.BadField("n", $"'n' is {n}; it must be between 1 and {_options.MaxChoices}.");
        if (ReadInt(root, "best_of") is { } bestOf && bestOf != n)
            throw ApiException.BadField("best_of", $"'best_of' is {bestOf}; this server does not rank choices, so it must equal 'n' ({n}) or be left out.", "unsupported_value");
        return n;
    }

    // OpenAI's presence and frequency penalties, and vLLM's repetition_penalty.
    private static LogitPenalties ReadPenalties(JsonElement root)
    {
        var penalties = new LogitPenalties(ReadNumber(root, "repetition_penalty") ?? 1, ReadNumber(root, "frequency_penalty") ?? 0,
            ReadNumber(root, "presence_penalty") ?? 0);
        if (penalties.FindProblem() is var (field, expected))
            throw ApiException.BadField(field, $"'{field}' is {penalties.Value(field)}; it must be {expected}.");
        return penalties;
    }

    // OpenAI's logit_bias: {"token id": bias from -100 to 100}, added to those logits before anything else.
    private IReadOnlyDictionary<int, float>? ReadLogitBias(JsonElement root)
    {
        if (!root.TryGetProperty("logit_bias", out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.Object)
            throw ApiException.BadField("logit_bias", $"'logit_bias' must be an object mapping token ids to numbers from -100 to 100, got {Describe(value)}.", "invalid_type");
        var bias = new Dictionary<int, float>();
        foreach (var entry in value.EnumerateObject())
        {
            if (!int.TryParse(entry.Name, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int token) || token >= _vocabSize)
                throw ApiException.BadField("logit_bias", $"'logit_bias' has the key \"{entry.Name}\"; keys must be token ids in [0, {_vocabSize}).");
            if (entry.Value.ValueKind != JsonValueKind.Number || !entry.Value.TryGetDouble(out double b) || !(b >= -100 && b <= 100))
                throw ApiException.BadField("logit_bias", $"'logit_bias' of token {token} is {entry.Value.GetRawText()}; it must be a number from -100 to 100.");
            bias[token] = (float)b;
        }
        return bias;
    }

    // Completions: "logprobs": n, the n most likely tokens at each position besides the chosen one (0 = the chosen only).
    private static int? ReadCompletionLogprobs(JsonElement root)
    {
        if (!root.TryGetProperty("logprobs", out var value) || value.ValueKind is JsonValueKind.Null or JsonValueKind.False)
            return null;
        if (value.ValueKind != JsonValueKind.Number)
            throw ApiException.BadField("logprobs", $"'logprobs' must be an integer from 0 to {TokenLogprobs.MaxTop} (how many most likely tokens to list at each position), got {Describe(value)}.", "invalid_type");
        return CheckTopLogprobs(ReadInt(root, "logprobs")!.Value, "logprobs");
    }

    // Chat: "logprobs": true, and "top_logprobs": n for the n most likely tokens at each position.
    private static int? ReadChatLogprobs(JsonElement root)
    {
        bool wanted = ReadBool(root, "logprobs") ?? false;
        int? top = ReadInt(root, "top_logprobs");
        if (top is { } n && !wanted)
            throw ApiException.BadField("top_logprobs", "'top_logprobs' needs 'logprobs': true.");
        return wanted ? CheckTopLogprobs(top ?? 0, "top_logprobs") : null;
    }

    private static int CheckTopLogprobs(int n, string field) => n is >= 0 and <= TokenLogprobs.MaxTop
        ? n
        : throw ApiException.BadField(field, $"'{field}' is {n}; it must be between 0 and {TokenLogprobs.MaxTop}.");

    private void CheckModel(JsonElement root)
    {
        if (!root.TryGetProperty("model", out var model) || model.ValueKind == JsonValueKind.Null)
            return; // optional, as in vLLM: there is one model
        if (model.ValueKind != JsonValueKind.String)
            throw ApiException.BadField("model", $"'model' must be a string, got {Describe(model)}.", "invalid_type");
        string name = model.GetString()!;
        if (name != _options.ModelName)
            throw new ApiException(404, $"The model '{name}' does not exist; this server serves '{_options.ModelName}'.", "model", "model_not_found");
    }

    private static readonly HashSet<string> CommonFields = new(StringComparer.Ordinal)
    {
        "model", "max_tokens", "temperature", "top_p", "top_k", "seed", "stop", "stop_token_ids", "ignore_eos", "stream", "stream_options",
        "logprobs", "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "logit_bias", "min_p", "min_tokens",
        // Accepted and without effect here: who asks, and what OpenAI's platform would store or bill.
        "user", "metadata", "store", "service_tier",
    };

    private static readonly HashSet<string> CompletionFields = new(CommonFields, StringComparer.Ordinal) { "prompt", "echo", "best_of", "suffix" };

    private static readonly HashSet<string> TokenizeFields = new(StringComparer.Ordinal) { "model", "prompt", "messages", "add_special_tokens", "add_generation_prompt" };

    private static readonly HashSet<string> DetokenizeFields = new(StringComparer.Ordinal) { "model", "tokens" };

    // A field the endpoint does not know is refused, as OpenAI does, rather than dropped with what the client meant.
    private static void CheckKnownFields(JsonElement root, HashSet<string> known, string endpoint)
    {
        foreach (var property in root.EnumerateObject())
            if (!known.Contains(property.Name))
                throw ApiException.BadField(property.Name, $"'{property.Name}' is not a parameter of {endpoint} on this server; remove it.", "unknown_parameter");
    }

    private static readonly HashSet<string> ChatFields = new(CommonFields, StringComparer.Ordinal)
    {
        "messages", "max_completion_tokens", "top_logprobs", "echo", "tools", "tool_choice", "parallel_tool_calls", "functions", "function_call",
        "response_format", "modalities",
    };

    // Parameters OpenAI defines that this server does not implement: refuse a non-default value rather than ignore it,
    // and refuse a field it does not know (as OpenAI does) rather than drop what a client meant.
    private static void CheckUnsupported(JsonElement root, bool chat)
    {
        CheckKnownFields(root, chat ? ChatFields : CompletionFields, chat ? "/v1/chat/completions" : "/v1/completions");
        if (chat)
        {
            foreach (var name in new[] { "tools", "functions" })
                if (root.TryGetProperty(name, out var tools) && !(tools.ValueKind == JsonValueKind.Null || tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() == 0))
                    throw ApiException.BadField(name, $"'{name}': tool calling is not supported; this server generates text only.", "unsupported_value");
            foreach (var name in new[] { "tool_choice", "function_call" })
                if (root.TryGetProperty(name, out var choice) && !(choice.ValueKind == JsonValueKind.Null || choice.ValueKind == JsonValueKind.String && choice.GetString() == "none"))
                    throw ApiException.BadField(name, $"'{name}': tool calling is not supported; leave it out or give \"none\".", "unsupported_value");
            if (root.TryGetProperty("response_format", out var format) && format.ValueKind != JsonValueKind.Null
                && !(format.ValueKind == JsonValueKind.Object && format.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String && type.GetString() == "text"))
                throw ApiException.BadField("response_format", "'response_format': only {\"type\": \"text\"} is supported (no JSON mode or structured outputs).", "unsupported_value");
            if (root.TryGetProperty("modalities", out var modalities) && modalities.ValueKind != JsonValueKind.Null
                && !(modalities.ValueKind == JsonValueKind.Array && modalities.EnumerateArray().All(m => m.ValueKind == JsonValueKind.String && m.GetString() == "text")))
                throw ApiException.BadField("modalities", "'modalities': this model produces text only; give [\"text\"] or leave it out.", "unsupported_value");
        }
        if (chat && root.TryGetProperty("echo", out var echo) && echo.ValueKind is not (JsonValueKind.Null or JsonValueKind.False))
            throw ApiException.BadField("echo", "'echo' is for completions; a chat reply cannot echo its conversation.", "unsupported_value");
        if (!chat && root.TryGetProperty("suffix", out var suffix) && suffix.ValueKind != JsonValueKind.Null)
            throw ApiException.BadField("suffix", "'suffix' is not supported; leave it out.", "unsupported_value");
    }

    private int[] EncodeText(string text, bool addBos, string field, bool specialTokens = false)
    {
        if (_tokenizer is null)
            throw ApiException.BadField(field,
                $"This server has no tokenizer (model '{_options.ModelName}' was loaded without one), so only token ids can be used: send '{field}' as an array of integer token ids.",
                "tokenizer_missing");
        return specialTokens ? _tokenizer.EncodeWithSpecialTokens(text, addBos) : _tokenizer.Encode(text, addBos);
    }

    // A string, token ids, or a batch as OpenAI takes it (an array of strings or of token-id arrays), each a prompt of its own.
    private int[][] ReadPrompts(JsonElement prompt)
    {
        if (prompt.ValueKind == JsonValueKind.String)
            return [EncodeText(prompt.GetString()!, _options.AddBos, "prompt")];
        if (prompt.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField("prompt", $"'prompt' must be a string, an array of integer token ids, or a batch of those, got {Describe(prompt)}.", "invalid_type");
        bool batch = prompt.GetArrayLength() > 0 && prompt[0].ValueKind is JsonValueKind.String or JsonValueKind.Array;
        if (!batch)
            return [ReadPromptTokenIds(prompt, "'prompt'")];
        if (prompt.GetArrayLength() > _options.MaxBatchedPrompts)
            throw ApiException.BadField("prompt", $"'prompt' is a batch of {prompt.GetArrayLength()} prompts; this server takes at most {_options.MaxBatchedPrompts} in one request.");
        return prompt.EnumerateArray().Select((item, b) => item.ValueKind switch
        {
            JsonValueKind.String => EncodeText(item.GetString()!, _options.AddBos, "prompt"),
            JsonValueKind.Array => ReadPromptTokenIds(item, $"'prompt[{b}]'"),
            _ => throw ApiException.BadField("prompt", $"'prompt[{b}]' must be a string or an array of integer token ids, like the batch's first prompt, got {Describe(item)}.", "invalid_type"),
        }).ToArray();
    }

    private static int[] ReadPromptTokenIds(JsonElement prompt, string which)
    {
        var ids = new int[prompt.GetArrayLength()];
        int i = 0;
        foreach (var item in prompt.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[i]))
                throw ApiException.BadField("prompt", $"{which} must be a string or an array of integer token ids, but element {i} is {Describe(item)}.", "invalid_type");
            i++;
        }
        return ids;
    }

    private IReadOnlyList<string> ReadStop(JsonElement root)
    {
        if (!root.TryGetProperty("stop", out var stop) || stop.ValueKind == JsonValueKind.Null)
            return Array.Empty<string>();
        List<string> stops;
        if (stop.ValueKind == JsonValueKind.String)
        {
            stops = [stop.GetString()!];
        }
        else if (stop.ValueKind == JsonValueKind.Array)
        {
            stops = new List<string>();
            foreach (var s in stop.EnumerateArray())
                stops.Add(s.ValueKind == JsonValueKind.String
                    ? s.GetString()!
                    : throw ApiException.BadField("stop", $"'stop' must be a string or an array of strings, but element {stops.Count} is {Describe(s)}.", "invalid_type"));
        }
        else
        {
            throw ApiException.BadField("stop", $"'stop' must be a string or an array of strings, got {Describe(stop)}.", "invalid_type");
        }
        if (stops.Count == 0)
            return Array.Empty<string>();
        if (stops.Count > _options.MaxStopStrings)
            throw ApiException.BadField("stop", $"'stop' has {stops.Count} strings; at most {_options.MaxStopStrings} are allowed.");
        if (stops.Any(s => s.Length == 0))
            throw ApiException.BadField("stop", "'stop' strings must not be empty.");
        if (_tokenizer is null)
            throw ApiException.BadField("stop",
                "Stop strings need a tokenizer to see the generated text, and this server has none; use 'stop_token_ids' instead.", "tokenizer_missing");
        return stops;
    }

    private int[] ReadTokenIdArray(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var array) || array.ValueKind == JsonValueKind.Null)
            return Array.Empty<int>();
        if (array.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField(name, $"'{name}' must be an array of integer token ids, got {Describe(array)}.", "invalid_type");
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[i]))
                throw ApiException.BadField(name, $"'{name}' must be an array of integer token ids, but element {i} is {Describe(item)}.", "invalid_type");
            if ((uint)ids[i] >= (uint)_vocabSize)
                throw ApiException.BadField(name, $"'{name}' has token id {ids[i]} at index {i}, outside the vocabulary [0, {_vocabSize}).");
            i++;
        }
        return ids;
    }

    private static string ReadContent(JsonElement message, string field)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
            throw ApiException.BadField(field, $"'{field}' is required.", "missing_field");
        if (content.ValueKind == JsonValueKind.String)
            return content.GetString()!;
        if (content.ValueKind != JsonValueKind.Array)
            throw ApiException.BadField(field, $"'{field}' must be a string or an array of text parts, got {Describe(content)}.", "invalid_type");
        // Content parts: only text parts can be given to a text model.
        var text = new System.Text.StringBuilder();
        int i = 0;
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object
                || !part.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString() != "text"
                || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                throw ApiException.BadField($"{field}[{i}]", $"'{field}[{i}]' must be a text part {{\"type\": \"text\", \"text\": \"...\"}}; this model reads text only.", "invalid_type");
            text.Append(t.GetString());
            i++;
        }
        return text.ToString();
    }

    private static int? ReadInt(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.Number)
            throw ApiException.BadField(name, $"'{name}' must be an integer, got {Describe(value)}.", "invalid_type");
        if (value.TryGetInt32(out int i))
            return i;
        throw ApiException.BadField(name, value.TryGetInt64(out long l)
            ? $"'{name}' is {l}, which is out of range."
            : $"'{name}' must be an integer, got {value.GetRawText()}.", "invalid_type");
    }

    private static double? ReadNumber(JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind != JsonValueKind.Number || !value.TryGetDouble(out double d))
            throw ApiException.BadField(name, $"'{name}' must be a number, got {Describe(value)}.", "invalid_type");
        return d;
    }

    private static bool? ReadBool(JsonElement root, string name, string? field = null)
    {
        field ??= name;
        if (!root.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        return value.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.BadField(field, $"'{field}' must be true or false, got {Describe(value)}.", "invalid_type"),
        };
    }

    private static ulong? ReadSeed(JsonElement root)
    {
        if (!root.TryGetProperty("seed", out var value) || value.ValueKind == JsonValueKind.Null)
            return null;
        if (value.ValueKind == JsonValueKind.Number && value.TryGetUInt64(out ulong seed))
            return seed;
        throw ApiException.BadField("seed", value.ValueKind == JsonValueKind.Number
            ? $"'seed' is {value.GetRawText()}; it must be a non-negative integer."
            : $"'seed' must be a non-negative integer, got {Describe(value)}.", "invalid_type");
    }

    internal static string Describe(JsonElement value) => JsonDescriptions.Describe(value);
}
