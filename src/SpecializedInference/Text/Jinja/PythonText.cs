using System.Globalization;
using System.Text;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// Python's text semantics where they differ from .NET's: strings are sequences of code points (an emoji is one
/// character, not a surrogate pair), whitespace is <c>str.isspace</c>'s, and numbers and strings print as
/// <c>str()</c> and <c>repr()</c> do. Chat templates are written against Python, so the prompt text depends on it.
/// </summary>
internal static class PythonText
{
    /// <summary>Python's <c>str.isspace</c> for one code point (.NET's char.IsWhiteSpace without U+001C..U+001F).</summary>
    public static bool IsSpace(int c) =>
        c is (>= 0x09 and <= 0x0D) or (>= 0x1C and <= 0x20) or 0x85 or 0xA0 or 0x1680 or (>= 0x2000 and <= 0x200A)
            or 0x2028 or 0x2029 or 0x202F or 0x205F or 0x3000;

    public static bool IsSpace(string s) => s.Length > 0 && s.All(c => IsSpace(c));

    /// <summary>Python's <c>strip</c>/<c>lstrip</c>/<c>rstrip</c>: whitespace, or any of <paramref name="chars"/>.</summary>
    public static string Strip(string s, string? chars, bool left = true, bool right = true)
    {
        var points = CodePoints(s);
        var strip = chars is null ? null : CodePoints(chars).ToHashSet();
        bool Strippable(int c) => strip is null ? IsSpace(c) : strip.Contains(c);
        int start = 0, end = points.Length;
        if (left)
            while (start < end && Strippable(points[start]))
                start++;
        if (right)
            while (end > start && Strippable(points[end - 1]))
                end--;
        return FromCodePoints(points, start, end - start);
    }

    /// <summary>The code points of a string; a lone surrogate stays one (Python keeps it as a character too).</summary>
    public static int[] CodePoints(string s)
    {
        if (!HasSurrogates(s))
            return s.Select(c => (int)c).ToArray();
        var points = new List<int>(s.Length);
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]))
            {
                points.Add(char.ConvertToUtf32(s[i], s[i + 1]));
                i++;
            }
            else
            {
                points.Add(s[i]);
            }
        }
        return points.ToArray();
    }

    public static string FromCodePoints(IReadOnlyList<int> points, int start, int count)
    {
        var text = new StringBuilder(count);
        for (int i = start; i < start + count; i++)
            AppendCodePoint(text, points[i]);
        return text.ToString();
    }

    public static void AppendCodePoint(StringBuilder text, int c)
    {
        if (c < 0x10000)
            text.Append((char)c);
        else
            text.Append(char.ConvertFromUtf32(c));
    }

    public static string CodePointString(int c) => c < 0x10000 ? ((char)c).ToString() : char.ConvertFromUtf32(c);

    /// <summary>The string backwards by code point (an emoji stays whole).</summary>
    public static string Reverse(string s)
    {
        var points = CodePoints(s);
        Array.Reverse(points);
        return FromCodePoints(points, 0, points.Length);
    }

    /// <summary>Python's <c>len()</c> of a string: code points.</summary>
    public static int Length(string s) => HasSurrogates(s) ? CodePoints(s).Length : s.Length;

    private static bool HasSurrogates(string s)
    {
        foreach (char c in s)
            if (char.IsSurrogate(c))
                return true;
        return false;
    }

    /// <summary>Python's ordering of strings: by code point (.NET's ordinal order is by UTF-16 unit).</summary>
    public static int Compare(string a, string b)
    {
        if (!HasSurrogates(a) && !HasSurrogates(b))
            return Math.Sign(string.CompareOrdinal(a, b));
        var x = CodePoints(a);
        var y = CodePoints(b);
        for (int i = 0; i < Math.Min(x.Length, y.Length); i++)
            if (x[i] != y[i])
                return x[i] < y[i] ? -1 : 1;
        return x.Length.CompareTo(y.Length);
    }

    /// <summary>
    /// Python's <c>slice.indices</c>: the first index, the step and how many items a slice
    /// <c>[start:stop:step]</c> of a sequence of <paramref name="length"/> takes (negative indices count from the end).
    /// </summary>
    public static (int Start, int Step, int Count) SliceIndices(int length, long? start, long? stop, long? step)
    {
        long s = step ?? 1;
        if (s == 0)
            throw new JinjaRuntimeError("slice step cannot be zero");
        long Clamp(long? index, long whenNull, long low, long high)
        {
            if (index is not { } i)
                return whenNull;
            if (i < 0)
                i += length;
            return Math.Clamp(i, low, high);
        }
        long first, last;
        if (s > 0)
        {
            first = Clamp(start, 0, 0, length);
            last = Clamp(stop, length, 0, length);
            return ((int)first, (int)s, last > first ? (int)((last - first - 1) / s + 1) : 0);
        }
        first = Clamp(start, length - 1, -1, length - 1);
        last = Clamp(stop, -1, -1, length - 1);
        return ((int)first, (int)s, first > last ? (int)((first - last - 1) / -s + 1) : 0);
    }

    /// <summary>Python's <c>repr(float)</c> (which <c>str()</c> and <c>json.dumps</c> use too): the shortest digits
    /// that round-trip, positional from 1e-4 to 1e16, else <c>1e-05</c> style, and always a <c>.0</c> or exponent.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d))
            return "nan";
        if (double.IsInfinity(d))
            return d > 0 ? "inf" : "-inf";
        if (d == 0)
            return double.IsNegative(d) ? "-0.0" : "0.0";
        // .NET's "R" is the shortest round-trip form too; only its layout differs (1E-05, 1E+16, 100).
        string r = d.ToString("R", CultureInfo.InvariantCulture);
        bool negative = r[0] == '-';
        if (negative)
            r = r[1..];
        int e = r.IndexOfAny(['E', 'e']);
        string mantissa = e < 0 ? r : r[..e];
        int exponent = e < 0 ? 0 : int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
        int dot = mantissa.IndexOf('.');
        string whole = dot < 0 ? mantissa : mantissa[..dot];
        string digits = whole + (dot < 0 ? "" : mantissa[(dot + 1)..]);
        int point = whole.Length + exponent; // value = 0.<digits> × 10^point
        int zeros = 0;
        while (zeros < digits.Length - 1 && digits[zeros] == '0')
            zeros++;
        digits = digits[zeros..].TrimEnd('0');
        point -= zeros;
        if (digits.Length == 0)
            digits = "0";

        string text;
        if (point is > -4 and <= 16)
        {
            text = point <= 0 ? "0." + new string('0', -point) + digits
                : point >= digits.Length ? digits + new string('0', point - digits.Length) + ".0"
                : digits[..point] + "." + digits[point..];
        }
        else
        {
            int shown = point - 1;
            text = digits[..1] + (digits.Length > 1 ? "." + digits[1..] : "") + "e" + (shown < 0 ? "-" : "+")
                + Math.Abs(shown).ToString("00", CultureInfo.InvariantCulture);
        }
        return negative ? "-" + text : text;
    }

    /// <summary>Python's <c>repr(str)</c>: single quotes unless the text has one and no double quote, escapes for
    /// backslash, the quote and characters that are not printable.</summary>
    public static string StrRepr(string s)
    {
        char quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        var text = new StringBuilder(s.Length + 2).Append(quote);
        foreach (int c in CodePoints(s))
        {
            if (c == quote || c == '\\')
                text.Append('\\').Append((char)c);
            else if (c == '\t')
                text.Append("\\t");
            else if (c == '\n')
                text.Append("\\n");
            else if (c == '\r')
                text.Append("\\r");
            else if (!IsPrintable(c))
                text.Append(c < 0x100 ? $"\\x{c:x2}" : c < 0x10000 ? $"\\u{c:x4}" : $"\\U{c:x8}");
            else
                AppendCodePoint(text, c);
        }
        return text.Append(quote).ToString();
    }

    // Python's str.isprintable: not a control, format, surrogate, private-use, unassigned or separator character
    // other than the plain space.
    private static bool IsPrintable(int c)
    {
        if (c == ' ')
            return true;
        if (c is >= 0xD800 and <= 0xDFFF)
            return false;
        return CharUnicodeInfo.GetUnicodeCategory(c) switch
        {
            UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.Surrogate or UnicodeCategory.PrivateUse
                or UnicodeCategory.OtherNotAssigned or UnicodeCategory.LineSeparator or UnicodeCategory.ParagraphSeparator
                or UnicodeCategory.SpaceSeparator => false,
            _ => true,
        };
    }

    /// <summary>Python's <c>str.title</c>: a cased letter after a cased letter is lowered, any other is raised.</summary>
    public static string Title(string s)
    {
        var text = new StringBuilder(s.Length);
        bool previousCased = false;
        foreach (int c in CodePoints(s))
        {
            string one = CodePointString(c);
            text.Append(previousCased ? one.ToLowerInvariant() : one.ToUpperInvariant());
            previousCased = IsCased(c);
        }
        return text.ToString();
    }

    public static bool IsCased(int c) =>
        CharUnicodeInfo.GetUnicodeCategory(c) is UnicodeCategory.UppercaseLetter or UnicodeCategory.LowercaseLetter or UnicodeCategory.TitlecaseLetter;

    /// <summary>Python's <c>str.capitalize</c>: the first character raised, the rest lowered.</summary>
    public static string Capitalize(string s)
    {
        if (s.Length == 0)
            return s;
        var points = CodePoints(s);
        return CodePointString(points[0]).ToUpperInvariant() + FromCodePoints(points, 1, points.Length - 1).ToLowerInvariant();
    }

    /// <summary>Python's <c>str.split()</c> without a separator: runs of whitespace split, none kept at the ends.</summary>
    public static List<string> SplitWhitespace(string s, int maxSplit)
    {
        var parts = new List<string>();
        var points = CodePoints(s);
        int i = 0;
        while (true)
        {
            while (i < points.Length && IsSpace(points[i]))
                i++;
            if (i == points.Length)
                break;
            if (maxSplit >= 0 && parts.Count == maxSplit)
            {
                int end = points.Length;
                while (end > i && IsSpace(points[end - 1]))
                    end--;
                parts.Add(FromCodePoints(points, i, end - i));
                break;
            }
            int start = i;
            while (i < points.Length && !IsSpace(points[i]))
                i++;
            parts.Add(FromCodePoints(points, start, i - start));
        }
        return parts;
    }
}
