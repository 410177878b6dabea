using System.Text;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// The methods templates call on values: Python's <c>str</c> methods (<c>content.strip()</c>,
/// <c>text.split('&lt;/think&gt;')</c>), <c>dict.items()/keys()/values()/get()</c> and the list methods that change
/// nothing. Methods that would change a list or dict are refused, as jinja2's ImmutableSandboxedEnvironment does.
/// </summary>
internal static class JinjaMethods
{
    private static readonly HashSet<string> MutatingListMethods = ["append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear"];
    private static readonly HashSet<string> MutatingDictMethods = ["update", "pop", "popitem", "setdefault", "clear"];

    /// <summary>The bound method <paramref name="name"/> of <paramref name="value"/>, a refusal, or null when it has none.</summary>
    public static JinjaValue? Find(JinjaValue value, string name, int maxLength) => value switch
    {
        JinjaString s => StringMethod(s.Value, name, maxLength),
        JinjaDict d when MutatingDictMethods.Contains(name) => JinjaUndefined.Unsafe(value, name),
        JinjaDict d => DictMethod(d, name),
        JinjaList l when !l.IsTuple && MutatingListMethods.Contains(name) => JinjaUndefined.Unsafe(value, name),
        JinjaList l => ListMethod(l, name),
        _ => null,
    };

    private static JinjaCallable Method(string name, Func<JinjaArgs, JinjaValue> invoke) => new(name, invoke);

    private static string Text(JinjaValue v, string function, string parameter) =>
        v is JinjaString s ? s.Value : throw new JinjaRuntimeError($"{function}() argument '{parameter}' must be str, not {v.TypeName}");

    private static string? OptionalText(JinjaValue? v, string function, string parameter) =>
        v is null or JinjaNone ? null : Text(v, function, parameter);

    private static long Integer(JinjaValue? v, long fallback, string function) => v switch
    {
        null or JinjaNone => fallback,
        JinjaInt i => i.Value,
        JinjaBool b => b.Value ? 1 : 0,
        _ => throw new JinjaRuntimeError($"{function}() expected an integer, got {v.TypeName}"),
    };

    private static JinjaValue Strings(IEnumerable<string> items) => new JinjaList(items.Select(JinjaValue.From).ToList(), isTuple: false);

    private static JinjaCallable? StringMethod(string s, string name, int maxLength)
    {
        switch (name)
        {
            case "strip" or "lstrip" or "rstrip":
                return Method(name, a => JinjaValue.From(PythonText.Strip(s, OptionalText(a.Expect(name, "chars").Get(0, "chars"), name, "chars"),
                    left: name != "rstrip", right: name != "lstrip")));
            case "upper":
                return Method(name, a => JinjaValue.From(s.ToUpperInvariant()));
            case "lower":
                return Method(name, a => JinjaValue.From(s.ToLowerInvariant()));
            case "title":
                return Method(name, a => JinjaValue.From(PythonText.Title(s)));
            case "capitalize":
                return Method(name, a => JinjaValue.From(PythonText.Capitalize(s)));
            case "swapcase":
                return Method(name, a => JinjaValue.From(string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)))));
            case "startswith" or "endswith":
                return Method(name, a =>
                {
                    var prefixes = a.Expect(name, "prefix").Required(name, 0, "prefix");
                    var options = prefixes is JinjaList { IsTuple: true } tuple ? tuple.Items : [prefixes];
                    return JinjaValue.From(options.Any(p => name == "startswith"
                        ? s.StartsWith(Text(p, name, "prefix"), StringComparison.Ordinal)
                        : s.EndsWith(Text(p, name, "prefix"), StringComparison.Ordinal)));
                });
            case "split" or "rsplit":
                return Method(name, a =>
                {
                    a.Expect(name, "sep", "maxsplit");
                    string? separator = OptionalText(a.Get(0, "sep"), name, "sep");
                    int max = (int)Math.Clamp(Integer(a.Get(1, "maxsplit"), -1, name), -1, int.MaxValue);
                    return Strings(Split(s, separator, max, fromRight: name == "rsplit"));
                });
            case "splitlines":
                return Method(name, a => Strings(SplitLines(s, a.Expect(name, "keepends").Get(0, "keepends")?.IsTruthy ?? false)));
            case "replace":
                return Method(name, a =>
                {
                    a.Expect(name, "old", "new", "count");
                    return JinjaValue.From(Replace(s, Text(a.Required(name, 0, "old"), name, "old"), Text(a.Required(name, 1, "new"), name, "new"),
                        Integer(a.Get(2, "count"), -1, name), maxLength));
                });
            case "find" or "rfind" or "index" or "rindex":
                return Method(name, a =>
                {
                    string sub = Text(a.Expect(name, "sub").Required(name, 0, "sub"), name, "sub");
                    int at = name.StartsWith('r') ? s.LastIndexOf(sub, StringComparison.Ordinal) : s.IndexOf(sub, StringComparison.Ordinal);
                    if (at < 0 && name.EndsWith("index", StringComparison.Ordinal))
                        throw new JinjaRuntimeError("substring not found");
                    return JinjaValue.From(at < 0 ? -1 : PythonText.Length(s[..at]));
                });
            case "count":
                return Method(name, a =>
                {
                    string sub = Text(a.Expect(name, "sub").Required(name, 0, "sub"), name, "sub");
                    return JinjaValue.From(sub.Length == 0 ? PythonText.Length(s) + 1 : CountOccurrences(s, sub, long.MaxValue));
                });
            case "join":
                return Method(name, a => JinjaValue.From(JinjaLimits.Join(s, JinjaOperators.Iterate(a.Expect(name, "iterable").Required(name, 0, "iterable"))
                    .Select((item, i) => item is JinjaString text ? text.Value
                        : throw new JinjaRuntimeError($"sequence item {i}: expected str instance, {item.TypeName} found")).ToList(), maxLength)));
            case "isdigit" or "isnumeric" or "isdecimal":
                return Method(name, a => JinjaValue.From(s.Length > 0 && PythonText.CodePoints(s).All(c => CharCategory(c) == System.Globalization.UnicodeCategory.DecimalDigitNumber)));
            case "isalpha":
                return Method(name, a => JinjaValue.From(s.Length > 0 && s.All(char.IsLetter)));
            case "isalnum":
                return Method(name, a => JinjaValue.From(s.Length > 0 && s.All(char.IsLetterOrDigit)));
            case "isspace":
                return Method(name, a => JinjaValue.From(PythonText.IsSpace(s)));
            case "islower":
                return Method(name, a => JinjaValue.From(s.Any(char.IsLower) && !s.Any(c => char.IsUpper(c))));
            case "isupper":
                return Method(name, a => JinjaValue.From(s.Any(char.IsUpper) && !s.Any(c => char.IsLower(c))));
            case "partition" or "rpartition":
                return Method(name, a =>
                {
                    string separator = Text(a.Expect(name, "sep").Required(name, 0, "sep"), name, "sep");
                    if (separator.Length == 0)
                        throw new JinjaRuntimeError("empty separator");
                    int at = name == "partition" ? s.IndexOf(separator, StringComparison.Ordinal) : s.LastIndexOf(separator, StringComparison.Ordinal);
                    string[] parts = at < 0
                        ? name == "partition" ? [s, "", ""] : ["", "", s]
                        : [s[..at], separator, s[(at + separator.Length)..]];
                    return new JinjaList(parts.Select(JinjaValue.From).ToList(), isTuple: true);
                });
            case "center" or "ljust" or "rjust":
                return Method(name, a =>
                {
                    a.Expect(name, "width", "fillchar");
                    int width = (int)Math.Min(Integer(a.Required(name, 0, "width"), 0, name), 1 << 20);
                    string fill = OptionalText(a.Get(1, "fillchar"), name, "fillchar") ?? " ";
                    return JinjaValue.From(Pad(s, width, fill, name));
                });
            case "zfill":
                return Method(name, a =>
                {
                    int width = (int)Math.Min(Integer(a.Expect(name, "width").Required(name, 0, "width"), 0, name), 1 << 20);
                    int length = PythonText.Length(s);
                    if (length >= width)
                        return JinjaValue.From(s);
                    int sign = s.Length > 0 && s[0] is '+' or '-' ? 1 : 0;
                    return JinjaValue.From(s[..sign] + new string('0', width - length) + s[sign..]);
                });
            case "removeprefix":
                return Method(name, a =>
                {
                    string prefix = Text(a.Expect(name, "prefix").Required(name, 0, "prefix"), name, "prefix");
                    return JinjaValue.From(s.StartsWith(prefix, StringComparison.Ordinal) ? s[prefix.Length..] : s);
                });
            case "removesuffix":
                return Method(name, a =>
                {
                    string suffix = Text(a.Expect(name, "suffix").Required(name, 0, "suffix"), name, "suffix");
                    return JinjaValue.From(suffix.Length > 0 && s.EndsWith(suffix, StringComparison.Ordinal) ? s[..^suffix.Length] : s);
                });
            case "format":
                return Method(name, a => JinjaValue.From(Format(s, a)));
            default:
                return null;
        }
    }

    private static System.Globalization.UnicodeCategory CharCategory(int c) => System.Globalization.CharUnicodeInfo.GetUnicodeCategory(c);

    private static List<string> Split(string s, string? separator, int max, bool fromRight)
    {
        if (separator is null)
        {
            if (!fromRight)
                return PythonText.SplitWhitespace(s, max);
            // rsplit() without a separator: split the reversed text, then reverse back.
            var reversed = PythonText.SplitWhitespace(PythonText.Reverse(s), max);
            reversed.Reverse();
            return reversed.Select(PythonText.Reverse).ToList();
        }
        if (separator.Length == 0)
            throw new JinjaRuntimeError("empty separator");
        var parts = s.Split(separator);
        if (max < 0 || parts.Length - 1 <= max)
            return parts.ToList();
        return fromRight
            ? [string.Join(separator, parts[..^max]), .. parts[^max..]]
            : [.. parts[..max], string.Join(separator, parts[max..])];
    }

    private static List<string> SplitLines(string s, bool keepEnds)
    {
        var lines = new List<string>();
        int start = 0;
        for (int i = 0; i < s.Length; i++)
        {
            char c = s[i];
            if (c is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029'))
                continue;
            int end = c == '\r' && i + 1 < s.Length && s[i + 1] == '\n' ? i + 2 : i + 1;
            lines.Add(s[start..(keepEnds ? end : i)]);
            start = end;
            i = end - 1;
        }
        if (start < s.Length)
            lines.Add(s[start..]);
        return lines;
    }

    public static string Replace(string s, string old, string replacement, long count, int maxLength)
    {
        // Checked before the text is built: "x".replace("", long text) grows with the product of the lengths.
        long occurrences = old.Length == 0 ? PythonText.Length(s) + 1 : CountOccurrences(s, old, count < 0 ? long.MaxValue : count);
        if (count >= 0)
            occurrences = Math.Min(occurrences, count);
        JinjaLimits.CheckLength(s.Length + occurrences * (replacement.Length - old.Length), maxLength, "characters");
        if (count < 0)
            return old.Length == 0 ? InsertBetweenCharacters(s, replacement, long.MaxValue) : s.Replace(old, replacement, StringComparison.Ordinal);
        if (old.Length == 0)
            return InsertBetweenCharacters(s, replacement, count);
        var text = new StringBuilder();
        int from = 0;
        for (long done = 0; done < count; done++)
        {
            int at = s.IndexOf(old, from, StringComparison.Ordinal);
            if (at < 0)
                break;
            text.Append(s, from, at - from).Append(replacement);
            from = at + old.Length;
        }
        return text.Append(s, from, s.Length - from).ToString();
    }

    private static long CountOccurrences(string s, string sub, long most)
    {
        long count = 0;
        for (int at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0 && count < most; at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal))
            count++;
        return count;
    }

    // Python's 'ab'.replace('', '-') is '-a-b-'.
    private static string InsertBetweenCharacters(string s, string insert, long count)
    {
        var points = PythonText.CodePoints(s);
        var text = new StringBuilder();
        long done = 0;
        for (int i = 0; i <= points.Length; i++)
        {
            if (done < count)
            {
                text.Append(insert);
                done++;
            }
            if (i < points.Length)
                PythonText.AppendCodePoint(text, points[i]);
        }
        return text.ToString();
    }

    public static string Pad(string s, int width, string fill, string how)
    {
        if (PythonText.Length(fill) != 1)
            throw new JinjaRuntimeError("The fill character must be exactly one character long");
        int length = PythonText.Length(s);
        if (width <= length)
            return s;
        int total = width - length;
        // Python's center() puts the odd space on the right unless the text's length is odd.
        int left = how switch { "ljust" => 0, "rjust" => total, _ => total / 2 + (total & width & 1) };
        return string.Concat(Enumerable.Repeat(fill, left)) + s + string.Concat(Enumerable.Repeat(fill, total - left));
    }

    // str.format with "{}", "{0}" and "{name}" fields and "{{"/"}}" escapes; format specs are not supported.
    private static string Format(string template, JinjaArgs args)
    {
        var text = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < template.Length; i++)
        {
            char c = template[i];
            if ((c == '{' || c == '}') && i + 1 < template.Length && template[i + 1] == c)
            {
                text.Append(c);
                i++;
                continue;
            }
            if (c == '}')
                throw new JinjaRuntimeError("Single '}' encountered in format string");
            if (c != '{')
            {
                text.Append(c);
                continue;
            }
            int close = template.IndexOf('}', i);
            if (close < 0)
                throw new JinjaRuntimeError("Single '{' encountered in format string");
            string field = template[(i + 1)..close];
            if (field.IndexOfAny([':', '!', '[', '.']) >= 0)
                throw new JinjaRuntimeError($"format field '{{{field}}}' is not supported: only {{}}, {{0}} and {{name}} are");
            JinjaValue value = field.Length == 0 ? Positional(auto++)
                : int.TryParse(field, out int index) ? Positional(index)
                : args.Keywords.TryGetValue(field, out var named) ? named
                : throw new JinjaRuntimeError($"KeyError: '{field}'");
            text.Append(value.ToString());
            i = close;
        }
        return text.ToString();

        JinjaValue Positional(int index) => index < args.Positional.Count
            ? args.Positional[index]
            : throw new JinjaRuntimeError($"Replacement index {index} out of range for positional args tuple");
    }

    private static JinjaCallable? DictMethod(JinjaDict d, string name) => name switch
    {
        "items" => Method(name, a => d.Pairs()),
        "keys" => Method(name, a => new JinjaList(d.Items.Keys.ToList(), isTuple: false)),
        "values" => Method(name, a => new JinjaList(d.Items.Values.ToList(), isTuple: false)),
        "get" => Method(name, a =>
        {
            a.Expect(name, "key", "default");
            return d.Items.TryGetValue(a.Required(name, 0, "key"), out var value) ? value : a.Get(1, "default") ?? JinjaValue.None;
        }),
        "copy" => Method(name, a =>
        {
            var copy = new JinjaDict();
            foreach (var (key, value) in d.Items)
                copy.Set(key, value);
            return copy;
        }),
        _ => null,
    };

    private static JinjaCallable? ListMethod(JinjaList l, string name) => name switch
    {
        "index" => Method(name, a =>
        {
            var item = a.Expect(name, "value").Required(name, 0, "value");
            for (int i = 0; i < l.Items.Count; i++)
                if (JinjaOperators.AreEqual(l.Items[i], item))
                    return JinjaValue.From(i);
            throw new JinjaRuntimeError($"{item.Repr()} is not in {l.TypeName}");
        }),
        "count" => Method(name, a =>
        {
            var item = a.Expect(name, "value").Required(name, 0, "value");
            return JinjaValue.From(l.Items.Count(x => JinjaOperators.AreEqual(x, item)));
        }),
        "copy" when !l.IsTuple => Method(name, a => new JinjaList(l.Items.ToList(), isTuple: false)),
        _ => null,
    };
}
