using System.Text;
using SpecializedInference.Text;

namespace SpecializedInference.Tests.Text;

/// <summary>
/// A small SentencePiece-like tokenizer for tests: specials &lt;unk&gt;=0, &lt;s&gt;=1, &lt;/s&gt;=2, then 256
/// byte-fallback pieces &lt;0x00&gt;..&lt;0xFF&gt;, then word pieces where ▁ stands for a space. Encoding adds
/// the dummy-prefix space, matches the longest word piece and falls back to the UTF-8 bytes of a character
/// no piece covers (so "€" becomes &lt;0xE2&gt;&lt;0x82&gt;&lt;0xAC&gt;). Decoding joins byte runs as UTF-8
/// (.NET's decoder: invalid or incomplete sequences become U+FFFD), skips specials and drops the space of
/// the first word piece, as SentencePiece does.
/// </summary>
internal sealed class FakeTokenizer : ITextTokenizer
{
    public const int Unk = 0, Bos = 1, Eos = 2, FirstByte = 3, FirstWord = FirstByte + 256;

    private static readonly string[] Words =
    [
        "▁", "▁the", "▁module", "▁provides", "▁hello", "hello", "▁world", "world", "▁wor", "ld", ".", ",", "é", "▁caf", "caf",
        "▁done", "▁bye", "▁regular", "▁expression", "▁match", "ing", "ed", "er", "▁in", "▁of", "▁to", "▁is", "▁it",
        .. "abcdefghijklmnopqrstuvwxyz".Select(c => c.ToString()),
        .. "abcdefghijklmnopqrstuvwxyz".Select(c => "▁" + c),
    ];

    private readonly List<string> _pieces = new();
    private readonly Dictionary<string, int> _wordIds = new(StringComparer.Ordinal);
    private readonly int _longestWord;

    public FakeTokenizer()
    {
        _pieces.AddRange(["<unk>", "<s>", "</s>"]);
        for (int b = 0; b < 256; b++)
            _pieces.Add($"<0x{b:X2}>");
        foreach (var word in Words)
        {
            _wordIds.Add(word, _pieces.Count);
            _pieces.Add(word);
        }
        _longestWord = Words.Max(w => w.Length);
    }

    public int VocabSize => _pieces.Count;

    public string Piece(int id) => _pieces[id];

    public int WordId(string word) => _wordIds[word];

    public static int ByteId(byte b) => FirstByte + b;

    public int[] Encode(string text, bool addBos)
    {
        var ids = new List<int>();
        if (addBos)
            ids.Add(Bos);
        if (text.Length == 0)
            return ids.ToArray();
        string s = "▁" + text.Replace(' ', '▁');
        int i = 0;
        while (i < s.Length)
        {
            int match = 0;
            for (int length = Math.Min(_longestWord, s.Length - i); length > 0 && match == 0; length--)
            {
                if (_wordIds.TryGetValue(s.Substring(i, length), out int id))
                {
                    ids.Add(id);
                    match = length;
                }
            }
            if (match > 0)
            {
                i += match;
                continue;
            }
            int charLength = char.IsSurrogatePair(s, i) ? 2 : 1;
            foreach (byte b in Encoding.UTF8.GetBytes(s.Substring(i, charLength)))
                ids.Add(ByteId(b));
            i += charLength;
        }
        return ids.ToArray();
    }

    public byte[] TokenBytes(int id) => id is >= FirstByte and < FirstWord
        ? [(byte)(id - FirstByte)]
        : Encoding.UTF8.GetBytes(_pieces[id].Replace('▁', ' '));

    public string Decode(ReadOnlySpan<int> ids)
    {
        var text = new StringBuilder();
        var bytes = new List<byte>();
        bool atStart = true;
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_pieces.Count)
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id {id} is outside the vocabulary of {_pieces.Count}.");
            if (id < FirstByte)
                continue; // specials decode to nothing
            if (id < FirstWord)
            {
                bytes.Add((byte)(id - FirstByte));
                atStart = false;
                continue;
            }
            FlushBytes();
            string piece = _pieces[id].Replace('▁', ' ');
            if (atStart && piece.StartsWith(' '))
                piece = piece[1..];
            atStart = false;
            text.Append(piece);
        }
        FlushBytes();
        return text.ToString();

        void FlushBytes()
        {
            if (bytes.Count == 0)
                return;
            text.Append(Encoding.UTF8.GetString(bytes.ToArray()));
            bytes.Clear();
        }
    }
}
