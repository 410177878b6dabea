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
            AssertStreamsTo(Tokenizer.Decode(ids), new IncrementalDetokenizer(Tokenizer), ids, $"seed {seed} trial {trial}");
        }
    }

    /// <summary>Adds <paramref name="ids"/> one by one: the text so far is always a prefix of <paramref name="expected"/>,
    /// and after the flush it is all of it.</summary>
    private static void AssertStreamsTo(string expected, IncrementalDetokenizer detokenizer, int[] ids, string where)
    {
        foreach (int id in ids)
        {
            detokenizer.Add(id);
            Assert.True(expected.StartsWith(detokenizer.Text, StringComparison.Ordinal),
                $"{where}: emitted '{detokenizer.Text}' is not a prefix of '{expected}' (ids {string.Join(",", ids)})");
        }
        detokenizer.Flush();
        Assert.True(expected == detokenizer.Text, $"{where}: joined '{detokenizer.Text}' != '{expected}' (ids {string.Join(",", ids)})");
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

    [Fact]
    public void A_continuation_keeps_the_space_before_its_first_word()
    {
        int[] prompt = Tokenizer.Encode("the module", addBos: true);
        int[] ids = Tokenizer.Encode("provides hello", addBos: false);
        var detokenizer = new IncrementalDetokenizer(Tokenizer, prompt);
        Assert.Equal(" provides", detokenizer.Add(ids[0]));
        Assert.Equal(" hello", detokenizer.Add(ids[1]));
        Assert.Equal("", detokenizer.Flush());
        Assert.Equal(" provides hello", IncrementalDetokenizer.Continuation(Tokenizer, prompt, ids));
        // A piece without ▁ continues the prompt's last word.
        Assert.Equal("ld", IncrementalDetokenizer.Continuation(Tokenizer, Tokenizer.Encode("wor", addBos: false), [Tokenizer.WordId("ld")]));
    }

    /// <summary>Random whole-text prompts (longer than the context window) continued by random ids: the pieces join to
    /// what the ids add to the prompt's text, decoding both whole, and the text so far is always a prefix of it.</summary>
    [Fact]
    public void Random_continuations_join_to_the_whole_decode_less_the_prompts()
    {
        int seed = Environment.TickCount;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        string[] parts = ["the", " module", " é", "€", "😀", " hello", "日本", ".", " wor", "ld", " "];
        for (int trial = 0; trial < 300; trial++)
        {
            var text = new StringBuilder();
            for (int i = random.Next(0, 10); i > 0; i--)
                text.Append(parts[random.Next(parts.Length)]);
            int[] prompt = Tokenizer.Encode(text.ToString(), addBos: random.Next(2) == 0);
            var ids = Enumerable.Range(0, random.Next(0, 30)).Select(_ => random.Next(3) switch
            {
                0 => FakeTokenizer.ByteId((byte)random.Next(256)),
                1 => random.Next(FakeTokenizer.FirstByte),
                _ => random.Next(FakeTokenizer.FirstWord, Tokenizer.VocabSize),
            }).ToArray();
            string expected = Tokenizer.Decode([.. prompt, .. ids])[Tokenizer.Decode(prompt).Length..];
            AssertStreamsTo(expected, new IncrementalDetokenizer(Tokenizer, prompt), ids, $"seed {seed} trial {trial}, prompt '{text}'");
        }
    }

    [Fact]
    public void A_prompt_that_ends_inside_a_character_is_continued_from_nothing()
    {
        // The prompt ends with the first byte of "€"; the generated bytes complete it. The prompt's own text has U+FFFD
        // there, so no continuation of that text is exact: the output is the ids' own text.
        int[] prompt = [Tokenizer.WordId("▁the"), FakeTokenizer.ByteId(0xE2)];
        int[] ids = [FakeTokenizer.ByteId(0x82), FakeTokenizer.ByteId(0xAC), Tokenizer.WordId("▁done")];
        Assert.Equal(Tokenizer.Decode(ids), IncrementalDetokenizer.Continuation(Tokenizer, prompt, ids));
    }
}
