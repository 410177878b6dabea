using System.Text.Json;
using SpecializedInference.Tokenization;

namespace SpecializedInference.Tests.Model;

/// <summary>The docstrings tokenizer against encodings made by the sentencepiece library itself.</summary>
public sealed class TokenizerTests
{
    private static readonly TextTokenizer Tokenizer = TextTokenizer.TryLoad(TestPaths.Docstrings)!;

    public static IEnumerable<object[]> Samples()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.Docstrings, "tokenizer_reference.json")));
        int i = 0;
        foreach (var s in doc.RootElement.GetProperty("samples").EnumerateArray())
            yield return new object[] { i++, s.GetProperty("text").GetString()! };
    }

    private static JsonElement Sample(int index)
    {
        var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.Docstrings, "tokenizer_reference.json")));
        return doc.RootElement.GetProperty("samples")[index].Clone();
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public void EncodesLikeSentencePiece(int index, string text)
    {
        var sample = Sample(index);
        var expectedIds = sample.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var expectedPieces = sample.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()!).ToArray();
        var pieces = Tokenizer.EncodeToPieces(text);
        Assert.Equal(expectedIds, pieces.Select(p => p.Id).ToArray());
        Assert.Equal(expectedPieces, pieces.Select(p => p.Piece).ToArray());
        Assert.Equal(expectedIds, Tokenizer.Encode(text, addBos: false));
    }

    [Theory]
    [MemberData(nameof(Samples))]
    public void DecodesLikeSentencePiece(int index, string text)
    {
        var sample = Sample(index);
        var ids = sample.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        Assert.Equal(sample.GetProperty("decoded").GetString(), Tokenizer.Decode(ids));
        _ = text;
    }

    /// <summary>Each token's own bytes (what log-probabilities name it by) join to sentencepiece's decoded text, less the
    /// dummy-prefix space that decoding drops; byte-fallback pieces give one byte each.</summary>
    [Theory]
    [MemberData(nameof(Samples))]
    public void TokenBytesJoinToTheDecodedText(int index, string text)
    {
        var sample = Sample(index);
        var ids = sample.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        string joined = System.Text.Encoding.UTF8.GetString(ids.SelectMany(Tokenizer.TokenBytes).ToArray());
        Assert.Equal(sample.GetProperty("decoded").GetString(), joined.StartsWith(' ') ? joined[1..] : joined);
        foreach (int id in ids)
            if (Tokenizer.Piece(id) is ['<', '0', 'x', _, _, '>'] piece)
                Assert.Equal([Convert.ToByte(piece[3..5], 16)], Tokenizer.TokenBytes(id));
        Assert.Equal("</s>"u8.ToArray(), Tokenizer.TokenBytes(Tokenizer.EosId));
        _ = text;
    }

    [Fact]
    public void VocabularyMatchesTheModelsPieces()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.Docstrings, "tokenizer_reference.json")));
        var pieces = doc.RootElement.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()!).ToArray();
        Assert.Equal(pieces.Length, Tokenizer.VocabularySize);
        for (int i = 0; i < pieces.Length; i++) Assert.Equal(pieces[i], Tokenizer.Piece(i));
    }

    [Fact]
    public void PromptsAndGreedyTextMatchTheModelReference()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.Docstrings, "reference.json")));
        foreach (var p in doc.RootElement.GetProperty("prompts").EnumerateArray())
        {
            var prompt = p.GetProperty("prompt").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            // tokenizer_config.json says add_bos_token: the reference prompts start with BOS.
            Assert.True(Tokenizer.AddBos);
            Assert.Equal(prompt, Tokenizer.Encode(p.GetProperty("prompt_text").GetString()!));
            var greedy = p.GetProperty("greedy").EnumerateArray().Select(e => e.GetInt32()).ToArray();
            Assert.Equal(p.GetProperty("greedy_text").GetString(), Tokenizer.Decode(greedy));
        }
    }

    [Theory]
    [InlineData("a\tb\nc\rd", "\u2581a\u2581b\u2581c\u2581d")] // nmt: tab, LF, CR become spaces
    [InlineData("x\u0001y\u007fz", "\u2581xyz")]                // nmt: control characters removed
    [InlineData("\uff21\uff22 \u2460", "\u2581AB\u25811")]      // NFKC: full-width letters, circled digit
    [InlineData("  many   spaces  ", "\u2581many\u2581spaces")]
    [InlineData("\u00a0nbsp", "\u2581nbsp")]                    // NFKC: no-break space is a space, then dropped
    public void NormalizesWithThePrecompiledCharsMap(string text, string expected)
    {
        Assert.Equal(expected, Tokenizer.Normalize(text));
    }

    /// <summary>
    /// A rendered chat template holds special-token text that Hugging Face encodes as the tokens (its added tokens are
    /// split out first, each stretch between them encoded on its own); SentencePiece itself, and a plain prompt, read
    /// the same text as characters.
    /// </summary>
    [Fact]
    public void SpecialTokenTextInAChatPromptIsTheTokens()
    {
        Assert.Equal(new Dictionary<string, int> { ["<unk>"] = 0, ["<s>"] = 1, ["</s>"] = 2 }, Tokenizer.SpecialTokens);
        const string prompt = "<s>[INST] hello [/INST] Return the </s><s>[INST] x<unk> [/INST]";
        int[] expected =
        [
            1, .. Tokenizer.Encode("[INST] hello [/INST] Return the ", addBos: false), 2,
            1, .. Tokenizer.Encode("[INST] x", addBos: false), 0, .. Tokenizer.Encode(" [/INST]", addBos: false),
        ];
        Assert.Equal(expected, Tokenizer.EncodeWithSpecialTokens(prompt, addBos: false));
        Assert.Equal(expected.Prepend(1), Tokenizer.EncodeWithSpecialTokens(prompt, addBos: true));

        var plain = Tokenizer.Encode(prompt, addBos: false);
        Assert.DoesNotContain(1, plain);
        Assert.Equal(new[] { "\u2581<", "s", ">" }, Tokenizer.EncodeToPieces("<s>").Select(p => p.Piece));
        Assert.Equal(Tokenizer.Encode("Return the", addBos: true), Tokenizer.EncodeWithSpecialTokens("Return the", addBos: true));
    }

    [Fact]
    public void FolderWithoutTokenizerHasNone()
    {
        Assert.Null(TextTokenizer.TryLoad(TestPaths.HfCase("gqa-tiny")));
    }
}
