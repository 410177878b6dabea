using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SpecializedInference.Tokenization;

/// <summary>A token id with its vocabulary piece.</summary>
public readonly record struct TokenPiece(int Id, string Piece);

/// <summary>
/// A checkpoint's text tokenizer (Microsoft.ML.Tokenizers underneath): SentencePiece <c>tokenizer.model</c>
/// (<see cref="SentencePieceTextTokenizer"/>) or a byte-level BPE <c>tokenizer.json</c>
/// (<see cref="ByteLevelBpeTextTokenizer"/>), with BOS/EOS added as <c>tokenizer_config.json</c> says.
/// </summary>
public abstract class TextTokenizer
{
    public const string SentencePieceFileName = "tokenizer.model";
    public const string TokenizerJsonFileName = "tokenizer.json";
    public const string TokenizerConfigFileName = "tokenizer_config.json";

    /// <summary>Whether <see cref="Encode(string)"/> starts with BOS.</summary>
    public abstract bool AddBos { get; }

    /// <summary>Whether <see cref="Encode(string)"/> ends with EOS.</summary>
    public abstract bool AddEos { get; }

    public abstract int BosId { get; }

    public abstract int EosId { get; }

    public abstract int VocabularySize { get; }

    /// <summary>The file the tokenizer was read from.</summary>
    public abstract string Source { get; }

    /// <summary>The text as the tokenizer normalizes it before segmentation.</summary>
    public abstract string Normalize(string text);

    /// <summary>The pieces of <paramref name="text"/> (no BOS/EOS).</summary>
    public abstract IReadOnlyList<TokenPiece> EncodeToPieces(string text);

    /// <summary>The vocabulary piece of an id.</summary>
    public abstract string Piece(int id);

    /// <summary>
    /// The bytes of UTF-8 text that token <paramref name="id"/> stands for on its own: a byte piece's one byte, a
    /// word piece with its leading space, a special token's text (<c>&lt;/s&gt;</c>, which <see cref="Decode"/> drops).
    /// What OpenAI's log-probabilities report as a token's <c>bytes</c>.
    /// </summary>
    public abstract byte[] TokenBytes(int id);

    /// <summary>Text of token ids (control tokens dropped).</summary>
    public abstract string Decode(IEnumerable<int> ids);

    /// <summary>
    /// The special tokens by their text (SentencePiece's <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c>, <c>&lt;unk&gt;</c>; a
    /// tokenizer.json's added tokens marked special): what <see cref="EncodeWithSpecialTokens"/> takes as one id.
    /// </summary>
    public abstract IReadOnlyDictionary<string, int> SpecialTokens { get; }

    private Regex? _specialTokenPattern;

    /// <summary>Token ids of <paramref name="text"/>, with BOS/EOS as the tokenizer config says.</summary>
    public int[] Encode(string text) => Encode(text, AddBos, AddEos);

    /// <summary>
    /// Token ids of text that contains special-token text, such as a rendered chat template: each occurrence of a
    /// <see cref="SpecialTokens"/> text is that token's id, and each stretch between them is encoded on its own as
    /// <see cref="EncodeToPieces"/> encodes text. That is how Hugging Face tokenizers encode it (added tokens are
    /// split out before the model's segmentation); <see cref="Encode(string, bool, bool)"/> keeps encoding such text
    /// as ordinary characters, as SentencePiece itself does. For SentencePiece that gives every stretch its dummy-prefix
    /// ▁ (<c>&lt;s&gt;[INST]</c> → <c>&lt;s&gt;</c>, <c>▁[</c>, ...), as Meta's reference and a tokenizer.json whose
    /// <c>Prepend("▁")</c> normalizer runs on each stretch (Llama 2's, TinyLlama's) do. A tokenizer.json whose Metaspace
    /// pre-tokenizer prepends only at the start of the text (<c>prepend_scheme: "first"</c>) gives one ▁ fewer after
    /// each special token; this engine reads tokenizer.model, not that file, when both are there.
    /// </summary>
    public int[] EncodeWithSpecialTokens(string text, bool addBos)
    {
        var ids = new List<int>();
        if (addBos) ids.Add(BosId);
        if (SpecialTokens.Count == 0)
        {
            ids.AddRange(EncodeToPieces(text).Select(p => p.Id));
            return ids.ToArray();
        }

        // Longest first: where one special token's text begins another's, the longer is the token (as the longest
        // match of Hugging Face's added-token trie).
        _specialTokenPattern ??= new Regex(string.Join("|", SpecialTokens.Keys.OrderByDescending(t => t.Length).Select(Regex.Escape)));
        int start = 0;
        foreach (Match m in _specialTokenPattern.Matches(text))
        {
            if (m.Index > start) ids.AddRange(EncodeToPieces(text[start..m.Index]).Select(p => p.Id));
            ids.Add(SpecialTokens[m.Value]);
            start = m.Index + m.Length;
        }

        if (start < text.Length) ids.AddRange(EncodeToPieces(text[start..]).Select(p => p.Id));
        return ids.ToArray();
    }

    public int[] Encode(string text, bool addBos, bool addEos = false)
    {
        var ids = new List<int>();
        if (addBos) ids.Add(BosId);
        ids.AddRange(EncodeToPieces(text).Select(p => p.Id));
        if (addEos) ids.Add(EosId);
        return ids.ToArray();
    }

    /// <summary>
    /// Loads the tokenizer of a checkpoint folder (<c>tokenizer.model</c> first, else <c>tokenizer.json</c>), or
    /// returns null when it has neither.
    /// </summary>
    public static TextTokenizer? TryLoad(string directory)
    {
        var config = TokenizerConfig.Load(Path.Combine(directory, TokenizerConfigFileName));
        var sp = Path.Combine(directory, SentencePieceFileName);
        if (File.Exists(sp)) return new SentencePieceTextTokenizer(sp, File.ReadAllBytes(sp), config.AddBos, config.AddEos);
        var json = Path.Combine(directory, TokenizerJsonFileName);
        if (File.Exists(json)) return ByteLevelBpeTextTokenizer.Load(json, config);
        return null;
    }
}

/// <summary>The fields of <c>tokenizer_config.json</c> the engine uses.</summary>
public sealed record TokenizerConfig(bool? AddBos, bool? AddEos, string? BosToken, string? EosToken)
{
    public static TokenizerConfig Load(string path)
    {
        if (!File.Exists(path)) return new TokenizerConfig(null, null, null, null);
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object) return new TokenizerConfig(null, null, null, null);
            static bool? Flag(JsonElement root, string name) =>
                root.TryGetProperty(name, out var v) ? v.ValueKind switch
                {
                    JsonValueKind.True => true,
                    JsonValueKind.False => false,
                    _ => null,
                } : null;
            static string? Token(JsonElement root, string name) => root.TryGetProperty(name, out var v) ? TokenText(v) : null;
            return new TokenizerConfig(Flag(root, "add_bos_token"), Flag(root, "add_eos_token"), Token(root, "bos_token"), Token(root, "eos_token"));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e);
        }
    }

    /// <summary>A special token's text as tokenizer_config.json writes it: a string, or an AddedToken object
    /// <c>{"content": "...", "lstrip": ..., ...}</c>; null for anything else.</summary>
    public static string? TokenText(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString(),
        JsonValueKind.Object when value.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String => content.GetString(),
        _ => null,
    };
}

/// <summary>
/// A SentencePiece BPE <c>tokenizer.model</c> segmented by Microsoft.ML.Tokenizers' <see cref="LlamaTokenizer"/>,
/// with SentencePiece's own normalization (<see cref="SentencePieceTextNormalizer"/>: the precompiled
/// <c>nmt_nfkc</c> charsmap, which the library refuses) applied first.
/// </summary>
public sealed partial class SentencePieceTextTokenizer : TextTokenizer
{
    private readonly LlamaTokenizer _bpe;
    private readonly SentencePieceTextNormalizer _normalizer;
    private readonly string[] _pieces;        // id → piece
    private readonly int[] _byteValue;        // id → byte for <0xAB> pieces, else -1
    private readonly bool _escapeWhitespaces;
    private readonly bool _addDummyPrefix;

    /// <summary><c>add_bos_token</c>, default true.</summary>
    public override bool AddBos { get; }

    /// <summary><c>add_eos_token</c>, default false.</summary>
    public override bool AddEos { get; }

    public override int BosId => _bpe.BeginningOfSentenceId;

    public override int EosId => _bpe.EndOfSentenceId;

    public int UnknownId => _bpe.UnknownId;

    /// <summary><c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c> and <c>&lt;/s&gt;</c> (the pieces of the unknown, BOS and EOS ids), the
    /// special tokens Hugging Face's LlamaTokenizer splits out of text.</summary>
    public override IReadOnlyDictionary<string, int> SpecialTokens { get; }

    public override int VocabularySize => _pieces.Length;

    public override string Source { get; }

    internal SentencePieceTextTokenizer(string source, byte[] model, bool? addBos, bool? addEos)
    {
        Source = source;
        var spec = SentencePieceModelProto.ReadNormalizerSpec(model, source);
        _normalizer = new SentencePieceTextNormalizer(spec, source);
        _escapeWhitespaces = spec.EscapeWhitespaces;
        _addDummyPrefix = spec.AddDummyPrefix;
        using var stream = new MemoryStream(SentencePieceModelProto.WithIdentityNormalizer(model, source));
        try
        {
            _bpe = LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{source}: cannot be loaded as a SentencePiece BPE model: {e.Message}", e);
        }

        int size = _bpe.Vocabulary.Values.DefaultIfEmpty(-1).Max() + 1;
        _pieces = new string[size];
        _byteValue = Enumerable.Repeat(-1, size).ToArray();
        foreach (var (piece, id) in _bpe.Vocabulary)
        {
            _pieces[id] = piece;
            var m = BytePiece().Match(piece);
            if (m.Success) _byteValue[id] = Convert.ToInt32(m.Groups[1].Value, 16);
        }

        for (int i = 0; i < size; i++) _pieces[i] ??= "";
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (int id in new[] { UnknownId, BosId, EosId })
            if ((uint)id < (uint)size && _pieces[id].Length > 0) special.TryAdd(_pieces[id], id);
        SpecialTokens = special;
        AddBos = addBos ?? true;
        AddEos = addEos ?? false;
    }

    [GeneratedRegex("^<0x([0-9A-Fa-f]{2})>$")]
    private static partial Regex BytePiece();

    /// <summary>The text as SentencePiece normalizes it before segmentation (spaces as U+2581).</summary>
    public override string Normalize(string text) => _normalizer.Normalize(text);

    /// <summary>The pieces of <paramref name="text"/> (no BOS/EOS), as SentencePiece's <c>encode(out_type=str)</c>.</summary>
    public override IReadOnlyList<TokenPiece> EncodeToPieces(string text)
    {
        var normalized = _normalizer.Normalize(text);
        if (normalized.Length == 0) return Array.Empty<TokenPiece>();
        var tokens = _bpe.EncodeToTokens(normalized, out _, addBeginningOfSentence: false, addEndOfSentence: false,
            considerPreTokenization: false, considerNormalization: false);
        return tokens.Select(t => new TokenPiece(t.Id, t.Value)).ToArray();
    }

    /// <summary>The vocabulary piece of an id.</summary>
    public override string Piece(int id) =>
        (uint)id < (uint)_pieces.Length ? _pieces[id] : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");

    public override byte[] TokenBytes(int id)
    {
        string piece = Piece(id);
        if (_byteValue[id] >= 0) return [(byte)_byteValue[id]];
        if (id == UnknownId) return Encoding.UTF8.GetBytes(" \u2047 ");
        return Encoding.UTF8.GetBytes(_escapeWhitespaces ? piece.Replace(SentencePieceTextNormalizer.SpaceSymbol, ' ') : piece);
    }

    /// <summary>
    /// Text of token ids as SentencePiece decodes it: control tokens (BOS, EOS) dropped, byte pieces joined into
    /// UTF-8, U+2581 turned back into spaces, and the dummy-prefix space removed.
    /// </summary>
    public override string Decode(IEnumerable<int> ids)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        void Flush()
        {
            if (bytes.Count == 0) return;
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
            bytes.Clear();
        }

        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_pieces.Length) throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");
            if (id == BosId || id == EosId) continue;
            if (_byteValue[id] >= 0)
            {
                bytes.Add((byte)_byteValue[id]);
                continue;
            }

            Flush();
            text.Append(id == UnknownId ? " \u2047 " : _pieces[id]);
        }

        Flush();
        var s = text.ToString();
        if (_escapeWhitespaces) s = s.Replace(SentencePieceTextNormalizer.SpaceSymbol, ' ');
        if (_addDummyPrefix && s.StartsWith(' ')) s = s[1..];
        return s;
    }
}
