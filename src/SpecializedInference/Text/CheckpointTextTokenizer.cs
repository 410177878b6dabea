using SpecializedInference.Tokenization;

namespace SpecializedInference.Text;

/// <summary>The checkpoint's tokenizer (SentencePiece <c>tokenizer.model</c> or byte-level BPE <c>tokenizer.json</c>, see
/// <see cref="TextTokenizer.TryLoad"/>) behind the <see cref="ITextTokenizer"/> seam.</summary>
public sealed class CheckpointTextTokenizer : ITextTokenizer
{
    public CheckpointTextTokenizer(TextTokenizer tokenizer) => Tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    public TextTokenizer Tokenizer { get; }

    /// <summary>Whether prompts get BOS (tokenizer_config.json <c>add_bos_token</c>).</summary>
    public bool AddBos => Tokenizer.AddBos;

    /// <summary>The tokenizer of a checkpoint folder, or null when it has none.</summary>
    public static CheckpointTextTokenizer? TryLoad(string directory) =>
        TextTokenizer.TryLoad(directory) is { } tokenizer ? new CheckpointTextTokenizer(tokenizer) : null;

    public int[] Encode(string text, bool addBos) => Tokenizer.Encode(text, addBos, addEos: false);

    public int[] EncodeWithSpecialTokens(string text, bool addBos) => Tokenizer.EncodeWithSpecialTokens(text, addBos);

    public string Decode(ReadOnlySpan<int> ids) => Tokenizer.Decode(ids.ToArray());

    public byte[] TokenBytes(int id) => Tokenizer.TokenBytes(id);
}
