using System.Text.Json;
using SpecializedInference.Tokenization;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// A hand-made byte-level BPE tokenizer.json (the Llama 3 / GPT-2 form): ids 0-255 are single bytes, then six
/// merges. The expected segmentations follow BPE by hand: repeatedly merge the adjacent pair whose merged
/// token comes first in the merges list.
/// </summary>
public sealed class ByteLevelTokenizerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("si-bytelevel-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void Write(string? preTokenizer = null, string modelType = "BPE")
    {
        var (byteToChar, _) = ByteLevelBpeTextTokenizer.ByteLevelAlphabet();
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++) vocab[byteToChar[b].ToString()] = b;
        string[] merges = { "h e", "l l", "he ll", "\u0120 w", "o r", "\u0120w or" };
        int next = 256;
        foreach (var m in merges) vocab[m.Replace(" ", "")] = next++;
        var json = new Dictionary<string, object?>
        {
            ["version"] = "1.0",
            ["added_tokens"] = new[] { new Dictionary<string, object> { ["id"] = 262, ["content"] = "<|begin_of_text|>", ["special"] = true },
                                       new Dictionary<string, object> { ["id"] = 263, ["content"] = "<|end_of_text|>", ["special"] = true } },
            ["normalizer"] = null,
            ["pre_tokenizer"] = JsonDocument.Parse(preTokenizer ?? """{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}""").RootElement,
            ["post_processor"] = JsonDocument.Parse("""{"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}]}""").RootElement,
            ["model"] = new Dictionary<string, object> { ["type"] = modelType, ["vocab"] = vocab, ["merges"] = merges },
        };
        File.WriteAllText(Path.Combine(_dir, "tokenizer.json"), JsonSerializer.Serialize(json));
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), """{"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}""");
    }

    [Fact]
    public void EncodesDecodesAndAddsBosFromThePostProcessor()
    {
        Write();
        var tok = Assert.IsType<ByteLevelBpeTextTokenizer>(TextTokenizer.TryLoad(_dir));
        // "hello" → h e l l o → he l l o → he ll o → hell o; " world" → Ġ w o r l d → Ġw o r l d → Ġw or l d → Ġwor l d.
        var pieces = tok.EncodeToPieces("hello world");
        Assert.Equal(new[] { 258, 'o', 261, 'l', 'd' }, pieces.Select(p => p.Id));
        Assert.Equal(new[] { "hell", "o", "\u0120wor", "l", "d" }, pieces.Select(p => p.Piece));
        Assert.True(tok.AddBos);
        Assert.Equal(new[] { 262, 258, 'o', 261, 'l', 'd' }, tok.Encode("hello world"));
        Assert.Equal("hello world", tok.Decode(tok.Encode("hello world")));
        // Each token's own bytes: the byte-level alphabet undone (Ġ is a space), a special token's text.
        Assert.Equal(" wor"u8.ToArray(), tok.TokenBytes(261));
        Assert.Equal([0xE2], tok.TokenBytes(0xE2));
        Assert.Equal("<|end_of_text|>"u8.ToArray(), tok.TokenBytes(263));
        Assert.Equal(263, tok.EosId);
        // Multi-byte UTF-8 goes through single-byte tokens and decodes back.
        Assert.Equal("café ✓", tok.Decode(tok.Encode("café ✓")));
        Assert.Equal(Enumerable.Range(0, 1).Select(_ => 262).Concat("café".Select(c => (int)c).Take(3)).Concat(new[] { 0xC3, 0xA9 }),
            tok.Encode("café"));
    }

    [Fact]
    public void SpecialTokenTextInAChatPromptIsTheTokens()
    {
        Write();
        var tok = TextTokenizer.TryLoad(_dir)!;
        Assert.Equal(new Dictionary<string, int> { ["<|begin_of_text|>"] = 262, ["<|end_of_text|>"] = 263 }, tok.SpecialTokens);
        // "hello" → hell o; " world" → Ġwor l d, each stretch encoded on its own.
        Assert.Equal(new[] { 262, 258, 'o', 263, 261, 'l', 'd', 263 }, tok.EncodeWithSpecialTokens("<|begin_of_text|>hello<|end_of_text|> world<|end_of_text|>", addBos: false));
        Assert.Equal(new[] { 262, 262, 258, 'o' }, tok.EncodeWithSpecialTokens("<|begin_of_text|>hello", addBos: true));
        Assert.Equal(tok.Encode("hello world", addBos: true), tok.EncodeWithSpecialTokens("hello world", addBos: true));
    }

    [Fact]
    public void Llama3StyleSplitPatternIsUsed()
    {
        // Llama 3: a Split step with its regex, then ByteLevel without its own regex. Digits split in threes.
        Write("""{"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}]}""");
        var tok = TextTokenizer.TryLoad(_dir)!;
        Assert.Equal(new[] { '1', '2', '3', '4', 258, 'o' }, tok.EncodeToPieces("1234hello").Select(p => p.Id));
    }

    [Fact]
    public void UnsupportedTokenizerJsonNamesTheFileAndSaysToUsePromptIds()
    {
        Write(modelType: "WordPiece");
        var e = Assert.Throws<NotSupportedException>(() => TextTokenizer.TryLoad(_dir));
        Assert.Contains(Path.Combine(_dir, "tokenizer.json"), e.Message);
        Assert.Contains("model.type is 'WordPiece'", e.Message);
        Assert.Contains("--prompt-ids", e.Message);
    }
}
