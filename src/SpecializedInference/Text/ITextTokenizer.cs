namespace SpecializedInference.Text;

/// <summary>
/// Text ↔ token ids for one model. The server and the CLI only need these two operations, so any tokenizer
/// (SentencePiece, BPE, a test double) can sit behind it.
/// <para>Contract of <see cref="Decode"/> that streaming relies on (SentencePiece and byte-level BPE decoders
/// keep it): special tokens (BOS, EOS, ...) decode to nothing; byte-fallback pieces (<c>&lt;0xE2&gt;</c>)
/// are joined into UTF-8 and an incomplete or invalid byte sequence becomes U+FFFD; and decoding is
/// <em>prefix-stable</em>: <c>Decode(a)</c> is a prefix of <c>Decode(a + b)</c>, except that a trailing
/// U+FFFD of an incomplete character may turn into that character, and a leading space the decoder drops at
/// the start of a text is dropped from the first piece only.</para>
/// </summary>
public interface ITextTokenizer
{
    /// <summary>Token ids of <paramref name="text"/>, with the BOS token first when <paramref name="addBos"/> is true.</summary>
    int[] Encode(string text, bool addBos);

    /// <summary>
    /// Token ids of text in which special-token text (<c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, <c>&lt;|eot_id|&gt;</c>) stands for
    /// the token itself, as Hugging Face encodes a rendered chat template; <see cref="Encode"/> may split such text into
    /// characters. A tokenizer that knows no special tokens encodes as <see cref="Encode"/> does.
    /// </summary>
    int[] EncodeWithSpecialTokens(string text, bool addBos) => Encode(text, addBos);

    /// <summary>The text of <paramref name="ids"/> (see the contract above).</summary>
    string Decode(ReadOnlySpan<int> ids);

    /// <summary>The UTF-8 bytes token <paramref name="id"/> stands for on its own (a byte-fallback piece's single byte, a
    /// word with its leading space, a special token's text); what log-probabilities report per token.</summary>
    byte[] TokenBytes(int id);
}

/// <summary>One message of a chat.</summary>
/// <param name="Role"><c>system</c>, <c>user</c> or <c>assistant</c>.</param>
/// <param name="Content">The message text.</param>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>The roles a conversation may use (what the OpenAI API and the published chat templates know).</summary>
    public static bool IsKnownRole(string role) => role is "system" or "user" or "assistant";
}

/// <summary>
/// A checkpoint's chat template (Hugging Face <c>tokenizer_config.json</c> <c>chat_template</c>): turns a
/// conversation into the prompt text the model was trained on, ending where the assistant's reply begins.
/// </summary>
public interface IChatTemplate
{
    /// <summary>Whether the rendered prompt should be encoded with a BOS token (false when the template writes it).</summary>
    bool AddBos { get; }

    /// <summary>The prompt text for <paramref name="messages"/>, ending with the assistant turn's opening.
    /// Throws <see cref="ArgumentException"/> for a conversation the template cannot render (e.g. an unknown role).</summary>
    string Render(IReadOnlyList<ChatMessage> messages);
}
