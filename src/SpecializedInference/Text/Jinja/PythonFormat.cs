using System.Globalization;
using System.Text;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// Python's printf-style formatting, <c>'%s and %d' % (a, b)</c>, which templates reach through the <c>%</c> operator
/// and the <c>format</c> filter: <c>%s %r %d %i %f %F %e %E %x %X %o %c %%</c> with <c>%(name)s</c> keys, the
/// flags <c>- + 0 #</c> and space, a width and a precision. (<c>%g</c> and <c>*</c> widths are refused.)
/// </summary>
internal static class PythonFormat
{
    public static string Percent(string format, JinjaValue args, int maxLength)
    {
        var positional = args is JinjaList { IsTuple: true } tuple ? tuple.Items : [args];
        var mapping = args as JinjaDict;
        int next = 0;
        bool usedMapping = false;
        var text = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%')
            {
                text.Append(format[i]);
                continue;
            }
            if (++i >= format.Length)
                throw new JinjaRuntimeError("incomplete format");
            JinjaValue? value = null;
            if (format[i] == '(')
            {
                int close = format.IndexOf(')', i);
                if (close < 0)
                    throw new JinjaRuntimeError("incomplete format key");
                if (mapping is null)
                    throw new JinjaRuntimeError("format requires a mapping");
                string key = format[(i + 1)..close];
                value = mapping.Get(key) ?? throw new JinjaRuntimeError($"KeyError: {PythonText.StrRepr(key)}");
                usedMapping = true;
                i = close + 1;
            }
            string flags = "";
            while (i < format.Length && format[i] is '-' or '+' or ' ' or '#' or '0')
                flags += format[i++];
            int? width = Digits(format, ref i);
            int? precision = null;
            if (i < format.Length && format[i] == '.')
            {
                i++;
                precision = Digits(format, ref i) ?? 0;
            }
            if (i < format.Length && format[i] == '*')
                throw new JinjaRuntimeError("'*' widths are not supported in % formatting");
            if (i >= format.Length)
                throw new JinjaRuntimeError("incomplete format");
            char type = format[i];
            if (type == '%')
            {
                text.Append('%');
                continue;
            }
            if (value is null)
            {
                if (next >= positional.Count)
                    throw new JinjaRuntimeError("not enough arguments for format string");
                value = positional[next++];
            }
            string body = Convert(value, type, flags, precision);
            if (width is { } w && PythonText.Length(body) < w)
            {
                int pad = w - PythonText.Length(body);
                if (flags.Contains('-'))
                    body += new string(' ', pad);
                else if (flags.Contains('0') && type is not ('s' or 'r' or 'c'))
                {
                    int sign = body.Length > 0 && body[0] is '-' or '+' or ' ' ? 1 : 0;
                    body = body[..sign] + new string('0', pad) + body[sign..];
                }
                else
                    body = new string(' ', pad) + body;
            }
            JinjaLimits.Append(text, body, maxLength);
        }
        // Python's rule: a tuple, or a single value that is not a container, must be used up.
        bool mustUseAll = args is JinjaList { IsTuple: true } || args is not (JinjaList or JinjaDict or JinjaNamespace);
        if (mustUseAll && !usedMapping && next < positional.Count)
            throw new JinjaRuntimeError("not all arguments converted during string formatting");
        return text.ToString();
    }

    private static int? Digits(string format, ref int i)
    {
        int start = i;
        while (i < format.Length && char.IsAsciiDigit(format[i]))
            i++;
        return i > start ? int.Parse(format.AsSpan(start, i - start), CultureInfo.InvariantCulture) : null;
    }

    private static string Convert(JinjaValue value, char type, string flags, int? precision)
    {
        if (value is JinjaUndefined undefined && type is not ('s' or 'r'))
            throw JinjaRuntimeError.Undefined(undefined);
        var c = CultureInfo.InvariantCulture;
        string sign(double d) => d < 0 || double.IsNegative(d) ? "-" : flags.Contains('+') ? "+" : flags.Contains(' ') ? " " : "";
        switch (type)
        {
            case 's':
                return precision is { } p ? Truncate(value.ToString(), p) : value.ToString();
            case 'r' or 'a':
                return precision is { } q ? Truncate(value.Repr(), q) : value.Repr();
            case 'd' or 'i' or 'u':
            {
                long n = value switch
                {
                    JinjaInt or JinjaBool => (long)JinjaOperators.ToDouble(value),
                    JinjaFloat f when double.IsFinite(f.Value) => (long)Math.Truncate(f.Value),
                    _ => throw new JinjaRuntimeError($"%{type} format: a real number is required, not {value.TypeName}"),
                };
                return sign(n) + Math.Abs((decimal)n).ToString(c);
            }
            case 'f' or 'F' or 'e' or 'E':
            {
                if (!JinjaOperators.IsNumber(value))
                    throw new JinjaRuntimeError($"must be real number, not {value.TypeName}");
                double d = JinjaOperators.ToDouble(value);
                int digits = precision ?? 6;
                if (!double.IsFinite(d))
                    return sign(d) + (double.IsNaN(d) ? "nan" : "inf");
                string magnitude = type is 'f' or 'F'
                    ? Math.Abs(d).ToString("F" + digits, c)
                    : Exponent(Math.Abs(d), digits, type);
                return sign(d) + magnitude;
            }
            case 'x' or 'X' or 'o':
            {
                if (value is not (JinjaInt or JinjaBool))
                    throw new JinjaRuntimeError($"%{type} format: an integer is required, not {value.TypeName}");
                long n = (long)JinjaOperators.ToDouble(value);
                ulong magnitude = n < 0 ? (ulong)(-(n + 1)) + 1 : (ulong)n;
                string digits = type == 'o' ? System.Convert.ToString((long)magnitude, 8) : magnitude.ToString(type == 'x' ? "x" : "X", c);
                string prefix = flags.Contains('#') ? type == 'o' ? "0o" : type == 'x' ? "0x" : "0X" : "";
                return sign(n) + prefix + digits;
            }
            case 'c':
                return value switch
                {
                    JinjaInt i when i.Value is >= 0 and <= 0x10FFFF => PythonText.CodePointString((int)i.Value),
                    JinjaString s when PythonText.Length(s.Value) == 1 => s.Value,
                    _ => throw new JinjaRuntimeError("%c requires an int or a unicode character"),
                };
            default:
                throw new JinjaRuntimeError($"unsupported format character '{type}' in % formatting");
        }
    }

    private static string Truncate(string s, int length) =>
        PythonText.Length(s) <= length ? s : PythonText.FromCodePoints(PythonText.CodePoints(s), 0, length);

    // Python's "%.6e": 1.500000e+00 (at least two exponent digits; .NET writes three).
    private static string Exponent(double d, int digits, char type)
    {
        string text = d.ToString((type == 'E' ? "E" : "e") + digits, CultureInfo.InvariantCulture);
        int e = text.IndexOfAny(['e', 'E']);
        int exponent = int.Parse(text[(e + 1)..], CultureInfo.InvariantCulture);
        return text[..(e + 1)] + (exponent < 0 ? "-" : "+") + Math.Abs(exponent).ToString("00", CultureInfo.InvariantCulture);
    }
}
