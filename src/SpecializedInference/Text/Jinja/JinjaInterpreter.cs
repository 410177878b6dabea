using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// Variables visible at one point of a render. jinja2 scopes by block: each loop iteration, macro call and
/// <c>{% set %}...{% endset %}</c> body gets a scope of its own, so an assignment inside a loop is gone at the next
/// iteration and after the loop (only a <c>namespace()</c> attribute carries state out); <c>if</c> has no scope.
/// </summary>
internal sealed class JinjaScope(JinjaScope? parent)
{
    private readonly Dictionary<string, JinjaValue> _values = new(StringComparer.Ordinal);

    public JinjaValue? Lookup(string name)
    {
        for (var scope = this; scope is not null; scope = scope.Parent)
            if (scope._values.TryGetValue(name, out var value))
                return value;
        return null;
    }

    public JinjaScope? Parent { get; } = parent;

    public void Set(string name, JinjaValue value) => _values[name] = value;
}

/// <summary>The <c>loop</c> variable of one iteration.</summary>
internal sealed class JinjaLoop(IReadOnlyList<JinjaValue> items, int index) : JinjaValue
{
    internal override string TypeName => "LoopContext";

    public override string ToString() => $"<LoopContext {index + 1}/{items.Count}>";

    public JinjaValue? Attribute(string name) => name switch
    {
        "index" => From(index + 1),
        "index0" => From(index),
        "revindex" => From(items.Count - index),
        "revindex0" => From(items.Count - index - 1),
        "first" => From(index == 0),
        "last" => From(index == items.Count - 1),
        "length" => From(items.Count),
        "depth" => From(1),
        "depth0" => From(0),
        "previtem" => index > 0 ? items[index - 1] : new JinjaUndefined("there is no previous item"),
        "nextitem" => index + 1 < items.Count ? items[index + 1] : new JinjaUndefined("there is no next item"),
        "cycle" => new JinjaCallable("cycle", args => args.Positional.Count > 0
            ? args.Positional[index % args.Positional.Count]
            : throw new JinjaRuntimeError("no items for cycling given")),
        _ => null,
    };
}

/// <summary>
/// Renders a parsed template: walks the <see cref="JinjaNode"/>s with Python's semantics for values
/// (<see cref="JinjaOperators"/>), jinja2's for scoping and lookups (attribute falls back to key and back, the
/// sandbox's refusals), and the bounds of <see cref="JinjaOptions"/>.
/// </summary>
internal sealed class JinjaInterpreter
{
    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private readonly JinjaOptions _options;
    private readonly long _started = Stopwatch.GetTimestamp();
    private long _iterations;
    private int _callDepth;

    private JinjaInterpreter(JinjaOptions options) => _options = options;

    public JinjaOptions Options => _options;

    public static string Render(IReadOnlyList<JinjaNode> body, IReadOnlyDictionary<string, JinjaValue> variables, string sourceName, JinjaOptions options)
    {
        var interpreter = new JinjaInterpreter(options);
        var globals = new JinjaScope(null);
        JinjaGlobals.Register(globals, interpreter);
        var top = new JinjaScope(globals);
        foreach (var (name, value) in variables)
            top.Set(name, value ?? throw new ArgumentException($"The variable '{name}' is null; use JinjaValue.None.", nameof(variables)));
        var output = new StringBuilder();
        try
        {
            interpreter.Execute(body, top, output);
        }
        catch (JinjaRuntimeError e)
        {
            int line = e.Line ?? 1;
            if (e.RaisedByTemplate)
                throw new JinjaRaisedException(sourceName, line, e.Message);
            throw new JinjaRenderException(sourceName, line, e.Message);
        }
        return output.ToString();
    }

    /// <summary>Counts loop iterations (and items <c>range()</c> makes) against <see cref="JinjaOptions.MaxLoopIterations"/>,
    /// and checks <see cref="JinjaOptions.MaxRenderTime"/>.</summary>
    public void CountIterations(long count)
    {
        _iterations += count;
        if (_iterations > _options.MaxLoopIterations)
            throw new JinjaRuntimeError($"the template ran more than {_options.MaxLoopIterations} loop iterations");
        CheckTime();
    }

    private void CheckTime()
    {
        if (Stopwatch.GetElapsedTime(_started) > _options.MaxRenderTime)
            throw new JinjaRuntimeError(string.Create(CultureInfo.InvariantCulture, $"the template ran longer than {_options.MaxRenderTime.TotalSeconds:0.###} s"));
    }

    private void Write(StringBuilder output, string text) => JinjaLimits.Append(output, text, _options.MaxOutputLength);

    // ---- statements ----

    private Flow Execute(IReadOnlyList<JinjaNode> body, JinjaScope scope, StringBuilder output)
    {
        foreach (var node in body)
        {
            var flow = ExecuteNode(node, scope, output);
            if (flow != Flow.Normal)
                return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecuteNode(JinjaNode node, JinjaScope scope, StringBuilder output)
    {
        try
        {
            switch (node)
            {
                case TextNode text:
                    Write(output, text.Text);
                    return Flow.Normal;
                case OutputNode print:
                    Write(output, Eval(print.Value, scope).ToString());
                    return Flow.Normal;
                case IfNode branches:
                    foreach (var (test, body) in branches.Branches)
                        if (EvalAt(test, scope, test == branches.Branches[0].Test ? branches.Line : test.Line).IsTruthy)
                            return Execute(body, scope, output);
                    return Execute(branches.Else, scope, output);
                case ForNode loop:
                    return ExecuteFor(loop, scope, output);
                case SetNode set:
                    Assign(set.Target, Eval(set.Value, scope), scope);
                    return Flow.Normal;
                case SetBlockNode block:
                    var captured = new StringBuilder();
                    Execute(block.Body, new JinjaScope(scope), captured);
                    Assign(block.Target, ApplyFilters(block.Filters, JinjaValue.From(captured.ToString()), scope), scope);
                    return Flow.Normal;
                case MacroNode macro:
                    scope.Set(macro.Name, new JinjaCallable(macro.Name, args => CallMacro(macro, scope, args)));
                    return Flow.Normal;
                case LoopControlNode control:
                    return control.IsBreak ? Flow.Break : Flow.Continue;
                case ScopedBlockNode scoped when scoped.Filters.Count == 0:
                    return Execute(scoped.Body, new JinjaScope(scope), output);
                case ScopedBlockNode filtered:
                    var inner = new StringBuilder();
                    var flow = Execute(filtered.Body, new JinjaScope(scope), inner);
                    Write(output, ApplyFilters(filtered.Filters, JinjaValue.From(inner.ToString()), scope).ToString());
                    return flow;
                default:
                    throw new InvalidOperationException($"Unknown template node {node.GetType().Name}.");
            }
        }
        catch (JinjaRuntimeError e) when (e.Line is null)
        {
            e.Line = node.Line;
            throw;
        }
    }

    private Flow ExecuteFor(ForNode loop, JinjaScope scope, StringBuilder output)
    {
        var items = JinjaOperators.Iterate(Eval(loop.Iterable, scope));
        if (loop.Filter is { } filter)
        {
            CountIterations(items.Count);
            items = items.Where(item =>
            {
                var test = new JinjaScope(scope);
                Assign(loop.Target, item, test);
                return Eval(filter, test).IsTruthy;
            }).ToList();
        }
        if (items.Count == 0)
            return Execute(loop.Else, new JinjaScope(scope), output); // a break there is the enclosing loop's
        for (int i = 0; i < items.Count; i++)
        {
            CountIterations(1);
            var iteration = new JinjaScope(scope);
            iteration.Set("loop", new JinjaLoop(items, i));
            Assign(loop.Target, items[i], iteration);
            if (Execute(loop.Body, iteration, output) == Flow.Break)
                break;
        }
        return Flow.Normal;
    }

    private void Assign(JinjaTarget target, JinjaValue value, JinjaScope scope)
    {
        switch (target)
        {
            case NameTarget name:
                scope.Set(name.Name, value);
                break;
            case NamespaceTarget ns:
                if (scope.Lookup(ns.Namespace) is not JinjaNamespace space)
                    throw new JinjaRuntimeError("cannot assign attribute on non-namespace object");
                space.Attributes[ns.Attribute] = value;
                break;
            case TupleTarget tuple:
                var items = JinjaOperators.Iterate(value);
                if (items.Count != tuple.Items.Count)
                    throw new JinjaRuntimeError(items.Count < tuple.Items.Count
                        ? $"not enough values to unpack (expected {tuple.Items.Count}, got {items.Count})"
                        : $"too many values to unpack (expected {tuple.Items.Count})");
                for (int i = 0; i < items.Count; i++)
                    Assign(tuple.Items[i], items[i], scope);
                break;
        }
    }

    private JinjaValue CallMacro(MacroNode macro, JinjaScope definedIn, JinjaArgs args)
    {
        if (args.Positional.Count > macro.Parameters.Count)
            throw new JinjaRuntimeError($"macro '{macro.Name}' takes not more than {macro.Parameters.Count} argument(s)");
        foreach (var key in args.Keywords.Keys)
            if (!macro.Parameters.Any(p => p.Name == key))
                throw new JinjaRuntimeError($"macro '{macro.Name}' takes no keyword argument '{key}'");
        if (++_callDepth > _options.MaxDepth)
            throw new JinjaRuntimeError($"macros call each other more than {_options.MaxDepth} levels deep");
        CheckTime();
        try
        {
            var scope = new JinjaScope(definedIn);
            for (int i = 0; i < macro.Parameters.Count; i++)
            {
                var (name, defaultValue) = macro.Parameters[i];
                scope.Set(name, i < args.Positional.Count ? args.Positional[i]
                    : args.Keywords.TryGetValue(name, out var given) ? given
                    : defaultValue is not null ? Eval(defaultValue, scope)
                    : new JinjaUndefined($"parameter '{name}' was not provided"));
            }
            var output = new StringBuilder();
            Execute(macro.Body, scope, output);
            return JinjaValue.From(output.ToString());
        }
        finally
        {
            _callDepth--;
        }
    }

    private JinjaValue ApplyFilters(IReadOnlyList<FilterExpr> filters, JinjaValue value, JinjaScope scope)
    {
        foreach (var filter in filters)
            value = JinjaFilters.Apply(this, filter.Name, value, EvalArgs(filter.Args, filter.Keywords, scope));
        return value;
    }

    // ---- expressions ----

    // An elif's test fails on its own line, as jinja2 reports it, not the if's.
    private JinjaValue EvalAt(JinjaExpr expr, JinjaScope scope, int line)
    {
        try
        {
            return Eval(expr, scope);
        }
        catch (JinjaRuntimeError e) when (e.Line is null)
        {
            e.Line = line;
            throw;
        }
    }

    /// <summary>The value of an expression. A failure carries no line: the statement around it adds its own, which is
    /// the line jinja2 reports (the line a <c>{{ }}</c> expression or a <c>{% %}</c> statement starts on).</summary>
    public JinjaValue Eval(JinjaExpr expr, JinjaScope scope) =>
        expr switch
        {
            ConstExpr c => c.Value,
            NameExpr n => scope.Lookup(n.Name) ?? JinjaUndefined.Name(n.Name),
            ListExpr list => new JinjaList(list.Items.Select(i => Eval(i, scope)).ToList(), list.IsTuple),
            DictExpr dict => EvalDict(dict, scope),
            AttributeExpr a => GetAttribute(Eval(a.Value, scope), a.Name, _options.MaxOutputLength),
            ItemExpr { Key: SliceExpr slice } item => Slice(Eval(item.Value, scope), slice, scope),
            ItemExpr item => GetItem(Eval(item.Value, scope), Eval(item.Key, scope), _options.MaxOutputLength),
            CallExpr call => Call(Eval(call.Callee, scope), EvalArgs(call.Args, call.Keywords, scope)),
            FilterExpr f => JinjaFilters.Apply(this, f.Name, Eval(f.Value!, scope), EvalArgs(f.Args, f.Keywords, scope)),
            TestExpr t => JinjaValue.From(JinjaTestFunctions.Apply(t.Name, Eval(t.Value, scope), EvalArgs(t.Args, t.Keywords, scope))),
            BinaryExpr b => Binary(b.Operator, Eval(b.Left, scope), Eval(b.Right, scope)),
            UnaryExpr u => u.Operator == "-" ? JinjaOperators.Negate(Eval(u.Operand, scope)) : JinjaOperators.Plus(Eval(u.Operand, scope)),
            ConcatExpr concat => JinjaValue.From(JinjaLimits.CheckLength(string.Concat(concat.Items.Select(i => Eval(i, scope).ToString())), _options.MaxOutputLength)),
            CompareExpr compare => JinjaValue.From(EvalCompare(compare, scope)),
            AndExpr and => Eval(and.Left, scope) is { IsTruthy: false } left ? left : Eval(and.Right, scope),
            OrExpr or => Eval(or.Left, scope) is { IsTruthy: true } left ? left : Eval(or.Right, scope),
            NotExpr not => JinjaValue.From(!Eval(not.Operand, scope).IsTruthy),
            ConditionalExpr cond => Eval(cond.Test, scope).IsTruthy ? Eval(cond.Then, scope)
                : cond.Otherwise is { } otherwise ? Eval(otherwise, scope)
                : new JinjaUndefined($"the inline if-expression on line {cond.Line} evaluated to false and no else section was defined."),
            SliceExpr => throw new JinjaRuntimeError("a slice is only allowed inside []"),
            _ => throw new InvalidOperationException($"Unknown expression node {expr.GetType().Name}."),
        };

    private JinjaDict EvalDict(DictExpr dict, JinjaScope scope)
    {
        var result = new JinjaDict();
        foreach (var (key, value) in dict.Items)
            result.Set(Eval(key, scope), Eval(value, scope));
        return result;
    }

    private JinjaArgs EvalArgs(IReadOnlyList<JinjaExpr> args, IReadOnlyList<(string Name, JinjaExpr Value)> keywords, JinjaScope scope)
    {
        if (args.Count == 0 && keywords.Count == 0)
            return JinjaArgs.None;
        var named = new Dictionary<string, JinjaValue>(StringComparer.Ordinal);
        foreach (var (name, value) in keywords)
            if (!named.TryAdd(name, Eval(value, scope)))
                throw new JinjaRuntimeError($"keyword argument repeated: {name}");
        return new JinjaArgs(args.Select(a => Eval(a, scope)).ToList(), named);
    }

    private static JinjaValue Call(JinjaValue callee, JinjaArgs args) => callee switch
    {
        JinjaCallable function => function.Invoke(args),
        JinjaUndefined u => throw JinjaRuntimeError.Undefined(u),
        _ => throw new JinjaRuntimeError($"'{callee.TypeName}' object is not callable"),
    };

    private JinjaValue Binary(string op, JinjaValue left, JinjaValue right) => op switch
    {
        "+" => JinjaOperators.Add(left, right, _options.MaxOutputLength),
        "-" => JinjaOperators.Subtract(left, right),
        "*" => JinjaOperators.Multiply(left, right, _options.MaxOutputLength),
        "/" => JinjaOperators.Divide(left, right),
        "//" => JinjaOperators.FloorDivide(left, right),
        "%" => JinjaOperators.Modulo(left, right, _options.MaxOutputLength),
        "**" => JinjaOperators.Power(left, right),
        _ => throw new InvalidOperationException($"Unknown operator {op}."),
    };

    private bool EvalCompare(CompareExpr compare, JinjaScope scope)
    {
        var left = Eval(compare.First, scope);
        foreach (var (op, operand) in compare.Rest)
        {
            var right = Eval(operand, scope);
            bool holds = op switch
            {
                "==" => JinjaOperators.AreEqual(left, right),
                "!=" => !JinjaOperators.AreEqual(left, right),
                "<" => JinjaOperators.Compare(left, right, op) < 0,
                "<=" => JinjaOperators.Compare(left, right, op) <= 0,
                ">" => JinjaOperators.Compare(left, right, op) > 0,
                ">=" => JinjaOperators.Compare(left, right, op) >= 0,
                "in" => JinjaOperators.Contains(right, left),
                "notin" => !JinjaOperators.Contains(right, left),
                _ => throw new InvalidOperationException($"Unknown comparison {op}."),
            };
            if (!holds)
                return false;
            left = right;
        }
        return true;
    }

    /// <summary>jinja2's sandboxed <c>getattr</c>: the attribute (a method, a namespace attribute), else the key
    /// of that name; a refused attribute is an undefined value that fails when used.</summary>
    public static JinjaValue GetAttribute(JinjaValue value, string name, int maxLength)
    {
        if (value is JinjaUndefined undefined)
            throw JinjaRuntimeError.Undefined(undefined);
        if (JinjaMethods.Find(value, name, maxLength) is { } attribute)
            return attribute;
        if (name.StartsWith("__", StringComparison.Ordinal) && name.EndsWith("__", StringComparison.Ordinal))
            return JinjaUndefined.Unsafe(value, name);
        return value switch
        {
            JinjaDict dict => dict.Get(name) ?? JinjaUndefined.Attribute(value, name),
            JinjaNamespace ns => ns.Attributes.TryGetValue(name, out var v) ? v : JinjaUndefined.Attribute(value, name),
            JinjaLoop loop => loop.Attribute(name) ?? JinjaUndefined.Attribute(value, name),
            JinjaCallable function when name == "name" => JinjaValue.From(function.Name),
            _ => JinjaUndefined.Attribute(value, name),
        };
    }

    /// <summary>jinja2's sandboxed <c>getitem</c>: the item, else (for a string key) the attribute of that name.</summary>
    public static JinjaValue GetItem(JinjaValue value, JinjaValue key, int maxLength)
    {
        if (value is JinjaUndefined undefined)
            throw JinjaRuntimeError.Undefined(undefined);
        switch (value)
        {
            case JinjaDict dict when key is not (JinjaList { IsTuple: false } or JinjaDict or JinjaNamespace):
                if (dict.Items.TryGetValue(key, out var item))
                    return item;
                break;
            case JinjaList list when key is JinjaInt or JinjaBool:
                long i = (long)JinjaOperators.ToDouble(key);
                if (i < 0)
                    i += list.Items.Count;
                if (i >= 0 && i < list.Items.Count)
                    return list.Items[(int)i];
                break;
            case JinjaString s when key is JinjaInt or JinjaBool:
                var points = PythonText.CodePoints(s.Value);
                long at = (long)JinjaOperators.ToDouble(key);
                if (at < 0)
                    at += points.Length;
                if (at >= 0 && at < points.Length)
                    return JinjaValue.From(PythonText.CodePointString(points[(int)at]));
                break;
        }
        if (key is JinjaString name)
        {
            if (JinjaMethods.Find(value, name.Value, maxLength) is { } attribute)
                return attribute;
            if (value is JinjaNamespace ns && ns.Attributes.TryGetValue(name.Value, out var v))
                return v;
            if (value is JinjaLoop loop && loop.Attribute(name.Value) is { } loopValue)
                return loopValue;
            return JinjaUndefined.Attribute(value, name.Value);
        }
        return JinjaUndefined.Element(value, key);
    }

    private JinjaValue Slice(JinjaValue value, SliceExpr slice, JinjaScope scope)
    {
        if (value is JinjaUndefined undefined)
            throw JinjaRuntimeError.Undefined(undefined);
        long? Bound(JinjaExpr? expr) => expr is null ? null : Eval(expr, scope) switch
        {
            JinjaNone => null,
            JinjaInt i => i.Value,
            JinjaBool b => b.Value ? 1 : 0,
            var other => throw new JinjaRuntimeError($"slice indices must be integers or None or have an __index__ method, not {other.TypeName}"),
        };
        long? start = Bound(slice.Start), stop = Bound(slice.Stop), step = Bound(slice.Step);
        switch (value)
        {
            case JinjaString s:
                var points = PythonText.CodePoints(s.Value);
                var (first, stride, count) = PythonText.SliceIndices(points.Length, start, stop, step);
                var text = new StringBuilder(count);
                for (int k = 0; k < count; k++)
                    PythonText.AppendCodePoint(text, points[first + k * stride]);
                return JinjaValue.From(text.ToString());
            case JinjaList list:
                var (from, by, n) = PythonText.SliceIndices(list.Items.Count, start, stop, step);
                return new JinjaList(Enumerable.Range(0, n).Select(k => list.Items[from + k * by]).ToList(), list.IsTuple);
            default:
                // jinja2 slices with Python's own subscript, not its forgiving getitem.
                throw new JinjaRuntimeError(value is JinjaDict ? "unhashable type: 'slice'" : $"'{value.TypeName}' object is not subscriptable");
        }
    }
}
