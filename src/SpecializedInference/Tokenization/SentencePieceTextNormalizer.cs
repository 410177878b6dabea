using System.Buffers.Binary;
using System.Text;

namespace SpecializedInference.Tokenization;

/// <summary>
/// SentencePiece's text normalization, as its C++ <c>Normalizer::Normalize</c> does it: the model's precompiled
/// character map (for the default <c>nmt_nfkc</c>: NFKC plus folding tabs/newlines/zero-width spaces to a
/// space and removing control characters) applied by longest match over UTF-8, then the whitespace rules
/// (drop leading/trailing/repeated spaces, add the dummy prefix, escape spaces as U+2581).
/// </summary>
public sealed class SentencePieceTextNormalizer
{
    public const char SpaceSymbol = '\u2581';
    private static readonly byte[] SpaceSymbolUtf8 = "\u2581"u8.ToArray();
    private static readonly byte[] ReplacementUtf8 = "\uFFFD"u8.ToArray();

    private readonly SentencePieceNormalizerSpec _spec;
    private readonly uint[]? _trie;          // Darts-clone double array
    private readonly byte[] _normalized;     // NUL-separated replacement strings the trie points into

    public SentencePieceTextNormalizer(SentencePieceNormalizerSpec spec, string file)
    {
        _spec = spec;
        _normalized = Array.Empty<byte>();
        var blob = spec.PrecompiledCharsMap;
        if (blob.Length == 0) return;

        // <trie size (4 bytes LE)><double-array trie><normalized strings>
        if (blob.Length < 4) throw Corrupt(file, "precompiled charsmap shorter than its size field");
        uint trieBytes = BinaryPrimitives.ReadUInt32LittleEndian(blob);
        if (trieBytes >= (uint)(blob.Length - 4) + 1 || trieBytes % 4 != 0 || trieBytes == 0)
            throw Corrupt(file, $"precompiled charsmap trie size {trieBytes} does not fit its {blob.Length}-byte blob");
        _trie = new uint[trieBytes / 4];
        for (int i = 0; i < _trie.Length; i++) _trie[i] = BinaryPrimitives.ReadUInt32LittleEndian(blob.AsSpan(4 + i * 4));
        _normalized = blob.AsSpan(4 + (int)trieBytes).ToArray();
    }

    /// <summary>Normalizes <paramref name="text"/> into the string SentencePiece segments.</summary>
    public string Normalize(string text)
    {
        var input = Encoding.UTF8.GetBytes(text);
        var output = new List<byte>(input.Length + 8);
        int pos = 0;

        if (_spec.RemoveExtraWhitespaces)
        {
            // Leading whitespace (after normalization) is dropped.
            while (pos < input.Length)
            {
                var (piece, consumed) = NormalizePrefix(input, pos);
                if (!(piece.Length == 1 && piece[0] == (byte)' ')) break;
                pos += consumed;
            }
        }

        if (pos >= input.Length) return "";

        if (!_spec.TreatWhitespaceAsSuffix && _spec.AddDummyPrefix) AddSpace(output);

        bool previousWasSpace = _spec.RemoveExtraWhitespaces;
        while (pos < input.Length)
        {
            var (piece, consumed) = NormalizePrefix(input, pos);
            int start = 0;
            // A space right after a space is dropped.
            while (previousWasSpace && start < piece.Length && piece[start] == (byte)' ') start++;
            if (start < piece.Length)
            {
                for (int i = start; i < piece.Length; i++)
                {
                    if (_spec.EscapeWhitespaces && piece[i] == (byte)' ') output.AddRange(SpaceSymbolUtf8);
                    else output.Add(piece[i]);
                }

                previousWasSpace = piece[^1] == (byte)' ';
            }

            pos += consumed;
            if (!_spec.RemoveExtraWhitespaces) previousWasSpace = false;
        }

        if (_spec.RemoveExtraWhitespaces)
        {
            var space = _spec.EscapeWhitespaces ? SpaceSymbolUtf8 : new[] { (byte)' ' };
            while (output.Count >= space.Length && output.Skip(output.Count - space.Length).SequenceEqual(space))
                output.RemoveRange(output.Count - space.Length, space.Length);
        }

        if (_spec.TreatWhitespaceAsSuffix && _spec.AddDummyPrefix) AddSpace(output);
        return Encoding.UTF8.GetString(output.ToArray());
    }

    private void AddSpace(List<byte> output)
    {
        if (_spec.EscapeWhitespaces) output.AddRange(SpaceSymbolUtf8);
        else output.Add((byte)' ');
    }

    /// <summary>The normalized form of the longest charsmap match at <paramref name="pos"/>, or the UTF-8
    /// character there unchanged.</summary>
    private (byte[] Piece, int Consumed) NormalizePrefix(byte[] input, int pos)
    {
        int longestLength = 0;
        uint longestValue = 0;
        if (_trie is not null)
        {
            // Darts-clone commonPrefixSearch: walk the trie byte by byte, remembering the last leaf.
            uint nodePos = 0;
            uint unit = _trie[0];
            nodePos ^= Offset(unit);
            for (int i = pos; i < input.Length; i++)
            {
                nodePos ^= input[i];
                if (nodePos >= _trie.Length) break;
                unit = _trie[nodePos];
                if (Label(unit) != input[i]) break;
                nodePos ^= Offset(unit);
                if (nodePos >= _trie.Length) break;
                if (HasLeaf(unit))
                {
                    longestLength = i - pos + 1;
                    longestValue = Value(_trie[nodePos]);
                }
            }
        }

        if (longestLength > 0)
        {
            int start = (int)Math.Min(longestValue, (uint)_normalized.Length);
            int end = Array.IndexOf(_normalized, (byte)0, start);
            if (end < 0) end = _normalized.Length;
            return (_normalized.AsSpan(start, end - start).ToArray(), longestLength);
        }

        int length = Utf8CharLength(input, pos);
        if (length == 0) return (ReplacementUtf8, 1); // malformed UTF-8: U+FFFD, one byte consumed
        return (input.AsSpan(pos, length).ToArray(), length);
    }

    private static bool HasLeaf(uint unit) => ((unit >> 8) & 1) == 1;

    private static uint Value(uint unit) => unit & ((1u << 31) - 1);

    private static uint Label(uint unit) => unit & ((1u << 31) | 0xFF);

    private static uint Offset(uint unit) => (unit >> 10) << (int)((unit & (1u << 9)) >> 6);

    private static int Utf8CharLength(byte[] s, int pos)
    {
        byte b = s[pos];
        int n = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : (b & 0xF8) == 0xF0 ? 4 : 0;
        if (n == 0 || pos + n > s.Length) return 0;
        for (int i = 1; i < n; i++)
            if ((s[pos + i] & 0xC0) != 0x80)
                return 0;
        return n;
    }

    private static InvalidDataException Corrupt(string file, string what) => new($"{file}: not a valid SentencePiece model: {what}");
}
