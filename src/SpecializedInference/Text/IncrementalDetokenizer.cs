using System.Runtime.InteropServices;
using System.Text;

namespace SpecializedInference.Text;

/// <summary>
/// Turns generated token ids into text as they arrive, so that the pieces it returns, joined, are exactly
/// <c>tokenizer.Decode(all ids)</c>, and no piece ever ends inside a character.
/// <para>How: it decodes a small window of recent ids twice, without and with the ids not yet emitted, and
/// emits the difference (vLLM's prefix/read offsets). Decoding a window instead of everything keeps each
/// token O(window) rather than O(length), and because the window's first piece is in both decodings, a
/// leading space a SentencePiece decoder drops at the start of a text is dropped from both. The new text is
/// held back while it ends in U+FFFD: a byte-fallback piece such as <c>&lt;0xE2&gt;</c> that starts a
/// multi-byte character decodes to U+FFFD until the character's last byte arrives. <see cref="Flush"/> at
/// the end releases what is still held (a character the model never completed stays U+FFFD, as in the
/// non-streamed text).</para>
/// <para>Relies on the prefix-stable decoding that <see cref="ITextTokenizer"/> describes. Not thread-safe:
/// one per request.</para>
/// </summary>
public sealed class IncrementalDetokenizer
{
    private readonly ITextTokenizer _tokenizer;
    private readonly List<int> _ids = new();
    private readonly StringBuilder _text = new();

    // Ids [_prefixOffset, _readOffset) were emitted and are decoded again as context; ids from _readOffset
    // on are not emitted yet.
    private int _prefixOffset, _readOffset;

    public IncrementalDetokenizer(ITextTokenizer tokenizer) =>
        _tokenizer = tokenizer ?? throw new ArgumentNullException(nameof(tokenizer));

    /// <summary>Every id added so far.</summary>
    public IReadOnlyList<int> Ids => _ids;

    /// <summary>Everything emitted so far (the join of the returned pieces).</summary>
    public string Text => _text.ToString();

    /// <summary>Adds one generated id; returns the text that became stable (often empty).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        return Emit(final: false);
    }

    /// <summary>The end of the generation: returns the rest, incomplete characters included (as U+FFFD).</summary>
    public string Flush()
    {
        string delta = Emit(final: true);
        // Safety net for a decoder that is not prefix-stable after all: the joined text must still be Decode(all).
        string all = _tokenizer.Decode(CollectionsMarshal.AsSpan(_ids));
        string text = _text.ToString();
        if (text != all && all.StartsWith(text, StringComparison.Ordinal))
        {
            string rest = all[text.Length..];
            _text.Append(rest);
            delta += rest;
        }
        return delta;
    }

    private string Emit(bool final)
    {
        if (_readOffset == _ids.Count)
            return "";
        var ids = CollectionsMarshal.AsSpan(_ids);
        string prefix = _prefixOffset == _readOffset ? "" : _tokenizer.Decode(ids[_prefixOffset.._readOffset]);
        string full = _tokenizer.Decode(ids[_prefixOffset..]);
        if (full.Length <= prefix.Length || !full.StartsWith(prefix, StringComparison.Ordinal))
            return ""; // nothing new yet (e.g. a special token), or the window is not stable yet
        if (!final && full[^1] == '\uFFFD')
            return ""; // an incomplete UTF-8 character: wait for its remaining bytes
        string delta = full[prefix.Length..];
        _prefixOffset = _readOffset;
        _readOffset = _ids.Count;
        _text.Append(delta);
        return delta;
    }
}
