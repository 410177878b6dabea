using System.Text;
using System.Text.Json;
using SpecializedInference.Sampling;
using SpecializedInference.Text;

namespace SpecializedInference.Server;

/// <summary>How tokens are named in log-probabilities: their text and UTF-8 bytes from the tokenizer, or
/// <c>token_id:N</c> (vLLM's form) when the server has no tokenizer.</summary>
internal sealed class TokenNames(ITextTokenizer? tokenizer)
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The token's bytes, or null without a tokenizer.</summary>
    public byte[]? Bytes(int id) => tokenizer?.TokenBytes(id);

    /// <summary>The token's text; a token that is not whole UTF-8 on its own (one byte of a character) is named by its
    /// bytes as <c>bytes:\xe2\x80</c>, as OpenAI does.</summary>
    public string Text(int id)
    {
        if (Bytes(id) is not { } bytes)
            return $"token_id:{id}";
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            return "bytes:" + string.Concat(bytes.Select(b => $"\\x{b:x2}"));
        }
    }
}

/// <summary>One token of a response's log-probabilities: its id, its log-probabilities (none for the first token of an
/// echoed prompt, which nothing predicts) and where its text starts in the choice's text.</summary>
internal readonly record struct LogprobEntry(int TokenId, TokenLogprobs? Logprobs, int TextOffset);

/// <summary>The log-probabilities of a response's tokens (all of them, or a streamed chunk's).</summary>
internal sealed record LogprobsSection(IReadOnlyList<LogprobEntry> Entries, TokenNames Names);

/// <summary>Writes <c>choices[].logprobs</c> in OpenAI's two shapes.</summary>
internal static class LogprobsJson
{
    private static double Value(double logprob) => TokenLogprobs.ForJson(logprob);

    /// <summary>
    /// Completions: <c>{"tokens", "token_logprobs", "top_logprobs", "text_offset"}</c>. Each <c>top_logprobs</c> entry maps
    /// the most likely tokens' text to their log-probabilities, plus the chosen token (so up to n + 1 entries, as
    /// OpenAI documents); tokens with the same text keep the first, more likely, one. An echoed prompt's first token
    /// has null in both.
    /// </summary>
    public static void WriteCompletion(Utf8JsonWriter w, LogprobsSection section)
    {
        var names = section.Names;
        w.WriteStartObject("logprobs");
        w.WriteStartArray("tokens");
        foreach (var e in section.Entries)
            w.WriteStringValue(names.Text(e.TokenId));
        w.WriteEndArray();
        w.WriteStartArray("token_logprobs");
        foreach (var e in section.Entries)
        {
            if (e.Logprobs is { } t) w.WriteNumberValue(Value(t.Chosen.Logprob));
            else w.WriteNullValue();
        }
        w.WriteEndArray();
        w.WriteStartArray("top_logprobs");
        foreach (var e in section.Entries)
        {
            if (e.Logprobs is not { } t)
            {
                w.WriteNullValue();
                continue;
            }
            w.WriteStartObject();
            var written = new HashSet<string>(StringComparer.Ordinal);
            foreach (var top in t.Top.Append(t.Chosen))
            {
                string text = names.Text(top.TokenId);
                if (written.Add(text))
                    w.WriteNumber(text, Value(top.Logprob));
            }
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteStartArray("text_offset");
        foreach (var e in section.Entries)
            w.WriteNumberValue(e.TextOffset);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    /// <summary>Chat: <c>{"content": [{"token", "logprob", "bytes", "top_logprobs": [{"token", "logprob", "bytes"}]}], "refusal": null}</c>.</summary>
    public static void WriteChat(Utf8JsonWriter w, LogprobsSection section)
    {
        w.WriteStartObject("logprobs");
        w.WriteStartArray("content");
        foreach (var e in section.Entries)
        {
            var t = e.Logprobs ?? throw new InvalidOperationException("A chat reply's token has no log-probabilities.");
            w.WriteStartObject();
            WriteChatToken(w, t.Chosen, section.Names);
            w.WriteStartArray("top_logprobs");
            foreach (var top in t.Top)
            {
                w.WriteStartObject();
                WriteChatToken(w, top, section.Names);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("refusal");
        w.WriteEndObject();
    }

    private static void WriteChatToken(Utf8JsonWriter w, TokenLogprob token, TokenNames names)
    {
        w.WriteString("token", names.Text(token.TokenId));
        w.WriteNumber("logprob", Value(token.Logprob));
        if (names.Bytes(token.TokenId) is { } bytes)
        {
            w.WriteStartArray("bytes");
            foreach (byte b in bytes)
                w.WriteNumberValue(b);
            w.WriteEndArray();
        }
        else
        {
            w.WriteNull("bytes");
        }
    }
}
