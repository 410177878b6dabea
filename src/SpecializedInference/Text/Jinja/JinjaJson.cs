using System.Globalization;
using System.Text;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// Python's <c>json.dumps</c>, which transformers' <c>tojson</c> filter calls: keys in insertion order unless sorted,
/// <c>", "</c> and <c>": "</c> between items without an indent, <c>","</c> and a newline per item with one, floats
/// as <c>repr()</c>, and non-ASCII text as is unless <c>ensure_ascii</c>. Tool definitions reach the prompt this way,
/// so the bytes must be Python's.
/// </summary>
internal static class JinjaJson
{
    public sealed record Options(bool EnsureAscii, string? Indent, string ItemSeparator, string KeySeparator, bool SortKeys, int MaxLength);

    public static string Serialize(JinjaValue value, Options options)
    {
        var text = new StringBuilder();
        Write(text, value, options, 0);
        return JinjaLimits.CheckLength(text.ToString(), options.MaxLength);
    }

    private static void Write(StringBuilder text, JinjaValue value, Options options, int level)
    {
        if (text.Length > options.MaxLength)
            JinjaLimits.CheckLength(text.Length, options.MaxLength, "characters");
        switch (value)
        {
            case JinjaNone:
                text.Append("null");
                break;
            case JinjaBool b:
                text.Append(b.Value ? "true" : "false");
                break;
            case JinjaInt i:
                text.Append(i.Value.ToString(CultureInfo.InvariantCulture));
                break;
            case JinjaFloat f:
                text.Append(Float(f.Value));
                break;
            case JinjaString s:
                WriteString(text, s.Value, options.EnsureAscii);
                break;
            case JinjaList list:
                WriteContainer(text, '[', ']', list.Items, options, level, (item, depth) => Write(text, item, options, depth));
                break;
            case JinjaDict dict:
                var entries = dict.Items.Select(p => (Key: Key(p.Key), p.Value)).ToList();
                if (options.SortKeys)
                    entries.Sort((a, b) => PythonText.Compare(a.Key, b.Key));
                WriteContainer(text, '{', '}', entries, options, level, (entry, depth) =>
                {
                    WriteString(text, entry.Key, options.EnsureAscii);
                    text.Append(options.KeySeparator);
                    Write(text, entry.Value, options, depth);
                });
                break;
            default:
                throw new JinjaRuntimeError($"Object of type {value.TypeName} is not JSON serializable");
        }
    }

    private static void WriteContainer<T>(StringBuilder text, char open, char close, IReadOnlyList<T> items, Options options, int level, Action<T, int> write)
    {
        text.Append(open);
        if (items.Count == 0)
        {
            text.Append(close);
            return;
        }
        for (int i = 0; i < items.Count; i++)
        {
            if (i > 0)
                text.Append(options.ItemSeparator);
            if (options.Indent is { } indent)
                text.Append('\n').Insert(text.Length, indent, level + 1);
            write(items[i], level + 1);
        }
        if (options.Indent is { } closing)
            text.Append('\n').Insert(text.Length, closing, level);
        text.Append(close);
    }

    // json.dumps turns int, float, bool and None keys into strings; other keys are an error.
    private static string Key(JinjaValue key) => key switch
    {
        JinjaString s => s.Value,
        JinjaInt or JinjaFloat or JinjaBool or JinjaNone => Scalar(key),
        _ => throw new JinjaRuntimeError($"keys must be str, int, float, bool or None, not {key.TypeName}"),
    };

    private static string Scalar(JinjaValue value)
    {
        var text = new StringBuilder();
        Write(text, value, new Options(false, null, ", ", ": ", false, int.MaxValue), 0);
        return text.ToString();
    }

    private static string Float(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : PythonText.FloatRepr(d);

    private static void WriteString(StringBuilder text, string s, bool ensureAscii)
    {
        text.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': text.Append("\\\""); break;
                case '\\': text.Append("\\\\"); break;
                case '\n': text.Append("\\n"); break;
                case '\r': text.Append("\\r"); break;
                case '\t': text.Append("\\t"); break;
                case '\b': text.Append("\\b"); break;
                case '\f': text.Append("\\f"); break;
                default:
                    if (c < 0x20 || (ensureAscii && c > 0x7E))
                        text.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture)); // a surrogate pair as two escapes, as Python writes it
                    else
                        text.Append(c);
                    break;
            }
        }
        text.Append('"');
    }
}
