using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace SpecializedInference.Tokenization;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> of a byte-level BPE model (Llama 3, GPT-2 style): the vocabulary's
/// byte-level strings are turned back into bytes and handed to Microsoft.ML.Tokenizers'
/// <see cref="TiktokenTokenizer"/> with ranks = ids (tiktoken merges the pair whose merged token has the lowest
/// rank, which is the merges list's order when ids follow it; checked on load), split first by the file's
/// pre-tokenizer regex. Added tokens marked special are matched as whole tokens.
/// </summary>
public sealed class ByteLevelBpeTextTokenizer : TextTokenizer
{
    /// <summary>GPT-2's pre-tokenizer, used by a ByteLevel pre-tokenizer with use_regex.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly TiktokenTokenizer _bpe;
    private readonly string[] _pieces;
    private readonly HashSet<int> _special;
    private readonly HashSet<int> _added; // added_tokens: their pieces are plain text, not byte-level strings
    private readonly int? _bos;
    private readonly int? _eos;

    private ByteLevelBpeTextTokenizer(string source, TiktokenTokenizer bpe, string[] pieces, Dictionary<string, int> special, HashSet<int> added, int? bos, int? eos, bool addBos, bool addEos)
    {
        Source = source;
        _bpe = bpe;
        _pieces = pieces;
        _special = special.Values.ToHashSet();
        _added = added;
        SpecialTokens = special;
        _bos = bos;
        _eos = eos;
        AddBos = addBos && bos is not null;
        AddEos = addEos && eos is not null;
    }

    public override bool AddBos { get; }

    public override bool AddEos { get; }

    public override int BosId => _bos ?? throw new InvalidOperationException($"{Source}: no BOS token (tokenizer_config.json names none)");

    public override int EosId => _eos ?? throw new InvalidOperationException($"{Source}: no EOS token (tokenizer_config.json names none)");

    public override int VocabularySize => _pieces.Length;

    /// <summary>The file's <c>added_tokens</c> marked special, by their text.</summary>
    public override IReadOnlyDictionary<string, int> SpecialTokens { get; }

    public override string Source { get; }

    /// <summary>GPT-2's byte → printable character table (bytes_to_unicode) and its inverse.</summary>
    public static (char[] ByteToChar, Dictionary<char, byte> CharToByte) ByteLevelAlphabet()
    {
        var chars = new char[256];
        int extra = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            chars[b] = printable ? (char)b : (char)(256 + extra++);
        }

        return (chars, Enumerable.Range(0, 256).ToDictionary(b => chars[b], b => (byte)b));
    }

    /// <summary>Loads <paramref name="path"/>; unsupported forms fail with the file and the field named.</summary>
    public static ByteLevelBpeTextTokenizer Load(string path, TokenizerConfig config)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            NotSupportedException Unsupported(string what) =>
                new($"{path}: {what}; only byte-level BPE tokenizer.json files (Llama 3, GPT-2 style) and SentencePiece tokenizer.model are supported — pass token ids with --prompt-ids instead");

            if (!root.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.Object)
                throw Unsupported("no 'model' object");
            var type = model.TryGetProperty("type", out var t) ? t.GetString() : null;
            if (type != "BPE") throw Unsupported($"model.type is '{type}', not 'BPE'");
            if (root.TryGetProperty("normalizer", out var norm) && norm.ValueKind != JsonValueKind.Null)
                throw Unsupported("a normalizer is set (byte-level BPE models have none)");
            var pattern = PreTokenizerPattern(root.TryGetProperty("pre_tokenizer", out var pre) ? pre : default, Unsupported);

            // Vocabulary: byte-level strings → bytes; ranks = ids.
            var (_, charToByte) = ByteLevelAlphabet();
            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object) throw Unsupported("no model.vocab object");
            var pieces = new Dictionary<int, string>();
            var ranks = new StringBuilder();
            foreach (var entry in vocab.EnumerateObject())
            {
                int id = entry.Value.GetInt32();
                var bytes = new byte[entry.Name.Length];
                for (int i = 0; i < bytes.Length; i++)
                    if (!charToByte.TryGetValue(entry.Name[i], out bytes[i]))
                        throw Unsupported($"model.vocab entry '{entry.Name}' is not a byte-level string");
                pieces[id] = entry.Name;
                ranks.Append(Convert.ToBase64String(bytes)).Append(' ').Append(id).Append('\n');
            }

            CheckMergesFollowIds(model, vocab, Unsupported);

            var special = new Dictionary<string, int>(StringComparer.Ordinal);
            var addedIds = new HashSet<int>();
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind == JsonValueKind.Array)
                foreach (var a in added.EnumerateArray())
                {
                    var content = a.GetProperty("content").GetString()!;
                    int id = a.GetProperty("id").GetInt32();
                    pieces[id] = content;
                    addedIds.Add(id);
                    if (a.TryGetProperty("special", out var sp) && sp.ValueKind == JsonValueKind.True) special[content] = id;
                }

            int size = pieces.Keys.Max() + 1;
            var byId = new string[size];
            foreach (var (id, piece) in pieces) byId[id] = piece;
            for (int i = 0; i < size; i++) byId[i] ??= "";

            var preTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), special.Count > 0 ? special : null);
            using var stream = new MemoryStream(Encoding.UTF8.GetBytes(ranks.ToString()));
            var bpe = TiktokenTokenizer.Create(stream, preTokenizer, normalizer: null, specialTokens: special.Count > 0 ? special : null);

            int? bos = config.BosToken is { } b && special.TryGetValue(b, out var bi) ? bi : null;
            int? eos = config.EosToken is { } e && special.TryGetValue(e, out var ei) ? ei : null;
            // Llama 3 writes no add_bos_token; its post-processor template adds BOS.
            bool addBos = config.AddBos ?? (bos is not null && PostProcessorAdds(root, config.BosToken!));
            return new ByteLevelBpeTextTokenizer(path, bpe, byId, special, addedIds, bos, eos, addBos, config.AddEos ?? false);
        }
    }

    private static string PreTokenizerPattern(JsonElement pre, Func<string, NotSupportedException> unsupported)
    {
        if (pre.ValueKind != JsonValueKind.Object) throw unsupported("no pre_tokenizer (a byte-level BPE tokenizer has a ByteLevel one)");
        var steps = pre.GetProperty("type").GetString() == "Sequence" ? pre.GetProperty("pretokenizers").EnumerateArray().ToArray() : new[] { pre };
        string? pattern = null;
        bool byteLevel = false;
        foreach (var step in steps)
        {
            switch (step.GetProperty("type").GetString())
            {
                case "Split" when step.TryGetProperty("pattern", out var p) && p.TryGetProperty("Regex", out var regex):
                    pattern = regex.GetString();
                    break;
                case "ByteLevel":
                    byteLevel = true;
                    if (step.TryGetProperty("add_prefix_space", out var aps) && aps.ValueKind == JsonValueKind.True)
                        throw unsupported("pre_tokenizer ByteLevel.add_prefix_space is true");
                    if (!(step.TryGetProperty("use_regex", out var ur) && ur.ValueKind == JsonValueKind.False)) pattern ??= Gpt2Pattern;
                    break;
                default:
                    throw unsupported($"pre_tokenizer step '{step.GetProperty("type").GetString()}' is not supported");
            }
        }

        if (!byteLevel) throw unsupported("the pre_tokenizer has no ByteLevel step");
        return pattern ?? throw unsupported("the pre_tokenizer has no split pattern");
    }

    /// <summary>tiktoken merges by the merged token's rank (= id here); HF BPE by the merges list's order. They agree
    /// when the merged tokens' ids grow along the list.</summary>
    private static void CheckMergesFollowIds(JsonElement model, JsonElement vocab, Func<string, NotSupportedException> unsupported)
    {
        if (!model.TryGetProperty("merges", out var merges) || merges.ValueKind != JsonValueKind.Array) return;
        int last = -1, index = 0;
        foreach (var m in merges.EnumerateArray())
        {
            string merged = m.ValueKind == JsonValueKind.Array
                ? m[0].GetString() + m[1].GetString()
                : m.GetString()!.Replace(" ", "");
            if (!vocab.TryGetProperty(merged, out var idElement))
                throw unsupported($"model.merges[{index}] makes '{merged}', which is not in model.vocab");
            int id = idElement.GetInt32();
            if (id <= last) throw unsupported($"model.merges[{index}] makes '{merged}' (id {id}) after a token with id {last}: merge order and ids disagree");
            last = id;
            index++;
        }
    }

    private static bool PostProcessorAdds(JsonElement root, string token) =>
        root.TryGetProperty("post_processor", out var pp) && pp.ValueKind == JsonValueKind.Object && pp.GetRawText().Contains(JsonSerializer.Serialize(token));

    public override string Normalize(string text) => text;

    public override IReadOnlyList<TokenPiece> EncodeToPieces(string text)
    {
        var ids = _bpe.EncodeToIds(text);
        return ids.Select(id => new TokenPiece(id, _pieces[id])).ToArray();
    }

    public override string Piece(int id) =>
        (uint)id < (uint)_pieces.Length ? _pieces[id] : throw new ArgumentOutOfRangeException(nameof(id), $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");

    public override byte[] TokenBytes(int id)
    {
        string piece = Piece(id);
        if (_added.Contains(id)) return Encoding.UTF8.GetBytes(piece);
        var bytes = new byte[piece.Length];
        for (int i = 0; i < bytes.Length; i++)
            bytes[i] = CharToByte[piece[i]];
        return bytes;
    }

    private static readonly Dictionary<char, byte> CharToByte = ByteLevelAlphabet().CharToByte;

    public override string Decode(IEnumerable<int> ids)
    {
        var list = ids.ToList();
        foreach (var id in list)
            if ((uint)id >= (uint)_pieces.Length)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");
        return _bpe.Decode(list.Where(id => !_special.Contains(id)));
    }
}
