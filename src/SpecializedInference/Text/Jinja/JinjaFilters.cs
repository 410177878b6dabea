using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// jinja2's built-in filters that chat templates use, with jinja2's argument names and defaults, plus
/// transformers' <c>tojson</c> (<c>json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=False)</c>,
/// not jinja2's HTML-escaping one).
/// </summary>
internal static partial class JinjaFilters
{
    private delegate JinjaValue Filter(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args);

    private static readonly Dictionary<string, Filter> Filters = new(StringComparer.Ordinal)
    {
        ["abs"] = (_, v, a) => Abs(v, a.Expect("abs")),
        ["batch"] = Batch,
        ["capitalize"] = (_, v, a) => JinjaValue.From(PythonText.Capitalize(TextOf(v, a, "capitalize"))),
        ["center"] = (_, v, a) => JinjaValue.From(JinjaMethods.Pad(v.ToString(), (int)Int(a.Expect("center", "width").Get(0, "width"), 80), " ", "center")),
        ["count"] = (_, v, a) => JinjaValue.From(JinjaOperators.Length(v)),
        ["default"] = Default,
        ["d"] = Default,
        ["dictsort"] = DictSort,
        ["escape"] = (_, v, a) => JinjaValue.From(Escape(v)),
        ["e"] = (_, v, a) => JinjaValue.From(Escape(v)),
        ["first"] = (_, v, a) => JinjaOperators.Iterate(v) is { Count: > 0 } items ? items[0] : new JinjaUndefined("No first item, sequence was empty."),
        ["float"] = ToFloat,
        ["format"] = Format,
        ["indent"] = Indent,
        ["int"] = ToInt,
        ["items"] = Items,
        ["join"] = Join,
        ["last"] = (_, v, a) => JinjaOperators.Iterate(v) is { Count: > 0 } items ? items[^1] : new JinjaUndefined("No last item, sequence was empty."),
        ["length"] = (_, v, a) => JinjaValue.From(JinjaOperators.Length(v)),
        ["list"] = (_, v, a) => new JinjaList(JinjaOperators.Iterate(v).ToList(), isTuple: false),
        ["lower"] = (_, v, a) => JinjaValue.From(TextOf(v, a, "lower").ToLowerInvariant()),
        ["map"] = Map,
        ["max"] = (i, v, a) => MinMax(i, v, a, "max"),
        ["min"] = (i, v, a) => MinMax(i, v, a, "min"),
        ["reject"] = (i, v, a) => Select(i, v, a, "reject", byAttribute: false, keep: false),
        ["rejectattr"] = (i, v, a) => Select(i, v, a, "rejectattr", byAttribute: true, keep: false),
        ["replace"] = Replace,
        ["reverse"] = Reverse,
        ["round"] = Round,
        ["safe"] = (_, v, a) => JinjaValue.From(v.ToString()),
        ["select"] = (i, v, a) => Select(i, v, a, "select", byAttribute: false, keep: true),
        ["selectattr"] = (i, v, a) => Select(i, v, a, "selectattr", byAttribute: true, keep: true),
        ["sort"] = Sort,
        ["string"] = (_, v, a) => JinjaValue.From(v.ToString()),
        ["sum"] = Sum,
        ["title"] = (_, v, a) => JinjaValue.From(Title(TextOf(v, a, "title"))),
        ["tojson"] = ToJson,
        ["trim"] = (_, v, a) => JinjaValue.From(PythonText.Strip(v.ToString(), OptionalText(a.Expect("trim", "chars").Get(0, "chars")))),
        ["unique"] = Unique,
        ["upper"] = (_, v, a) => JinjaValue.From(TextOf(v, a, "upper").ToUpperInvariant()),
        ["wordcount"] = (_, v, a) => JinjaValue.From(Word().Count(v.ToString())),
    };

    public static bool Exists(string name) => Filters.ContainsKey(name);

    public static JinjaValue Apply(JinjaInterpreter interpreter, string name, JinjaValue value, JinjaArgs args) =>
        Filters.TryGetValue(name, out var filter) ? filter(interpreter, value, args) : throw new JinjaRuntimeError($"No filter named '{name}'.");

    // The text filters read any value as its str() (an undefined one is "") and take no arguments.
    private static string TextOf(JinjaValue value, JinjaArgs args, string filter)
    {
        args.Expect(filter);
        return value.ToString();
    }

    private static string? OptionalText(JinjaValue? value) => value is null or JinjaNone ? null : value.ToString();

    private static long Int(JinjaValue? value, long fallback) => value switch
    {
        null or JinjaNone => fallback,
        JinjaInt i => i.Value,
        JinjaBool b => b.Value ? 1 : 0,
        JinjaFloat f => (long)f.Value,
        _ => throw new JinjaRuntimeError($"an integer is required, got {value.TypeName}"),
    };

    private static bool Flag(JinjaValue? value, bool fallback) => value?.IsTruthy ?? fallback;

    private static JinjaValue Abs(JinjaValue v, JinjaArgs args) => v switch
    {
        JinjaFloat f => JinjaValue.From(Math.Abs(f.Value)),
        JinjaInt or JinjaBool => JinjaOperators.Compare(v, JinjaValue.From(0), "<") < 0 ? JinjaOperators.Negate(v) : JinjaOperators.Plus(v),
        JinjaUndefined u => throw JinjaRuntimeError.Undefined(u),
        _ => throw new JinjaRuntimeError($"bad operand type for abs(): '{v.TypeName}'"),
    };

    private static JinjaValue Default(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("default", "default_value", "boolean");
        bool boolean = Flag(args.Get(1, "boolean"), false);
        return value is JinjaUndefined || (boolean && !value.IsTruthy) ? args.Get(0, "default_value") ?? JinjaString.Empty : value;
    }

    // markupsafe's escape: & < > " ' as entities (jinja2 escapes here even with autoescape off).
    private static string Escape(JinjaValue value) =>
        value.ToString().Replace("&", "&amp;").Replace("<", "&lt;").Replace(">", "&gt;").Replace("\"", "&#34;").Replace("'", "&#39;");

    private static JinjaValue ToInt(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("int", "default", "base");
        var fallback = args.Get(0, "default") ?? JinjaValue.From(0);
        int radix = (int)Int(args.Get(1, "base"), 10);
        switch (value)
        {
            case JinjaUndefined undefined:
                throw JinjaRuntimeError.Undefined(undefined);
            case JinjaInt:
                return value;
            case JinjaBool b:
                return JinjaValue.From(b.Value ? 1 : 0);
            case JinjaFloat f:
                return double.IsFinite(f.Value) ? JinjaValue.From((long)Math.Truncate(f.Value)) : fallback;
            case JinjaString s:
                string text = s.Value.Trim().Replace("_", "");
                if (radix == 10 && long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long parsed))
                    return JinjaValue.From(parsed);
                if (radix != 10 && ParseRadix(text, radix) is { } fromRadix)
                    return JinjaValue.From(fromRadix);
                // jinja2 falls back to int(float(value)): "3.5" | int is 3.
                return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && double.IsFinite(d)
                    ? JinjaValue.From((long)Math.Truncate(d)) : fallback;
            default:
                return fallback;
        }
    }

    private static long? ParseRadix(string text, int radix)
    {
        bool negative = text.StartsWith('-');
        if (text.Length > 0 && text[0] is '-' or '+')
            text = text[1..];
        string prefix = radix switch { 16 => "0x", 8 => "0o", 2 => "0b", _ => "" };
        if (prefix.Length > 0 && text.StartsWith(prefix, StringComparison.OrdinalIgnoreCase))
            text = text[2..];
        if (radix is not (2 or 8 or 16) || text.Length == 0)
            return null;
        try
        {
            long value = Convert.ToInt64(text, radix);
            return negative ? -value : value;
        }
        catch (Exception e) when (e is FormatException or OverflowException or ArgumentException)
        {
            return null;
        }
    }

    private static JinjaValue ToFloat(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        var fallback = args.Expect("float", "default").Get(0, "default") ?? JinjaValue.From(0.0);
        return value switch
        {
            JinjaUndefined undefined => throw JinjaRuntimeError.Undefined(undefined),
            JinjaFloat => value,
            JinjaInt or JinjaBool => JinjaValue.From(JinjaOperators.ToDouble(value)),
            JinjaString s when double.TryParse(s.Value.Trim().Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture, out double d) => JinjaValue.From(d),
            _ => fallback,
        };
    }

    // jinja2's format filter is printf-style: "%s, %s" | format(a, b), or "%(x)s" | format(x=1).
    private static JinjaValue Format(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        if (args.Positional.Count > 0 && args.Keywords.Count > 0)
            throw new JinjaRuntimeError("can't handle positional and keyword arguments at the same time");
        var values = args.Keywords.Count > 0
            ? JinjaValue.Dict(args.Keywords)
            : new JinjaList(args.Positional, isTuple: true);
        return JinjaValue.From(PythonFormat.Percent(value.ToString(), values, interpreter.Options.MaxOutputLength));
    }

    private static JinjaValue Items(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args) => value switch
    {
        JinjaUndefined => new JinjaList(Array.Empty<JinjaValue>(), isTuple: false),
        JinjaDict d => d.Pairs(),
        _ => throw new JinjaRuntimeError("Can only get item pairs from a mapping."),
    };

    private static JinjaValue Join(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("join", "d", "attribute");
        string separator = args.Get(0, "d")?.ToString() ?? "";
        var items = JinjaOperators.Iterate(value);
        if (args.Get(1, "attribute") is { } attribute)
            items = items.Select(i => Attribute(interpreter, i, attribute)).ToList();
        return JinjaValue.From(JinjaLimits.Join(separator, items.Select(i => i.ToString()).ToList(), interpreter.Options.MaxOutputLength));
    }

    /// <summary>jinja2's <c>make_attrgetter</c>: an attribute or key, "a.b" or "a.0" for nested ones.</summary>
    private static JinjaValue Attribute(JinjaInterpreter interpreter, JinjaValue item, JinjaValue attribute)
    {
        int max = interpreter.Options.MaxOutputLength;
        if (attribute is JinjaInt)
            return JinjaInterpreter.GetItem(item, attribute, max);
        foreach (var part in attribute.ToString().Split('.'))
            item = JinjaInterpreter.GetItem(item, long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out long index)
                ? JinjaValue.From(index) : JinjaValue.From(part), max);
        return item;
    }

    private static JinjaValue Map(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        var items = JinjaOperators.Iterate(value);
        if (args.Positional.Count == 0 && args.Keywords.TryGetValue("attribute", out var attribute))
        {
            args.Expect("map", "attribute", "default");
            var fallback = args.Keywords.GetValueOrDefault("default");
            return new JinjaList(items.Select(i => Attribute(interpreter, i, attribute) is var found && found is JinjaUndefined && fallback is not null ? fallback : found).ToList(), isTuple: false);
        }
        if (args.Positional.Count == 0)
            throw new JinjaRuntimeError("map() needs a filter name or attribute=");
        string filter = args.Positional[0].ToString();
        var rest = new JinjaArgs(args.Positional.Skip(1).ToList(), args.Keywords);
        return new JinjaList(items.Select(i => Apply(interpreter, filter, i, rest)).ToList(), isTuple: false);
    }

    private static JinjaValue Select(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args, string name, bool byAttribute, bool keep)
    {
        var items = JinjaOperators.Iterate(value);
        int next = 0;
        JinjaValue? attribute = null;
        if (byAttribute)
        {
            attribute = args.Positional.Count > 0 ? args.Positional[0] : throw new JinjaRuntimeError($"{name}() needs an attribute");
            next = 1;
        }
        Func<JinjaValue, bool> test;
        if (args.Positional.Count > next)
        {
            string testName = args.Positional[next].ToString();
            var rest = new JinjaArgs(args.Positional.Skip(next + 1).ToList(), args.Keywords);
            test = v => JinjaTestFunctions.Apply(testName, v, rest);
        }
        else
        {
            test = v => v.IsTruthy;
        }
        return new JinjaList(items.Where(i => test(attribute is null ? i : Attribute(interpreter, i, attribute)) == keep).ToList(), isTuple: false);
    }

    private static JinjaValue Replace(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("replace", "old", "new", "count");
        return JinjaValue.From(JinjaMethods.Replace(value.ToString(), args.Required("replace", 0, "old").ToString(), args.Required("replace", 1, "new").ToString(),
            Int(args.Get(2, "count"), -1), interpreter.Options.MaxOutputLength));
    }

    private static JinjaValue Reverse(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        if (value is JinjaString s)
            return JinjaValue.From(PythonText.Reverse(s.Value));
        var items = JinjaOperators.Iterate(value).ToList();
        items.Reverse();
        return new JinjaList(items, isTuple: false);
    }

    private static JinjaValue Round(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("round", "precision", "method");
        int precision = (int)Int(args.Get(0, "precision"), 0);
        string method = args.Get(1, "method")?.ToString() ?? "common";
        if (!JinjaOperators.IsNumber(value))
            throw new JinjaRuntimeError($"type {value.TypeName} doesn't define __round__ method");
        if (method == "common" && value is JinjaInt or JinjaBool)
            return JinjaOperators.Plus(value); // Python's round() of an int is the int
        double x = JinjaOperators.ToDouble(value);
        double scale = Math.Pow(10, precision);
        return JinjaValue.From(method switch
        {
            "common" => Math.Round(x, Math.Clamp(precision, 0, 15), MidpointRounding.ToEven),
            "ceil" => Math.Ceiling(x * scale) / scale,
            "floor" => Math.Floor(x * scale) / scale,
            _ => throw new JinjaRuntimeError("method must be common, ceil or floor"),
        });
    }

    private static JinjaValue Sum(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("sum", "attribute", "start");
        var items = JinjaOperators.Iterate(value);
        if (args.Get(0, "attribute") is { } attribute)
            items = items.Select(i => Attribute(interpreter, i, attribute)).ToList();
        return items.Aggregate(args.Get(1, "start") ?? JinjaValue.From(0), (total, i) => JinjaOperators.Add(total, i, interpreter.Options.MaxOutputLength));
    }

    // Sort keys as jinja2 builds them: an attribute if asked, strings lowered unless case_sensitive.
    private static Func<JinjaValue, JinjaValue> SortKey(JinjaInterpreter interpreter, JinjaValue? attribute, bool caseSensitive) => item =>
    {
        var key = attribute is null ? item : Attribute(interpreter, item, attribute);
        return !caseSensitive && key is JinjaString s ? JinjaValue.From(s.Value.ToLowerInvariant()) : key;
    };

    private static JinjaValue Sort(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("sort", "reverse", "case_sensitive", "attribute");
        var key = SortKey(interpreter, args.Get(2, "attribute"), Flag(args.Get(1, "case_sensitive"), false));
        var items = JinjaOperators.Iterate(value);
        var comparer = Comparer<JinjaValue>.Create((a, b) => JinjaOperators.Compare(key(a), key(b), "<"));
        return new JinjaList(Sorted(items, comparer, Flag(args.Get(0, "reverse"), false)), isTuple: false);
    }

    // A stable sort, as Python's. .NET's sort wraps a comparer's exception; the template's TypeError is the error.
    private static List<T> Sorted<T>(IReadOnlyList<T> items, IComparer<T> comparer, bool descending)
    {
        try
        {
            return (descending ? items.OrderDescending(comparer) : items.Order(comparer)).ToList();
        }
        catch (InvalidOperationException e) when (e.InnerException is JinjaRuntimeError inner)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(inner);
            throw;
        }
    }

    private static JinjaValue DictSort(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("dictsort", "case_sensitive", "by", "reverse");
        if (value is not JinjaDict dict)
            throw new JinjaRuntimeError("You can only sort by either a dict or an object.");
        bool byValue = (args.Get(1, "by")?.ToString() ?? "key") switch
        {
            "key" => false,
            "value" => true,
            _ => throw new JinjaRuntimeError("You can only sort by either \"key\" or \"value\""),
        };
        var key = SortKey(interpreter, null, Flag(args.Get(0, "case_sensitive"), false));
        var comparer = Comparer<KeyValuePair<JinjaValue, JinjaValue>>.Create((a, b) =>
            JinjaOperators.Compare(key(byValue ? a.Value : a.Key), key(byValue ? b.Value : b.Key), "<"));
        return dict.Pairs(Sorted(dict.Items.ToList(), comparer, Flag(args.Get(2, "reverse"), false)));
    }

    private static JinjaValue Unique(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("unique", "case_sensitive", "attribute");
        var key = SortKey(interpreter, args.Get(1, "attribute"), Flag(args.Get(0, "case_sensitive"), false));
        var seen = new HashSet<JinjaValue>(JinjaKeyComparer.Instance);
        return new JinjaList(JinjaOperators.Iterate(value).Where(i => seen.Add(key(i))).ToList(), isTuple: false);
    }

    private static JinjaValue MinMax(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args, string name)
    {
        args.Expect(name, "case_sensitive", "attribute");
        var key = SortKey(interpreter, args.Get(1, "attribute"), Flag(args.Get(0, "case_sensitive"), false));
        var items = JinjaOperators.Iterate(value);
        if (items.Count == 0)
            return new JinjaUndefined($"No aggregated item, sequence was empty.");
        var best = items[0];
        foreach (var item in items.Skip(1))
        {
            int order = JinjaOperators.Compare(key(item), key(best), "<");
            if (name == "min" ? order < 0 : order > 0)
                best = item;
        }
        return best;
    }

    private static JinjaValue Batch(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("batch", "linecount", "fill_with");
        int size = (int)Int(args.Required("batch", 0, "linecount"), 1);
        if (size < 1)
            throw new JinjaRuntimeError("batch() linecount must be at least 1");
        var fill = args.Get(1, "fill_with");
        var items = JinjaOperators.Iterate(value);
        var batches = new List<JinjaValue>();
        for (int i = 0; i < items.Count; i += size)
        {
            var batch = items.Skip(i).Take(size).ToList();
            while (fill is not null and not JinjaNone && batch.Count < size)
                batch.Add(fill);
            batches.Add(new JinjaList(batch, isTuple: false));
        }
        return new JinjaList(batches, isTuple: false);
    }

    private static JinjaValue Indent(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("indent", "width", "first", "blank");
        var width = args.Get(0, "width") ?? JinjaValue.From(4);
        string prefix = width is JinjaString w ? w.Value : new string(' ', (int)Math.Clamp(Int(width, 4), 0, 1 << 16));
        bool first = Flag(args.Get(1, "first"), false), blank = Flag(args.Get(2, "blank"), false);
        string text = value switch
        {
            JinjaString s => s.Value,
            JinjaUndefined undefined => throw JinjaRuntimeError.Undefined(undefined),
            _ => throw new JinjaRuntimeError($"unsupported operand type(s) for +=: '{value.TypeName}' and 'str'"),
        };
        // jinja2 indents the lines after the first, blank ones only when asked, and keeps a trailing newline bare.
        bool trailingNewline = text.EndsWith('\n');
        if (trailingNewline)
            text = text[..^1];
        var lines = text.Split('\n');
        var result = new StringBuilder();
        for (int i = 0; i < lines.Length; i++)
        {
            if (i > 0)
                result.Append('\n');
            if ((i > 0 || first) && (blank || !PythonText.IsSpace(lines[i]) && lines[i].Length > 0))
                result.Append(prefix);
            result.Append(lines[i]);
        }
        if (trailingNewline)
            result.Append('\n');
        return JinjaValue.From(JinjaLimits.CheckLength(result.ToString(), interpreter.Options.MaxOutputLength));
    }

    // jinja2's title filter (not str.title): each word begins after '-', whitespace or an opening bracket.
    private static string Title(string text) =>
        string.Concat(WordStart().Split(text).Where(part => part.Length > 0).Select(part => PythonText.Capitalize(part)));

    private static JinjaValue ToJson(JinjaInterpreter interpreter, JinjaValue value, JinjaArgs args)
    {
        args.Expect("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
        var indent = args.Get(1, "indent") is { } i and not JinjaNone ? i : null;
        string? indentText = indent switch
        {
            null => null,
            JinjaString s => s.Value,
            _ => new string(' ', (int)Math.Clamp(Int(indent, 0), 0, 1 << 10)),
        };
        string itemSeparator = indentText is null ? ", " : ",", keySeparator = ": ";
        if (args.Get(2, "separators") is JinjaList { Items.Count: 2 } separators)
            (itemSeparator, keySeparator) = (separators.Items[0].ToString(), separators.Items[1].ToString());
        var options = new JinjaJson.Options(Flag(args.Get(0, "ensure_ascii"), false), indentText, itemSeparator, keySeparator,
            Flag(args.Get(3, "sort_keys"), false), interpreter.Options.MaxOutputLength);
        return JinjaValue.From(JinjaJson.Serialize(value, options));
    }

    [GeneratedRegex(@"\w+")]
    private static partial Regex Word();

    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordStart();
}
