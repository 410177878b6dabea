using System.Globalization;
using System.Text;
using System.Text.Json;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// A value inside a Jinja template, with the Python semantics jinja2 gives it: none, bool, int, float, str, list
/// (or tuple), dict (ordered), plus what templates make themselves (namespace, undefined, callables, the loop).
/// <see cref="ToString"/> is Python's <c>str()</c>, what <c>{{ value }}</c> prints.
/// </summary>
public abstract class JinjaValue
{
    private protected JinjaValue()
    {
    }

    public static JinjaValue None => JinjaNone.Instance;

    public static JinjaValue True => JinjaBool.TrueValue;

    public static JinjaValue False => JinjaBool.FalseValue;

    public static JinjaValue From(bool value) => value ? JinjaBool.TrueValue : JinjaBool.FalseValue;

    public static JinjaValue From(long value) => new JinjaInt(value);

    public static JinjaValue From(double value) => new JinjaFloat(value);

    public static JinjaValue From(string value) => new JinjaString(value ?? throw new ArgumentNullException(nameof(value)));

    public static JinjaValue List(IEnumerable<JinjaValue> items) => new JinjaList(items.ToList(), isTuple: false);

    public static JinjaValue Dict(IEnumerable<KeyValuePair<string, JinjaValue>> entries)
    {
        var dict = new JinjaDict();
        foreach (var (key, value) in entries)
            dict.Set(new JinjaString(key), value);
        return dict;
    }

    /// <summary>A JSON value as Python's <c>json.loads</c> gives it: an integer literal is an int, any other number a float.</summary>
    public static JinjaValue FromJson(JsonElement json) => json.ValueKind switch
    {
        JsonValueKind.Null => None,
        JsonValueKind.True => True,
        JsonValueKind.False => False,
        JsonValueKind.String => new JinjaString(json.GetString()!),
        JsonValueKind.Number => json.GetRawText().AsSpan().IndexOfAny(".eE") < 0 && json.TryGetInt64(out long i)
            ? new JinjaInt(i) : new JinjaFloat(json.GetDouble()),
        JsonValueKind.Array => new JinjaList(json.EnumerateArray().Select(FromJson).ToList(), isTuple: false),
        JsonValueKind.Object => Dict(json.EnumerateObject().Select(p => KeyValuePair.Create(p.Name, FromJson(p.Value)))),
        _ => throw new ArgumentException($"A JSON {json.ValueKind} has no Jinja value.", nameof(json)),
    };

    /// <summary>Python's type name, for error messages (<c>str</c>, <c>int</c>, <c>dict</c>, <c>NoneType</c>...).</summary>
    internal abstract string TypeName { get; }

    /// <summary>Python's truth value.</summary>
    internal virtual bool IsTruthy => true;

    /// <summary>Python's <c>repr()</c>, how the value prints inside a list or dict.</summary>
    internal virtual string Repr() => ToString();

    /// <summary>How deep lists and dicts nest inside this value (0 for a scalar): bounded by
    /// <see cref="JinjaLimits.MaxNesting"/>, so that printing or comparing a value never exhausts the stack.</summary>
    internal virtual int Depth => 0;

    /// <summary>Python's <c>str()</c>: what <c>{{ value }}</c> prints.</summary>
    public abstract override string ToString();
}

internal sealed class JinjaNone : JinjaValue
{
    public static readonly JinjaNone Instance = new();

    private JinjaNone()
    {
    }

    internal override string TypeName => "NoneType";

    internal override bool IsTruthy => false;

    public override string ToString() => "None";
}

internal sealed class JinjaBool : JinjaValue
{
    public static readonly JinjaBool TrueValue = new(true);
    public static readonly JinjaBool FalseValue = new(false);

    private JinjaBool(bool value) => Value = value;

    public bool Value { get; }

    internal override string TypeName => "bool";

    internal override bool IsTruthy => Value;

    public override string ToString() => Value ? "True" : "False";
}

internal sealed class JinjaInt(long value) : JinjaValue
{
    public long Value { get; } = value;

    internal override string TypeName => "int";

    internal override bool IsTruthy => Value != 0;

    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

internal sealed class JinjaFloat(double value) : JinjaValue
{
    public double Value { get; } = value;

    internal override string TypeName => "float";

    internal override bool IsTruthy => Value != 0;

    public override string ToString() => PythonText.FloatRepr(Value);
}

internal sealed class JinjaString(string value) : JinjaValue
{
    public static readonly JinjaString Empty = new("");

    public string Value { get; } = value;

    internal override string TypeName => "str";

    internal override bool IsTruthy => Value.Length > 0;

    internal override string Repr() => PythonText.StrRepr(Value);

    public override string ToString() => Value;
}

/// <summary>A list or a tuple: the sandbox Hugging Face renders in makes both immutable, so one type serves.</summary>
internal sealed class JinjaList : JinjaValue
{
    public JinjaList(IReadOnlyList<JinjaValue> items, bool isTuple)
    {
        Items = items;
        IsTuple = isTuple;
        Depth = JinjaLimits.CheckNesting(1 + items.Select(i => i.Depth).DefaultIfEmpty(0).Max());
    }

    public IReadOnlyList<JinjaValue> Items { get; }

    public bool IsTuple { get; }

    internal override int Depth { get; }

    internal override string TypeName => IsTuple ? "tuple" : "list";

    internal override bool IsTruthy => Items.Count > 0;

    public override string ToString() =>
        IsTuple
            ? Items.Count == 1 ? $"({Items[0].Repr()},)" : "(" + string.Join(", ", Items.Select(i => i.Repr())) + ")"
            : "[" + string.Join(", ", Items.Select(i => i.Repr())) + "]";
}

/// <summary>A dict: insertion-ordered, keyed with Python's equality (1, 1.0 and True are one key).</summary>
internal sealed class JinjaDict : JinjaValue
{
    private readonly OrderedDictionary<JinjaValue, JinjaValue> _items = new(JinjaKeyComparer.Instance);
    private int _depth = 1;

    public IReadOnlyDictionary<JinjaValue, JinjaValue> Items => _items;

    /// <summary>Adds or replaces an entry while the dict is built (a template cannot change a dict).</summary>
    public void Set(JinjaValue key, JinjaValue value)
    {
        _depth = JinjaLimits.CheckNesting(Math.Max(_depth, 1 + value.Depth));
        _items[key] = value;
    }

    internal override int Depth => _depth;

    internal override string TypeName => "dict";

    internal override bool IsTruthy => Items.Count > 0;

    public JinjaValue? Get(string key) => Items.TryGetValue(new JinjaString(key), out var value) ? value : null;

    /// <summary>Python's <c>list(d.items())</c>: (key, value) tuples in <paramref name="order"/>, else insertion order.</summary>
    public JinjaList Pairs(IEnumerable<KeyValuePair<JinjaValue, JinjaValue>>? order = null) =>
        new((order ?? Items).Select(p => (JinjaValue)new JinjaList([p.Key, p.Value], isTuple: true)).ToList(), isTuple: false);

    public override string ToString() => "{" + string.Join(", ", Items.Select(p => $"{p.Key.Repr()}: {p.Value.Repr()}")) + "}";
}

/// <summary><c>namespace()</c>: the one object a template may change, so a loop can carry state out.</summary>
internal sealed class JinjaNamespace : JinjaValue
{
    [ThreadStatic]
    private static HashSet<JinjaNamespace>? t_printing;

    public OrderedDictionary<string, JinjaValue> Attributes { get; } = new(StringComparer.Ordinal);

    internal override string TypeName => "Namespace";

    // A namespace may hold itself ({% set ns.me = ns %}); Python prints the inner one as "{...}".
    public override string ToString()
    {
        t_printing ??= new HashSet<JinjaNamespace>(ReferenceEqualityComparer.Instance);
        if (!t_printing.Add(this))
            return "<Namespace {...}>";
        try
        {
            return "<Namespace {" + string.Join(", ", Attributes.Select(p => $"{PythonText.StrRepr(p.Key)}: {p.Value.Repr()}")) + "}>";
        }
        finally
        {
            t_printing.Remove(this);
        }
    }
}

/// <summary>
/// jinja2's default <c>Undefined</c>: prints as nothing, is false, iterates as empty and has length 0, but any other
/// use (an attribute, a subscript, arithmetic, a call) is an error whose message says how it came about.
/// </summary>
internal sealed class JinjaUndefined(string hint) : JinjaValue
{
    public string Hint { get; } = hint;

    public static JinjaUndefined Name(string name) => new($"'{name}' is undefined");

    // jinja2's wording: "'dict object' has no attribute 'x'", "list object has no element 5", "'None' has no attribute 'x'".
    public static JinjaUndefined Attribute(JinjaValue owner, string name) => new($"'{Describe(owner)}' has no attribute '{name}'");

    public static JinjaUndefined Element(JinjaValue owner, JinjaValue key) => new($"{Describe(owner)} has no element {key.Repr()}");

    /// <summary>The sandbox's answer to an attribute it refuses (a dunder, a method that would change a list):
    /// usable as undefined, an error as soon as it is called.</summary>
    public static JinjaUndefined Unsafe(JinjaValue owner, string name) => new($"access to attribute '{name}' of '{owner.TypeName}' object is unsafe.");

    private static string Describe(JinjaValue owner) => owner is JinjaNone ? "None" : $"{owner.TypeName} object";

    internal override string TypeName => "Undefined";

    internal override bool IsTruthy => false;

    internal override string Repr() => "Undefined";

    public override string ToString() => "";
}

/// <summary>A function a template can call: a global, a bound method, a macro.</summary>
internal sealed class JinjaCallable(string name, Func<JinjaArgs, JinjaValue> invoke) : JinjaValue
{
    public string Name { get; } = name;

    public JinjaValue Invoke(JinjaArgs args) => invoke(args);

    internal override string TypeName => "function";

    public override string ToString() => $"<function {Name}>";
}

/// <summary>The arguments of a call: positional ones, then keyword ones, as Python binds them.</summary>
internal sealed class JinjaArgs(IReadOnlyList<JinjaValue> positional, IReadOnlyDictionary<string, JinjaValue> keywords)
{
    public static readonly JinjaArgs None = new(Array.Empty<JinjaValue>(), new Dictionary<string, JinjaValue>());

    public IReadOnlyList<JinjaValue> Positional { get; } = positional;

    public IReadOnlyDictionary<string, JinjaValue> Keywords { get; } = keywords;

    /// <summary>Checks the call against a signature: at most <paramref name="names"/>.Length arguments, keywords
    /// among the names, none given twice.</summary>
    public JinjaArgs Expect(string function, params string[] names)
    {
        if (Positional.Count > names.Length)
            throw new JinjaRuntimeError($"{function}() takes at most {names.Length} argument(s) ({Positional.Count} given)");
        foreach (var key in Keywords.Keys)
        {
            int at = Array.IndexOf(names, key);
            if (at < 0)
                throw new JinjaRuntimeError($"{function}() got an unexpected keyword argument '{key}'");
            if (at < Positional.Count)
                throw new JinjaRuntimeError($"{function}() got multiple values for argument '{key}'");
        }
        return this;
    }

    /// <summary>The argument at <paramref name="index"/> or named <paramref name="name"/>, else null.</summary>
    public JinjaValue? Get(int index, string name) =>
        index < Positional.Count ? Positional[index] : Keywords.TryGetValue(name, out var value) ? value : null;

    public JinjaValue Required(string function, int index, string name) =>
        Get(index, name) ?? throw new JinjaRuntimeError($"{function}() missing required argument '{name}'");
}

/// <summary>Python's dict-key equality and hashing, which only immutable values have.</summary>
internal sealed class JinjaKeyComparer : IEqualityComparer<JinjaValue>
{
    public static readonly JinjaKeyComparer Instance = new();

    public bool Equals(JinjaValue? x, JinjaValue? y) => x is not null && y is not null && JinjaOperators.AreEqual(x, y);

    public int GetHashCode(JinjaValue value) => value switch
    {
        JinjaNone => 0,
        JinjaBool b => b.Value ? 1 : 0,
        JinjaInt i => i.Value.GetHashCode(),
        JinjaFloat f => f.Value == Math.Floor(f.Value) && Math.Abs(f.Value) < 9.2e18 ? ((long)f.Value).GetHashCode() : f.Value.GetHashCode(),
        JinjaString s => StringComparer.Ordinal.GetHashCode(s.Value),
        JinjaList { IsTuple: true } t => t.Items.Aggregate(17, (h, item) => h * 31 + GetHashCode(item)),
        JinjaUndefined => 7,
        _ => throw new JinjaRuntimeError($"unhashable type: '{value.TypeName}'"),
    };
}

/// <summary>Builds strings and lists for an operation, refusing to pass the render's bounds.</summary>
internal static class JinjaLimits
{
    /// <summary>Deepest nesting of lists and dicts in one value (request JSON nests 32 deep at most).</summary>
    public const int MaxNesting = 500;

    public static int CheckNesting(int depth) =>
        depth <= MaxNesting ? depth : throw new JinjaRuntimeError($"lists and dicts would nest more than {MaxNesting} levels deep");

    public static string CheckLength(string text, int max) =>
        text.Length <= max ? text : throw new JinjaRuntimeError($"the result would be {text.Length} characters, more than the {max} a render may produce");

    public static void CheckLength(long length, int max, string what)
    {
        if (length > max)
            throw new JinjaRuntimeError($"the result would be {length} {what}, more than the {max} a render may produce");
    }

    /// <summary>string.Join, its length checked before the text is built.</summary>
    public static string Join(string separator, IReadOnlyList<string> parts, int max)
    {
        CheckLength(parts.Sum(p => (long)p.Length) + (long)Math.Max(0, parts.Count - 1) * separator.Length, max, "characters");
        return string.Join(separator, parts);
    }

    public static StringBuilder Append(StringBuilder text, string more, int max)
    {
        CheckLength((long)text.Length + more.Length, max, "characters");
        return text.Append(more);
    }
}
