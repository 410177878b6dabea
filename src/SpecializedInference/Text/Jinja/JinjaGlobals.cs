using System.Globalization;
using System.Text;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// The functions every template sees: jinja2's <c>range</c> (bounded like its sandbox's), <c>namespace</c> and
/// <c>dict</c>, and the two transformers adds for chat templates, <c>raise_exception(message)</c> and
/// <c>strftime_now(format)</c>.
/// </summary>
internal static class JinjaGlobals
{
    /// <summary>jinja2's sandbox refuses longer ranges (MAX_RANGE).</summary>
    public const int MaxRange = 100_000;

    public static void Register(JinjaScope scope, JinjaInterpreter interpreter)
    {
        scope.Set("range", new JinjaCallable("range", args => Range(args, interpreter)));
        scope.Set("namespace", new JinjaCallable("namespace", args => Namespace(args)));
        scope.Set("dict", new JinjaCallable("dict", args => Dict(args)));
        scope.Set("raise_exception", new JinjaCallable("raise_exception", args =>
            throw new JinjaRuntimeError(args.Expect("raise_exception", "message").Get(0, "message")?.ToString() ?? "", raisedByTemplate: true)));
        scope.Set("strftime_now", new JinjaCallable("strftime_now", args =>
            JinjaValue.From(Strftime(interpreter.Options.Now(), args.Expect("strftime_now", "format").Required("strftime_now", 0, "format").ToString()))));
    }

    private static JinjaValue Range(JinjaArgs args, JinjaInterpreter interpreter)
    {
        if (args.Keywords.Count > 0 || args.Positional.Count is 0 or > 3)
            throw new JinjaRuntimeError($"range expected 1 to 3 integer arguments, got {args.Positional.Count + args.Keywords.Count}");
        var bounds = args.Positional.Select(a => a is JinjaInt or JinjaBool
            ? (long)JinjaOperators.ToDouble(a)
            : throw new JinjaRuntimeError($"'{a.TypeName}' object cannot be interpreted as an integer")).ToArray();
        long start = bounds.Length == 1 ? 0 : bounds[0];
        long stop = bounds.Length == 1 ? bounds[0] : bounds[1];
        long step = bounds.Length == 3 ? bounds[2] : 1;
        if (step == 0)
            throw new JinjaRuntimeError("range() arg 3 must not be zero");
        long count = step > 0 ? (stop > start ? (stop - start - 1) / step + 1 : 0) : (start > stop ? (start - stop - 1) / -step + 1 : 0);
        if (count > MaxRange)
            throw new JinjaRuntimeError($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
        interpreter.CountIterations(count);
        var items = new JinjaValue[count];
        for (long i = 0; i < count; i++)
            items[i] = JinjaValue.From(start + i * step);
        return new JinjaList(items, isTuple: false);
    }

    private static JinjaNamespace Namespace(JinjaArgs args)
    {
        var ns = new JinjaNamespace();
        foreach (var (key, value) in Entries(args, "namespace"))
            ns.Attributes[key.ToString()] = value;
        return ns;
    }

    private static JinjaDict Dict(JinjaArgs args)
    {
        var dict = new JinjaDict();
        foreach (var (key, value) in Entries(args, "dict"))
            dict.Set(key, value);
        return dict;
    }

    // The entries of dicts given as positional arguments, then the keyword arguments, as both functions take them.
    private static IEnumerable<(JinjaValue Key, JinjaValue Value)> Entries(JinjaArgs args, string function)
    {
        foreach (var initial in args.Positional)
        {
            if (initial is not JinjaDict dict)
                throw new JinjaRuntimeError($"{function}() takes dicts and keyword arguments, not {initial.TypeName}");
            foreach (var (key, value) in dict.Items)
                yield return (key, value);
        }
        foreach (var (key, value) in args.Keywords)
            yield return (JinjaValue.From(key), value);
    }

    /// <summary>
    /// Python's <c>datetime.strftime</c> in the C locale for a naive local time (so <c>%Z</c> and <c>%z</c> are
    /// empty), with glibc's <c>%-d</c> style no-padding flag that some templates use; an unknown directive stays as is.
    /// </summary>
    public static string Strftime(DateTime now, string format)
    {
        var c = CultureInfo.InvariantCulture;
        var text = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length)
            {
                text.Append(format[i]);
                continue;
            }
            bool unpadded = format[i + 1] == '-' && i + 2 < format.Length;
            char directive = format[unpadded ? i + 2 : i + 1];
            string Number(int value, int width) => unpadded ? value.ToString(c) : value.ToString(c).PadLeft(width, '0');
            string? part = directive switch
            {
                'a' => now.ToString("ddd", c),
                'A' => now.ToString("dddd", c),
                'b' or 'h' => now.ToString("MMM", c),
                'B' => now.ToString("MMMM", c),
                'd' => Number(now.Day, 2),
                'e' => unpadded ? now.Day.ToString(c) : now.Day.ToString(c).PadLeft(2),
                'm' => Number(now.Month, 2),
                'y' => Number(now.Year % 100, 2),
                'Y' => now.Year.ToString(c),
                'H' => Number(now.Hour, 2),
                'I' => Number(now.Hour % 12 == 0 ? 12 : now.Hour % 12, 2),
                'M' => Number(now.Minute, 2),
                'S' => Number(now.Second, 2),
                'f' => (now.Ticks % TimeSpan.TicksPerSecond / 10).ToString("000000", c),
                'p' => now.Hour < 12 ? "AM" : "PM",
                'j' => Number(now.DayOfYear, 3),
                'w' => ((int)now.DayOfWeek).ToString(c),
                'u' => (now.DayOfWeek == DayOfWeek.Sunday ? 7 : (int)now.DayOfWeek).ToString(c),
                'c' => now.ToString("ddd MMM ", c) + now.Day.ToString(c).PadLeft(2) + now.ToString(" HH:mm:ss yyyy", c),
                'x' => now.ToString("MM/dd/yy", c),
                'X' => now.ToString("HH:mm:ss", c),
                'D' => now.ToString("MM/dd/yy", c),
                'F' => now.ToString("yyyy-MM-dd", c),
                'T' => now.ToString("HH:mm:ss", c),
                'R' => now.ToString("HH:mm", c),
                'z' or 'Z' => "",
                '%' => "%",
                'n' => "\n",
                't' => "\t",
                _ => null,
            };
            if (part is null)
            {
                text.Append('%');
                continue;
            }
            text.Append(part);
            i += unpadded ? 2 : 1;
        }
        return text.ToString();
    }
}
