namespace SpecializedInference.Server;

/// <summary>Settings of an <see cref="InferenceServer"/>.</summary>
public sealed record ServerOptions
{
    /// <summary>The model id clients name in <c>model</c> and <c>GET /v1/models</c> lists.</summary>
    public string ModelName { get; init; } = "model";

    /// <summary>An IP address (<c>127.0.0.1</c>, <c>0.0.0.0</c>, <c>::1</c>) or <c>localhost</c>.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 picks a free one (read <see cref="InferenceServer.BaseAddress"/> after starting).</summary>
    public int Port { get; init; } = 8000;

    /// <summary>
    /// Requests that may wait beyond the ones the engine runs at once (its max batch size). Past that a
    /// request gets 429 with Retry-After instead of queueing without bound.
    /// </summary>
    public int MaxWaitingRequests { get; init; } = 256;

    /// <summary>Largest request body; a larger one gets 400.</summary>
    public long MaxRequestBodyBytes { get; init; } = 1 << 20;

    /// <summary><c>max_tokens</c> when a request leaves it out (OpenAI's default 16), capped by the context left.</summary>
    public int DefaultMaxTokens { get; init; } = 16;

    /// <summary>Largest <c>max_tokens</c> a request may ask for; null = the engine's max_seq_len.</summary>
    public int? MaxTokensLimit { get; init; }

    /// <summary>
    /// <c>temperature</c> when a request leaves it out. 0 (greedy) rather than OpenAI's 1 so an omitted
    /// temperature is reproducible and works with an engine built for greedy decoding only.
    /// </summary>
    public double DefaultTemperature { get; init; }

    /// <summary>
    /// Why the checkpoint's chat template is not used when it has one that failed to load (a Jinja syntax error, a
    /// malformed <c>chat_template</c> field): <c>/v1/chat/completions</c> gives this reason in its 400. Null otherwise.
    /// </summary>
    public string? ChatTemplateError { get; init; }

    /// <summary>Whether text prompts are encoded with the BOS token first (tokenizer_config.json <c>add_bos_token</c>).</summary>
    public bool AddBos { get; init; } = true;

    /// <summary>End-of-sequence token ids (generation_config.json <c>eos_token_id</c>); generation stops at them unless <c>ignore_eos</c>.</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Most stop strings one request may give.</summary>
    public int MaxStopStrings { get; init; } = 16;

    /// <summary>Most choices one request may ask for (<c>n</c>); each is a request to the engine.</summary>
    public int MaxChoices { get; init; } = 16;

    /// <summary>Most prompts one completion request may batch (each gets <c>n</c> choices).</summary>
    public int MaxBatchedPrompts { get; init; } = 64;

    /// <summary>Seconds a 429 response tells the client to wait.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>Seconds a stop waits for running requests before aborting them.</summary>
    public double ShutdownTimeoutSeconds { get; init; } = 5;

    /// <summary>Write ASP.NET Core warnings and errors (never response bodies) to the console.</summary>
    public bool LogToConsole { get; init; }

    internal void Validate()
    {
        static void Check(bool ok, string field, object value, string expected)
        {
            if (!ok)
                throw new ArgumentOutOfRangeException(field, value, $"{field} is {value}; {expected}.");
        }

        ArgumentException.ThrowIfNullOrWhiteSpace(ModelName);
        ArgumentException.ThrowIfNullOrWhiteSpace(Host);
        Check(Port is >= 0 and <= 65535, nameof(Port), Port, "it must be between 0 and 65535");
        Check(MaxWaitingRequests >= 0, nameof(MaxWaitingRequests), MaxWaitingRequests, "it must be at least 0");
        Check(MaxRequestBodyBytes >= 1, nameof(MaxRequestBodyBytes), MaxRequestBodyBytes, "it must be at least 1");
        Check(DefaultMaxTokens >= 1, nameof(DefaultMaxTokens), DefaultMaxTokens, "it must be at least 1");
        Check(MaxTokensLimit is null or >= 1, nameof(MaxTokensLimit), MaxTokensLimit!, "it must be at least 1");
        Check(DefaultTemperature is >= 0 and <= 2, nameof(DefaultTemperature), DefaultTemperature, "it must be between 0 and 2");
        Check(MaxStopStrings >= 0, nameof(MaxStopStrings), MaxStopStrings, "it must be at least 0");
        Check(MaxChoices >= 1, nameof(MaxChoices), MaxChoices, "it must be at least 1");
        Check(MaxBatchedPrompts >= 1, nameof(MaxBatchedPrompts), MaxBatchedPrompts, "it must be at least 1");
        Check(RetryAfterSeconds >= 1, nameof(RetryAfterSeconds), RetryAfterSeconds, "it must be at least 1");
        Check(ShutdownTimeoutSeconds >= 0, nameof(ShutdownTimeoutSeconds), ShutdownTimeoutSeconds, "it must be at least 0");
        ArgumentNullException.ThrowIfNull(EosTokenIds);
    }
}
