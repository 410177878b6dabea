using System.Text;
using SpecializedInference.Text;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Text;

public sealed class IncrementalDetokenizerTests(ITestOutputHelper output)
{
    private static readonly FakeTokenizer Tokenizer = new();

    private static List<string> Stream(IEnumerable<int> ids, out string joined)
    {
        var detokenizer = new IncrementalDetokenizer(Tokenizer);
        var pieces = ids.Select(detokenizer.Add).ToList();
        pieces.Add(detokenizer.Flush());
        joined = string.Concat(pieces);
        Assert.Equal(joined, detokenizer.Text);
        return pieces;
    }

    [Fact]
    public void MultiByteCharacterIsHeldUntilItsLastByte()
    {
        // "€" = E2 82 AC as three byte-fallback pieces, then "😀" = F0 9F 98 80.
        int[] ids = [Tokenizer.WordId("▁a"), .. "€😀"u8.ToArray().Select(FakeTokenizer.ByteId), Tokenizer.WordId("▁done")];
        var pieces = Stream(ids, out string joined);
        Assert.Equal(["a", "", "", "€", "", "", "", "😀", " done", ""], pieces);
        Assert.Equal("a€😀 done", joined);
        Assert.Equal(Tokenizer.Decode(ids), joined);
    }

    [Fact]
    public void LeadingSpaceOfTheFirstPieceIsDroppedOnceAsInPlainDecode()
    {
        int[] ids = Tokenizer.Encode("the module provides regular expression matching", addBos: false);
        var pieces = Stream(ids, out string joined);
        Assert.Equal("the module provides regular expression matching", joined);
        Assert.Equal("the", pieces[0]);
        Assert.Equal(" module", pieces[1]);
    }

    [Fact]
    public void SpecialTokensAddNothingAndDoNotShiftTheText()
    {
        int[] ids = [FakeTokenizer.Bos, Tokenizer.WordId("▁hello"), FakeTokenizer.Eos, Tokenizer.WordId("▁world"), FakeTokenizer.Eos];
        Stream(ids, out string joined);
        Assert.Equal(Tokenizer.Decode(ids), joined);
        Assert.Equal("hello world", joined);
    }

    [Fact]
    public void IncompleteCharacterAtTheEndIsFlushedAsReplacementCharacter()
    {
        int[] ids = [Tokenizer.WordId("▁caf"), FakeTokenizer.ByteId(0xC3)];
        var pieces = Stream(ids, out string joined);
        Assert.Equal(["caf", "", "\uFFFD"], pieces);
        Assert.Equal(Tokenizer.Decode(ids), joined);
    }

    /// <summary>Random ids (bytes heavily weighted, so invalid sequences, specials and words all mix): the
    /// streamed pieces always join to Decode(all), and the text emitted so far is always a prefix of it.</summary>
    [Fact]
    public void RandomSequencesJoinToThePlainDecode()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        for (int trial = 0; trial < 500; trial++)
        {
            int length = random.Next(0, 40);
            var ids = new int[length];
            for (int i = 0; i < length; i++)
                ids[i] = random.Next(4) switch
                {
                    0 => random.Next(FakeTokenizer.FirstByte),
                    1 => FakeTokenizer.ByteId((byte)random.Next(256)),
                    2 => FakeTokenizer.ByteId((byte)random.Next(0xC0, 0xF5)), // lead bytes: many incomplete characters
                    _ => random.Next(FakeTokenizer.FirstWord, Tokenizer.VocabSize),
                };
            string expected = Tokenizer.Decode(ids);
            var detokenizer = new IncrementalDetokenizer(Tokenizer);
            foreach (int id in ids)
            {
                detokenizer.Add(id);
                Assert.True(expected.StartsWith(detokenizer.Text, StringComparison.Ordinal),
                    $"seed {seed} trial {trial}: emitted '{detokenizer.Text}' is not a prefix of '{expected}' (ids {string.Join(",", ids)})");
            }
            detokenizer.Flush();
            Assert.True(expected == detokenizer.Text, $"seed {seed} trial {trial}: joined '{detokenizer.Text}' != decoded '{expected}' (ids {string.Join(",", ids)})");
        }
    }

    /// <summary>Random valid text through the tokenizer (words plus byte-fallback characters): no streamed
    /// piece contains U+FFFD, i.e. no character was ever split.</summary>
    [Fact]
    public void ValidTextNeverStreamsAReplacementCharacter()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        string[] parts = ["the", " module", " é", "€", "😀", "ß", " hello", "ü", "日本", ".", " wor", "ld", "\u00A0"];
        for (int trial = 0; trial < 200; trial++)
        {
            var text = new StringBuilder();
            for (int i = random.Next(1, 12); i > 0; i--)
                text.Append(parts[random.Next(parts.Length)]);
            int[] ids = Tokenizer.Encode(text.ToString(), addBos: random.Next(2) == 0);
            var pieces = Stream(ids, out string joined);
            Assert.True(pieces.All(p => !p.Contains('\uFFFD')), $"seed {seed} trial {trial}: a piece of '{text}' contains U+FFFD: [{string.Join("|", pieces)}]");
            Assert.Equal(Tokenizer.Decode(ids), joined);
        }
    }
}
