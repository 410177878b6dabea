using System.Text;

namespace SpecializedInference.Text;

/// <summary>
/// Applies OpenAI-style stop strings to streamed text: generation ends at the first occurrence of any stop
/// string, and the text returned stops just before it (the stop string itself is never returned).
/// <para>While the text seen so far ends with the beginning of a stop string, that tail is held back, so a
/// stream never shows a stop string that is later completed, and the returned pieces joined are the same
/// text a non-streamed request gets. Not thread-safe: one per request.</para>
/// </summary>
public sealed class StopStringFilter
{
    private readonly string[] _stops;
    private readonly int _longest;
    private readonly StringBuilder _pending = new();

    public StopStringFilter(IReadOnlyList<string>? stops)
    {
        _stops = stops?.ToArray() ?? Array.Empty<string>();
        if (_stops.Any(string.IsNullOrEmpty))
            throw new ArgumentException("Stop strings must not be empty.", nameof(stops));
        _longest = _stops.Length == 0 ? 0 : _stops.Max(s => s.Length);
    }

    /// <summary>Whether a stop string was found (nothing more is returned after that).</summary>
    public bool Stopped { get; private set; }

    /// <summary>The stop string that ended the text, if one did.</summary>
    public string? MatchedStop { get; private set; }

    /// <summary>Adds new text; returns the part that can be shown now.</summary>
    public string Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (Stopped)
            return "";
        if (_stops.Length == 0)
            return text;
        _pending.Append(text);
        string pending = _pending.ToString();

        // Only held text and the new text can contain a stop: anything emitted earlier began no stop string.
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first))
            {
                first = at;
                MatchedStop = stop;
            }
        }
        if (first >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return pending[..first];
        }

        int emit = pending.Length - HeldTail(pending);
        if (emit > 0 && char.IsHighSurrogate(pending[emit - 1]))
            emit--; // never split a surrogate pair
        _pending.Remove(0, emit);
        return pending[..emit];
    }

    /// <summary>The end of the text: returns whatever was held back.</summary>
    public string Flush()
    {
        if (Stopped)
            return "";
        string rest = _pending.ToString();
        _pending.Clear();
        return rest;
    }

    // Length of the longest tail of the text that begins some stop string.
    private int HeldTail(string pending)
    {
        for (int length = Math.Min(pending.Length, _longest - 1); length > 0; length--)
        {
            var tail = pending.AsSpan(pending.Length - length);
            foreach (var stop in _stops)
                if (stop.AsSpan().StartsWith(tail, StringComparison.Ordinal))
                    return length;
        }
        return 0;
    }
}
