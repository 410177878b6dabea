namespace SpecializedInference.Text.Jinja;

/// <summary>
/// Python's operators on <see cref="JinjaValue"/>s, with its errors: bool is an int, <c>/</c> always gives a float,
/// <c>//</c> and <c>%</c> round toward negative infinity, <c>'a' + 1</c> is a TypeError, and any arithmetic or
/// ordering with an undefined value is jinja2's UndefinedError.
/// </summary>
internal static class JinjaOperators
{
    /// <summary>An int (bool counts as one) or a float; false for anything else.</summary>
    public static bool IsNumber(JinjaValue v) => v is JinjaInt or JinjaFloat or JinjaBool;

    private static bool IsInteger(JinjaValue v, out long value)
    {
        switch (v)
        {
            case JinjaInt i:
                value = i.Value;
                return true;
            case JinjaBool b:
                value = b.Value ? 1 : 0;
                return true;
            default:
                value = 0;
                return false;
        }
    }

    public static double ToDouble(JinjaValue v) => v switch
    {
        JinjaFloat f => f.Value,
        JinjaInt i => i.Value,
        JinjaBool b => b.Value ? 1 : 0,
        _ => throw new InvalidOperationException($"{v.TypeName} is not a number"),
    };

    private static void FailIfUndefined(JinjaValue a, JinjaValue b)
    {
        if (a is JinjaUndefined ua)
            throw JinjaRuntimeError.Undefined(ua);
        if (b is JinjaUndefined ub)
            throw JinjaRuntimeError.Undefined(ub);
    }

    private static JinjaRuntimeError Unsupported(string op, JinjaValue a, JinjaValue b) =>
        new($"unsupported operand type(s) for {op}: '{a.TypeName}' and '{b.TypeName}'");

    private static JinjaValue Int(Func<long> compute)
    {
        try
        {
            return new JinjaInt(compute());
        }
        catch (OverflowException)
        {
            throw new JinjaRuntimeError("integer overflow: the result does not fit in 64 bits");
        }
    }

    public static JinjaValue Add(JinjaValue a, JinjaValue b, int maxLength)
    {
        FailIfUndefined(a, b);
        if (IsInteger(a, out long x) && IsInteger(b, out long y))
            return Int(() => checked(x + y));
        if (IsNumber(a) && IsNumber(b))
            return new JinjaFloat(ToDouble(a) + ToDouble(b));
        if (a is JinjaString sa)
            return b is JinjaString sb
                ? new JinjaString(JinjaLimits.CheckLength(sa.Value + sb.Value, maxLength))
                : throw new JinjaRuntimeError($"can only concatenate str (not \"{b.TypeName}\") to str");
        if (a is JinjaList la)
        {
            if (b is not JinjaList lb || lb.IsTuple != la.IsTuple)
                throw new JinjaRuntimeError($"can only concatenate {la.TypeName} (not \"{b.TypeName}\") to {la.TypeName}");
            JinjaLimits.CheckLength((long)la.Items.Count + lb.Items.Count, maxLength, "items");
            return new JinjaList([.. la.Items, .. lb.Items], la.IsTuple);
        }
        throw Unsupported("+", a, b);
    }

    public static JinjaValue Subtract(JinjaValue a, JinjaValue b)
    {
        FailIfUndefined(a, b);
        if (IsInteger(a, out long x) && IsInteger(b, out long y))
            return Int(() => checked(x - y));
        if (IsNumber(a) && IsNumber(b))
            return new JinjaFloat(ToDouble(a) - ToDouble(b));
        throw Unsupported("-", a, b);
    }

    public static JinjaValue Multiply(JinjaValue a, JinjaValue b, int maxLength)
    {
        FailIfUndefined(a, b);
        if (IsInteger(a, out long x) && IsInteger(b, out long y))
            return Int(() => checked(x * y));
        if (IsNumber(a) && IsNumber(b))
            return new JinjaFloat(ToDouble(a) * ToDouble(b));
        // Sequence repetition, either way round: 'ab' * 2, 2 * [1].
        if (IsInteger(b, out long times) || IsInteger(a, out times))
        {
            var sequence = IsInteger(b, out _) ? a : b;
            long count = Math.Max(0, times);
            if (sequence is JinjaString s)
            {
                JinjaLimits.CheckLength(s.Value.Length * count, maxLength, "characters");
                return new JinjaString(string.Concat(Enumerable.Repeat(s.Value, (int)count)));
            }
            if (sequence is JinjaList l)
            {
                JinjaLimits.CheckLength(l.Items.Count * count, maxLength, "items");
                return new JinjaList(Enumerable.Repeat(l.Items, (int)count).SelectMany(i => i).ToList(), l.IsTuple);
            }
        }
        throw new JinjaRuntimeError(a is JinjaString || b is JinjaString || a is JinjaList || b is JinjaList
            ? $"can't multiply sequence by non-int of type '{(a is JinjaString or JinjaList ? b : a).TypeName}'"
            : $"unsupported operand type(s) for *: '{a.TypeName}' and '{b.TypeName}'");
    }

    public static JinjaValue Divide(JinjaValue a, JinjaValue b)
    {
        FailIfUndefined(a, b);
        if (!IsNumber(a) || !IsNumber(b))
            throw Unsupported("/", a, b);
        double divisor = ToDouble(b);
        return divisor == 0 ? throw new JinjaRuntimeError("division by zero") : new JinjaFloat(ToDouble(a) / divisor);
    }

    public static JinjaValue FloorDivide(JinjaValue a, JinjaValue b)
    {
        FailIfUndefined(a, b);
        if (IsInteger(a, out long x) && IsInteger(b, out long y))
        {
            if (y == 0)
                throw new JinjaRuntimeError("integer division or modulo by zero");
            return Int(() => FloorDiv(x, y));
        }
        if (IsNumber(a) && IsNumber(b))
        {
            double divisor = ToDouble(b);
            return divisor == 0 ? throw new JinjaRuntimeError("float floor division by zero") : new JinjaFloat(FloatDivMod(ToDouble(a), divisor).Quotient);
        }
        throw Unsupported("//", a, b);
    }

    public static JinjaValue Modulo(JinjaValue a, JinjaValue b, int maxLength = int.MaxValue)
    {
        if (a is JinjaString format)
            return new JinjaString(PythonFormat.Percent(format.Value, b, maxLength));
        FailIfUndefined(a, b);
        if (IsInteger(a, out long x) && IsInteger(b, out long y))
        {
            if (y == 0)
                throw new JinjaRuntimeError("integer modulo by zero");
            return Int(() => x - checked(FloorDiv(x, y) * y));
        }
        if (IsNumber(a) && IsNumber(b))
        {
            double d = ToDouble(b);
            return d == 0 ? throw new JinjaRuntimeError("float modulo") : new JinjaFloat(FloatDivMod(ToDouble(a), d).Remainder);
        }
        throw Unsupported("%", a, b);
    }

    // CPython's float divmod: 1 // 0.1 is 9.0, not floor(1 / 0.1) = 10.0, because 0.1 is a little more than a tenth.
    private static (double Quotient, double Remainder) FloatDivMod(double x, double y)
    {
        double mod = x % y; // C's fmod
        double div = (x - mod) / y;
        if (mod != 0)
        {
            if ((y < 0) != (mod < 0))
            {
                mod += y;
                div -= 1.0;
            }
        }
        else
        {
            mod = Math.CopySign(0.0, y);
        }
        double floor;
        if (div != 0)
        {
            floor = Math.Floor(div);
            if (div - floor > 0.5)
                floor += 1.0;
        }
        else
        {
            floor = Math.CopySign(0.0, x / y);
        }
        return (floor, mod);
    }

    private static long FloorDiv(long x, long y)
    {
        long q = checked(x / y);
        return (x % y != 0 && (x < 0) != (y < 0)) ? q - 1 : q;
    }

    public static JinjaValue Power(JinjaValue a, JinjaValue b)
    {
        FailIfUndefined(a, b);
        if (IsInteger(a, out long x) && IsInteger(b, out long y) && y >= 0)
        {
            return Int(() =>
            {
                long result = 1, square = x;
                for (long e = y; e > 0; e >>= 1)
                {
                    if ((e & 1) == 1)
                        result = checked(result * square);
                    if (e > 1)
                        square = checked(square * square);
                }
                return result;
            });
        }
        if (IsNumber(a) && IsNumber(b))
        {
            double baseValue = ToDouble(a), exponent = ToDouble(b);
            if (baseValue == 0 && exponent < 0)
                throw new JinjaRuntimeError("0.0 cannot be raised to a negative power");
            return new JinjaFloat(Math.Pow(baseValue, exponent));
        }
        throw Unsupported("** or pow()", a, b);
    }

    public static JinjaValue Negate(JinjaValue v) => v switch
    {
        JinjaUndefined u => throw JinjaRuntimeError.Undefined(u),
        JinjaFloat f => new JinjaFloat(-f.Value),
        _ when IsInteger(v, out long i) => Int(() => checked(-i)),
        _ => throw new JinjaRuntimeError($"bad operand type for unary -: '{v.TypeName}'"),
    };

    public static JinjaValue Plus(JinjaValue v) => v switch
    {
        JinjaUndefined u => throw JinjaRuntimeError.Undefined(u),
        JinjaFloat => v,
        _ when IsInteger(v, out long i) => new JinjaInt(i),
        _ => throw new JinjaRuntimeError($"bad operand type for unary +: '{v.TypeName}'"),
    };

    /// <summary>Python's <c>==</c>: numbers by value across int, float and bool; list and tuple never equal.</summary>
    public static bool AreEqual(JinjaValue a, JinjaValue b)
    {
        if (ReferenceEquals(a, b))
            return true;
        if (IsNumber(a) && IsNumber(b))
            return IsInteger(a, out long x) && IsInteger(b, out long y) ? x == y : ToDouble(a) == ToDouble(b);
        return (a, b) switch
        {
            (JinjaString x, JinjaString y) => x.Value == y.Value,
            (JinjaNone, JinjaNone) => true,
            (JinjaUndefined, JinjaUndefined) => true,
            (JinjaList x, JinjaList y) => x.IsTuple == y.IsTuple && x.Items.Count == y.Items.Count
                && x.Items.Zip(y.Items).All(p => AreEqual(p.First, p.Second)),
            (JinjaDict x, JinjaDict y) => x.Items.Count == y.Items.Count
                && x.Items.All(p => y.Items.TryGetValue(p.Key, out var other) && AreEqual(p.Value, other)),
            _ => false,
        };
    }

    /// <summary>Python's ordering (<c>&lt;</c> and friends): numbers, strings by code point, lists and tuples item by item.</summary>
    public static int Compare(JinjaValue a, JinjaValue b, string op)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b))
            return IsInteger(a, out long x) && IsInteger(b, out long y) ? x.CompareTo(y) : ToDouble(a).CompareTo(ToDouble(b));
        if (a is JinjaString sa && b is JinjaString sb)
            return PythonText.Compare(sa.Value, sb.Value);
        if (a is JinjaList la && b is JinjaList lb && la.IsTuple == lb.IsTuple)
        {
            for (int i = 0; i < Math.Min(la.Items.Count, lb.Items.Count); i++)
                if (!AreEqual(la.Items[i], lb.Items[i]))
                    return Compare(la.Items[i], lb.Items[i], op);
            return la.Items.Count.CompareTo(lb.Items.Count);
        }
        throw new JinjaRuntimeError($"'{op}' not supported between instances of '{a.TypeName}' and '{b.TypeName}'");
    }

    /// <summary>Python's <c>in</c>: a substring, a list item, a dict key; an undefined container holds nothing.</summary>
    public static bool Contains(JinjaValue container, JinjaValue item) => container switch
    {
        JinjaString s => item is JinjaString sub
            ? s.Value.Contains(sub.Value, StringComparison.Ordinal)
            : throw new JinjaRuntimeError($"'in <string>' requires string as left operand, not {item.TypeName}"),
        JinjaList l => l.Items.Any(x => AreEqual(x, item)),
        JinjaDict d => IsHashable(item) ? d.Items.ContainsKey(item) : throw new JinjaRuntimeError($"unhashable type: '{item.TypeName}'"),
        JinjaUndefined => false,
        _ => throw new JinjaRuntimeError($"argument of type '{container.TypeName}' is not iterable"),
    };

    private static bool IsHashable(JinjaValue v) => v is not (JinjaList { IsTuple: false } or JinjaDict or JinjaNamespace);

    /// <summary>Python's iteration: a string by character, a dict by key; an undefined value is empty.</summary>
    public static IReadOnlyList<JinjaValue> Iterate(JinjaValue v) => v switch
    {
        JinjaList l => l.Items,
        JinjaDict d => d.Items.Keys.ToList(),
        JinjaString s => PythonText.CodePoints(s.Value).Select(c => (JinjaValue)new JinjaString(PythonText.CodePointString(c))).ToList(),
        JinjaUndefined => Array.Empty<JinjaValue>(),
        _ => throw new JinjaRuntimeError($"'{v.TypeName}' object is not iterable"),
    };

    /// <summary>Python's <c>len()</c> (an undefined value has length 0).</summary>
    public static int Length(JinjaValue v) => v switch
    {
        JinjaString s => PythonText.Length(s.Value),
        JinjaList l => l.Items.Count,
        JinjaDict d => d.Items.Count,
        JinjaUndefined => 0,
        _ => throw new JinjaRuntimeError($"object of type '{v.TypeName}' has no len()"),
    };
}
