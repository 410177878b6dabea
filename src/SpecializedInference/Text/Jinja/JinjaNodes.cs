namespace SpecializedInference.Text.Jinja;

/// <summary>A node of a parsed template, with the line it starts on (runtime errors name it).</summary>
internal abstract record JinjaNode(int Line);

// ---- statements ----

/// <summary>Template text outside tags.</summary>
internal sealed record TextNode(string Text, int Line) : JinjaNode(Line);

/// <summary><c>{{ expression }}</c>.</summary>
internal sealed record OutputNode(JinjaExpr Value, int Line) : JinjaNode(Line);

/// <summary><c>{% if %}</c> with its <c>elif</c> branches, then <c>else</c>.</summary>
internal sealed record IfNode(IReadOnlyList<(JinjaExpr Test, IReadOnlyList<JinjaNode> Body)> Branches, IReadOnlyList<JinjaNode> Else, int Line)
    : JinjaNode(Line);

/// <summary><c>{% for target in iterable if filter %}</c> body <c>{% else %}</c> (when nothing was iterated).</summary>
internal sealed record ForNode(JinjaTarget Target, JinjaExpr Iterable, JinjaExpr? Filter, IReadOnlyList<JinjaNode> Body, IReadOnlyList<JinjaNode> Else, int Line)
    : JinjaNode(Line);

/// <summary><c>{% set target = value %}</c>.</summary>
internal sealed record SetNode(JinjaTarget Target, JinjaExpr Value, int Line) : JinjaNode(Line);

/// <summary><c>{% set target %}body{% endset %}</c>, optionally <c>{% set target | filter %}</c>.</summary>
internal sealed record SetBlockNode(JinjaTarget Target, IReadOnlyList<FilterExpr> Filters, IReadOnlyList<JinjaNode> Body, int Line) : JinjaNode(Line);

/// <summary><c>{% macro name(parameter, parameter=default) %}</c>.</summary>
internal sealed record MacroNode(string Name, IReadOnlyList<(string Name, JinjaExpr? Default)> Parameters, IReadOnlyList<JinjaNode> Body, int Line)
    : JinjaNode(Line);

/// <summary><c>{% break %}</c> or <c>{% continue %}</c> (jinja2's loopcontrols extension).</summary>
internal sealed record LoopControlNode(bool IsBreak, int Line) : JinjaNode(Line);

/// <summary>
/// A body rendered in a scope of its own and output as is: transformers' <c>{% generation %}</c> (a call block
/// that only records where the assistant's text is) and <c>{% filter name %}</c> with <see cref="Filters"/>.
/// </summary>
internal sealed record ScopedBlockNode(IReadOnlyList<FilterExpr> Filters, IReadOnlyList<JinjaNode> Body, int Line) : JinjaNode(Line);

// ---- assignment targets ----

internal abstract record JinjaTarget(int Line);

internal sealed record NameTarget(string Name, int Line) : JinjaTarget(Line);

/// <summary><c>ns.attribute</c> of a <c>namespace()</c>: the only assignment that outlives a loop iteration.</summary>
internal sealed record NamespaceTarget(string Namespace, string Attribute, int Line) : JinjaTarget(Line);

internal sealed record TupleTarget(IReadOnlyList<JinjaTarget> Items, int Line) : JinjaTarget(Line);

// ---- expressions ----

internal abstract record JinjaExpr(int Line) : JinjaNode(Line);

internal sealed record ConstExpr(JinjaValue Value, int Line) : JinjaExpr(Line);

internal sealed record NameExpr(string Name, int Line) : JinjaExpr(Line);

internal sealed record ListExpr(IReadOnlyList<JinjaExpr> Items, bool IsTuple, int Line) : JinjaExpr(Line);

internal sealed record DictExpr(IReadOnlyList<(JinjaExpr Key, JinjaExpr Value)> Items, int Line) : JinjaExpr(Line);

/// <summary><c>value.name</c>: an attribute, else the item of that key (jinja2's <c>getattr</c>).</summary>
internal sealed record AttributeExpr(JinjaExpr Value, string Name, int Line) : JinjaExpr(Line);

/// <summary><c>value[key]</c>: the item, else the attribute of that name (jinja2's <c>getitem</c>).</summary>
internal sealed record ItemExpr(JinjaExpr Value, JinjaExpr Key, int Line) : JinjaExpr(Line);

/// <summary><c>start:stop:step</c> inside brackets; a missing part is null.</summary>
internal sealed record SliceExpr(JinjaExpr? Start, JinjaExpr? Stop, JinjaExpr? Step, int Line) : JinjaExpr(Line);

internal sealed record CallExpr(JinjaExpr Callee, IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string Name, JinjaExpr Value)> Keywords, int Line)
    : JinjaExpr(Line);

/// <summary><c>value | name(args)</c>; <see cref="Value"/> is null in a filter block or a set block, which filter their body.</summary>
internal sealed record FilterExpr(JinjaExpr? Value, string Name, IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string Name, JinjaExpr Value)> Keywords, int Line)
    : JinjaExpr(Line);

/// <summary><c>value is name(args)</c>; <c>is not</c> is a <see cref="NotExpr"/> around it.</summary>
internal sealed record TestExpr(JinjaExpr Value, string Name, IReadOnlyList<JinjaExpr> Args, IReadOnlyList<(string Name, JinjaExpr Value)> Keywords, int Line)
    : JinjaExpr(Line);

/// <summary>Arithmetic: <c>+ - * / // % **</c>.</summary>
internal sealed record BinaryExpr(string Operator, JinjaExpr Left, JinjaExpr Right, int Line) : JinjaExpr(Line);

/// <summary>Unary <c>-</c> or <c>+</c>.</summary>
internal sealed record UnaryExpr(string Operator, JinjaExpr Operand, int Line) : JinjaExpr(Line);

/// <summary><c>a ~ b ~ c</c>: the operands' strings joined.</summary>
internal sealed record ConcatExpr(IReadOnlyList<JinjaExpr> Items, int Line) : JinjaExpr(Line);

/// <summary>A comparison chain, Python style: <c>a &lt; b &lt; c</c> is <c>a &lt; b and b &lt; c</c>; operators
/// are <c>== != &lt; &lt;= &gt; &gt;= in notin</c>.</summary>
internal sealed record CompareExpr(JinjaExpr First, IReadOnlyList<(string Operator, JinjaExpr Operand)> Rest, int Line) : JinjaExpr(Line);

internal sealed record AndExpr(JinjaExpr Left, JinjaExpr Right, int Line) : JinjaExpr(Line);

internal sealed record OrExpr(JinjaExpr Left, JinjaExpr Right, int Line) : JinjaExpr(Line);

internal sealed record NotExpr(JinjaExpr Operand, int Line) : JinjaExpr(Line);

/// <summary><c>then if test else otherwise</c>; without <c>else</c> a false test gives an undefined value.</summary>
internal sealed record ConditionalExpr(JinjaExpr Test, JinjaExpr Then, JinjaExpr? Otherwise, int Line) : JinjaExpr(Line);
