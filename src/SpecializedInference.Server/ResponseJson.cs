using System.Buffers;
using System.Text;
using System.Text.Json;

namespace SpecializedInference.Server;

internal static class JsonOptions
{
    /// <summary>Escape only what JSON requires: apostrophes and non-ASCII text stay readable.</summary>
    public static readonly JsonWriterOptions Writer = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };
}

internal enum ApiKind
{
    Completion,
    Chat,
}

internal readonly record struct TokenUsage(int PromptTokens, int CompletionTokens)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>One choice of a response or of a streamed chunk.</summary>
/// <param name="FirstChunk">The choice's first streamed chunk, which names the chat role.</param>
internal readonly record struct ChoiceContent(int Index, string Text, IReadOnlyList<int> Tokens, string? FinishReason, LogprobsSection? Logprobs,
    bool FirstChunk = false);

/// <summary>OpenAI response bodies, written with <see cref="Utf8JsonWriter"/> (no reflection).</summary>
internal static class ResponseJson
{
    private static readonly byte[] DataPrefix = "data: "u8.ToArray();
    private static readonly byte[] EventEnd = "\n\n"u8.ToArray();

    /// <summary>The last server-sent event of a stream.</summary>
    public static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    /// <summary>
    /// A whole response (<paramref name="chunk"/> false) or one streamed chunk: its choices with their text and, beyond
    /// OpenAI's fields, the token ids each covers (<c>tokens</c>).
    /// </summary>
    public static byte[] Choices(ApiKind kind, bool chunk, string id, long created, string model, IReadOnlyList<ChoiceContent> choices, TokenUsage? usage)
    {
        return Write(w =>
        {
            WriteHeader(w, id, created, model, kind switch
            {
                ApiKind.Completion => "text_completion",
                _ => chunk ? "chat.completion.chunk" : "chat.completion",
            });
            w.WriteStartArray("choices");
            foreach (var choice in choices)
            {
                w.WriteStartObject();
                w.WriteNumber("index", choice.Index);
                if (kind == ApiKind.Completion)
                {
                    w.WriteString("text", choice.Text);
                }
                else
                {
                    w.WriteStartObject(chunk ? "delta" : "message");
                    if (!chunk || choice.FirstChunk)
                        w.WriteString("role", "assistant");
                    w.WriteString("content", choice.Text);
                    w.WriteEndObject();
                }
                if (choice.Logprobs is null)
                    w.WriteNull("logprobs");
                else if (kind == ApiKind.Completion)
                    LogprobsJson.WriteCompletion(w, choice.Logprobs);
                else
                    LogprobsJson.WriteChat(w, choice.Logprobs);
                if (choice.FinishReason is null) w.WriteNull("finish_reason"); else w.WriteString("finish_reason", choice.FinishReason);
                w.WriteStartArray("tokens");
                foreach (int t in choice.Tokens)
                    w.WriteNumberValue(t);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndArray();
            if (usage is { } u)
                WriteUsage(w, u);
            w.WriteEndObject();
        });
    }

    /// <summary>The extra last chunk of <c>stream_options.include_usage</c>: no choices, the usage.</summary>
    public static byte[] UsageChunk(ApiKind kind, string id, long created, string model, TokenUsage usage) => Write(w =>
    {
        WriteHeader(w, id, created, model, kind == ApiKind.Completion ? "text_completion" : "chat.completion.chunk");
        w.WriteStartArray("choices");
        w.WriteEndArray();
        WriteUsage(w, usage);
        w.WriteEndObject();
    });

    public static byte[] Models(string model, long created, int maxModelLen) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("object", "list");
        w.WriteStartArray("data");
        w.WriteStartObject();
        w.WriteString("id", model);
        w.WriteString("object", "model");
        w.WriteNumber("created", created);
        w.WriteString("owned_by", "specialized-inference");
        w.WriteNumber("max_model_len", maxModelLen);
        w.WriteEndObject();
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary><c>/tokenize</c>'s answer, as vLLM writes it.</summary>
    public static byte[] Tokenized(int[] tokens, int maxModelLen) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteNumber("count", tokens.Length);
        w.WriteNumber("max_model_len", maxModelLen);
        w.WriteStartArray("tokens");
        foreach (int t in tokens)
            w.WriteNumberValue(t);
        w.WriteEndArray();
        w.WriteEndObject();
    });

    /// <summary><c>/detokenize</c>'s answer, as vLLM writes it.</summary>
    public static byte[] Detokenized(string text) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("prompt", text);
        w.WriteEndObject();
    });

    public static byte[] Health(string status) => Write(w =>
    {
        w.WriteStartObject();
        w.WriteString("status", status);
        w.WriteEndObject();
    });

    /// <summary>One server-sent event carrying <paramref name="json"/>.</summary>
    public static byte[] Event(byte[] json)
    {
        var bytes = new byte[DataPrefix.Length + json.Length + EventEnd.Length];
        DataPrefix.CopyTo(bytes, 0);
        json.CopyTo(bytes, DataPrefix.Length);
        EventEnd.CopyTo(bytes, DataPrefix.Length + json.Length);
        return bytes;
    }

    private static void WriteHeader(Utf8JsonWriter w, string id, long created, string model, string @object)
    {
        w.WriteStartObject();
        w.WriteString("id", id);
        w.WriteString("object", @object);
        w.WriteNumber("created", created);
        w.WriteString("model", model);
    }

    private static void WriteUsage(Utf8JsonWriter w, TokenUsage u)
    {
        w.WriteStartObject("usage");
        w.WriteNumber("prompt_tokens", u.PromptTokens);
        w.WriteNumber("completion_tokens", u.CompletionTokens);
        w.WriteNumber("total_tokens", u.TotalTokens);
        w.WriteEndObject();
    }

    private static byte[] Write(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
            write(w);
        return buffer.WrittenSpan.ToArray();
    }
}

/// <summary>
/// The output of one request as text: the incremental detokenizer, then the stop strings, and the log-probabilities
/// when asked for. Streamed and plain responses both go through it, so the streamed pieces join to exactly the plain
/// text.
/// </summary>
internal sealed class OutputAssembler
{
    private readonly Text.ITextTokenizer? _tokenizer;
    private readonly Text.IncrementalDetokenizer? _detokenizer;
    private readonly Text.StopStringFilter _stops;
    private readonly StringBuilder _text = new();
    private readonly int[]? _echo;
    private readonly List<LogprobEntry>? _logprobs;
    private readonly TokenNames _names;
    private readonly bool _promptOnly;
    private readonly int _minTokens;
    private int _chunkStart, _chunkTokensStart;

    /// <param name="context">The prompt a completion continues, so its first word keeps its leading space; empty for a chat
    /// reply, which stands alone as a message (as Hugging Face decodes one).</param>
    /// <param name="echo">A prompt to put before the output (OpenAI's <c>echo</c>), with its tokens' log-probabilities
    /// when those are asked for (the first generated token carries them).</param>
    /// <param name="promptOnly">max_tokens 0 with echo: the output is the echoed prompt, and the one token the engine
    /// generated anyway is dropped.</param>
    /// <param name="minTokens">min_tokens: the stop strings are looked for only in the text of the tokens after these
    /// (vLLM's rule), so a stop string cannot end the output before it has that many tokens.</param>
    public OutputAssembler(Text.ITextTokenizer? tokenizer, IReadOnlyList<string> stops, ReadOnlySpan<int> context, bool logprobs = false, int[]? echo = null,
        bool promptOnly = false, int minTokens = 0)
    {
        _minTokens = minTokens;
        _promptOnly = promptOnly && echo is not null;
        _tokenizer = tokenizer;
        _detokenizer = tokenizer is null ? null : new Text.IncrementalDetokenizer(tokenizer, context);
        _stops = new Text.StopStringFilter(stops);
        _echo = echo;
        _logprobs = logprobs ? new List<LogprobEntry>() : null;
        _names = new TokenNames(tokenizer);
    }

    /// <summary>The generated token ids (an echoed prompt's are not among them).</summary>
    public List<int> Tokens { get; } = new();

    public string Text => _text.ToString();

    /// <summary>"stop" or "length" once the output is complete.</summary>
    public string? FinishReason { get; private set; }

    public bool Done => FinishReason is not null;

    /// <summary>Every token's log-probabilities so far, or null when the request did not ask for them.</summary>
    public LogprobsSection? Logprobs => _logprobs is null ? null : new LogprobsSection(_logprobs, _names);

    /// <summary>The generated tokens the last <see cref="Accept"/> took (a streamed chunk's): that token, or none when it
    /// is dropped (max_tokens 0).</summary>
    public IReadOnlyList<int> ChunkTokens => Tokens.GetRange(_chunkTokensStart, Tokens.Count - _chunkTokensStart);

    /// <summary>The log-probabilities of the tokens the last <see cref="Accept"/> took (a streamed chunk's), or null.</summary>
    public LogprobsSection? ChunkLogprobs => _logprobs is null ? null : new LogprobsSection(_logprobs[_chunkStart..], _names);

    /// <summary>Takes the next token; returns the text it adds (empty while held back, or without a tokenizer), after
    /// the echoed prompt with the first token.</summary>
    public string Accept(Engine.GeneratedToken token)
    {
        if (Done)
            throw new InvalidOperationException("The output is already complete.");
        _chunkStart = _logprobs?.Count ?? 0;
        _chunkTokensStart = Tokens.Count;
        string echoed = Tokens.Count == 0 && _echo is not null ? Echo(_echo, token.PromptLogprobs) : "";
        if (_promptOnly)
        {
            FinishReason = "length";
            return echoed;
        }
        Tokens.Add(token.TokenId);
        // Its text starts where the text so far ends (text held back by a stop string or an unfinished character comes
        // later, but after everything before it).
        _logprobs?.Add(new LogprobEntry(token.TokenId, token.Logprobs ?? throw MissingLogprobs(token), _text.Length));
        string text = "";
        if (_detokenizer is not null)
        {
            text = Filter(_detokenizer.Add(token.TokenId));
            if (!_stops.Stopped && token.FinishReason is not null)
                text += Filter(_detokenizer.Flush());
            if (!_stops.Stopped && token.FinishReason is not null)
                text += _stops.Flush();
        }
        if (_stops.Stopped)
            FinishReason = "stop";
        else if (token.FinishReason is { } reason)
            FinishReason = reason == Engine.FinishReason.Length ? "length" : "stop";
        _text.Append(text);
        return echoed + text;
    }

    private string Filter(string piece) => Tokens.Count <= _minTokens ? piece : _stops.Push(piece);

    // The prompt's text (as decoded alone), and its tokens' entries: the first has no log-probabilities.
    private string Echo(int[] prompt, IReadOnlyList<Sampling.TokenLogprobs>? promptLogprobs)
    {
        var detokenizer = _tokenizer is null ? null : new Text.IncrementalDetokenizer(_tokenizer);
        for (int i = 0; i < prompt.Length; i++)
        {
            var logprobs = i == 0 || _logprobs is null ? null
                : promptLogprobs is { } list && list.Count == prompt.Length - 1 ? list[i - 1]
                : throw new InvalidOperationException($"The first token came with {promptLogprobs?.Count.ToString() ?? "no"} prompt log-probabilities for a prompt of {prompt.Length} tokens.");
            _logprobs?.Add(new LogprobEntry(prompt[i], logprobs, _text.Length + (detokenizer?.Text.Length ?? 0)));
            detokenizer?.Add(prompt[i]);
        }
        detokenizer?.Flush();
        string text = detokenizer?.Text ?? "";
        _text.Append(text);
        return text;
    }

    private static InvalidOperationException MissingLogprobs(Engine.GeneratedToken token) =>
        new($"Token {token.Index} of request {token.RequestId} came without the log-probabilities the request asked for.");
}
