using System.Globalization;

namespace SpecializedInference.Text.Jinja;

/// <summary>
/// Parses tokens into <see cref="JinjaNode"/>s with jinja2's grammar and precedence (lowest first): conditional
/// expression, <c>or</c>, <c>and</c>, <c>not</c>, comparisons and <c>in</c>, <c>+ -</c>, <c>~</c>, <c>* / // %</c>,
/// <c>**</c>, unary <c>- +</c>, then a primary with its <c>.attr</c>, <c>[key]</c> and calls, then filters and
/// tests (so <c>a + b | trim</c> trims <c>b</c> and <c>-x | abs</c> is <c>(-x) | abs</c>). Filter and test names are
/// checked here, as jinja2 does when it compiles a template.
/// </summary>
internal sealed class JinjaParser
{
    private static readonly HashSet<string> CompareOperators = ["==", "!=", "<", "<=", ">", ">="];

    private readonly List<JinjaToken> _tokens;
    private readonly string _sourceName;
    private readonly int _maxDepth;
    private readonly List<string[]> _endTokenStack = new();
    private readonly List<string> _tagStack = new();
    private int _index;
    private int _depth;
    private int _loopDepth;

    private JinjaParser(List<JinjaToken> tokens, string sourceName, int maxDepth)
    {
        _tokens = tokens;
        _sourceName = sourceName;
        _maxDepth = maxDepth;
    }

    public static IReadOnlyList<JinjaNode> Parse(string source, string sourceName, JinjaOptions options)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(source, sourceName, options), sourceName, options.MaxDepth);
        return parser.Subparse(null);
    }

    private JinjaToken Current => _tokens[_index];

    private JinjaToken Look => _tokens[Math.Min(_index + 1, _tokens.Count - 1)];

    private JinjaToken Next()
    {
        var token = Current;
        if (token.Kind != JinjaTokenKind.Eof)
            _index++;
        return token;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name))
            return false;
        Next();
        return true;
    }

    private bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op))
            return false;
        Next();
        return true;
    }

    private JinjaSyntaxException Fail(JinjaToken at, string problem) => new(_sourceName, at.Line, at.Column, problem);

    private JinjaToken Expect(JinjaTokenKind kind, string? value, string described)
    {
        var token = Current;
        if (token.Kind != kind || (value is not null && token.Value != value))
        {
            if (token.Kind == JinjaTokenKind.Eof)
                throw Fail(token, $"unexpected end of template, expected '{described}'.");
            throw Fail(token, $"expected token '{described}', got '{token.Describe()}'");
        }
        return Next();
    }

    private JinjaToken ExpectName(string? name = null) => Expect(JinjaTokenKind.Name, name, name ?? "name");

    private JinjaToken ExpectOperator(string op) => Expect(JinjaTokenKind.Operator, op, op);

    private void ExpectBlockEnd() => Expect(JinjaTokenKind.BlockEnd, null, "end of statement block");

    // Keeps a hostile template's nesting ("((((...") from exhausting the stack, here and when the tree is evaluated.
    private Nesting Deeper()
    {
        Chain();
        return new Nesting(this);
    }

    // An operator or filter chained onto an expression ("a + b + c", "x | f | g") makes the tree one level deeper too.
    private void Chain()
    {
        if (++_depth > _maxDepth)
            throw Fail(Current, $"the expression nests more than {_maxDepth} levels deep");
    }

    private readonly struct Nesting(JinjaParser parser) : IDisposable
    {
        public void Dispose() => parser._depth--;
    }

    // ---- statements ----

    private List<JinjaNode> Subparse(string[]? endTokens)
    {
        var body = new List<JinjaNode>();
        if (endTokens is not null)
            _endTokenStack.Add(endTokens);
        try
        {
            while (Current.Kind != JinjaTokenKind.Eof)
            {
                var token = Current;
                switch (token.Kind)
                {
                    case JinjaTokenKind.Data:
                        body.Add(new TextNode(token.Value, token.Line));
                        Next();
                        break;
                    case JinjaTokenKind.VariableBegin:
                        Next();
                        var printed = ParseTuple();
                        body.Add(new OutputNode(printed, printed.Line));
                        Expect(JinjaTokenKind.VariableEnd, null, "end of print statement");
                        break;
                    case JinjaTokenKind.BlockBegin:
                        Next();
                        if (endTokens is not null && Current.Kind == JinjaTokenKind.Name && endTokens.Contains(Current.Value))
                            return body;
                        body.Add(ParseStatement());
                        ExpectBlockEnd();
                        break;
                    default:
                        throw Fail(token, $"unexpected '{token.Describe()}'");
                }
            }
            if (endTokens is not null)
                throw FailUnknownTag(null, Current);
            return body;
        }
        finally
        {
            if (endTokens is not null)
                _endTokenStack.RemoveAt(_endTokenStack.Count - 1);
        }
    }

    private List<JinjaNode> ParseStatements(string[] endTokens, bool dropNeedle = false)
    {
        SkipOperator(":");
        ExpectBlockEnd();
        var body = Subparse(endTokens);
        if (dropNeedle)
            Next();
        return body;
    }

    // jinja2's message for a tag it does not know, or for the end of the template inside a block.
    private JinjaSyntaxException FailUnknownTag(string? name, JinjaToken at)
    {
        var expected = _endTokenStack.SelectMany(e => e).ToHashSet();
        string? looking = _endTokenStack.Count > 0 ? string.Join(" or ", _endTokenStack[^1].Select(e => $"'{e}'")) : null;
        var message = new List<string> { name is null ? "Unexpected end of template." : $"Encountered unknown tag '{name}'." };
        if (looking is not null)
            message.Add(name is not null && expected.Contains(name)
                ? $"You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for {looking}."
                : $"Jinja was looking for the following tags: {looking}.");
        if (_tagStack.Count > 0)
            message.Add($"The innermost block that needs to be closed is '{_tagStack[^1]}'.");
        return Fail(at, string.Join(" ", message));
    }

    private JinjaNode ParseStatement()
    {
        var token = Current;
        if (token.Kind != JinjaTokenKind.Name)
            throw Fail(token, "tag name expected");
        _tagStack.Add(token.Value);
        try
        {
            return token.Value switch
            {
                "if" => ParseIf(),
                "for" => ParseFor(),
                "set" => ParseSet(),
                "macro" => ParseMacro(),
                "break" or "continue" => ParseLoopControl(),
                "generation" => ParseGeneration(),
                "filter" => ParseFilterBlock(),
                _ => throw UnknownTag(token),
            };
        }
        finally
        {
            _tagStack.RemoveAt(_tagStack.Count - 1);
        }
    }

    // jinja2 names the innermost open block in the message, which an unknown tag is not.
    private JinjaSyntaxException UnknownTag(JinjaToken token)
    {
        _tagStack.RemoveAt(_tagStack.Count - 1);
        var error = FailUnknownTag(token.Value, token);
        _tagStack.Add(token.Value); // ParseStatement's finally removes it
        return error;
    }

    private IfNode ParseIf()
    {
        int line = Next().Line;
        var branches = new List<(JinjaExpr, IReadOnlyList<JinjaNode>)>();
        IReadOnlyList<JinjaNode> otherwise = Array.Empty<JinjaNode>();
        while (true)
        {
            var test = ParseTuple(withCondexpr: false);
            branches.Add((test, ParseStatements(["elif", "else", "endif"])));
            var token = Next();
            if (token.IsName("elif"))
                continue;
            if (token.IsName("else"))
                otherwise = ParseStatements(["endif"], dropNeedle: true);
            break;
        }
        return new IfNode(branches, otherwise, line);
    }

    private ForNode ParseFor()
    {
        int line = Next().Line;
        var target = ParseAssignTarget(extraEnd: ["in"]);
        ExpectName("in");
        var iterable = ParseTuple(withCondexpr: false, extraEnd: ["recursive"]);
        var filter = SkipName("if") ? ParseExpression() : null;
        if (Current.IsName("recursive"))
            throw Fail(Current, "recursive loops are not supported");
        _loopDepth++;
        var body = ParseStatements(["endfor", "else"]);
        _loopDepth--;
        var otherwise = Next().IsName("endfor") ? (IReadOnlyList<JinjaNode>)Array.Empty<JinjaNode>() : ParseStatements(["endfor"], dropNeedle: true);
        return new ForNode(target, iterable, filter, body, otherwise, line);
    }

    private JinjaNode ParseSet()
    {
        int line = Next().Line;
        var target = ParseAssignTarget(withNamespace: true);
        if (SkipOperator("="))
            return new SetNode(target, ParseTuple(), line);
        var filters = ParseFilterChain();
        return new SetBlockNode(target, filters, ParseStatements(["endset"], dropNeedle: true), line);
    }

    private MacroNode ParseMacro()
    {
        int line = Next().Line;
        string name = ExpectName().Value;
        ExpectOperator("(");
        var parameters = new List<(string, JinjaExpr?)>();
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0)
                ExpectOperator(",");
            var parameter = ExpectName();
            JinjaExpr? defaultValue = SkipOperator("=") ? ParseExpression() : null;
            if (defaultValue is null && parameters.Any(p => p.Item2 is not null))
                throw Fail(parameter, "non-default argument follows default argument");
            parameters.Add((parameter.Value, defaultValue));
        }
        ExpectOperator(")");
        int loops = _loopDepth;
        _loopDepth = 0; // a macro body is not inside the loop around its definition
        var body = ParseStatements(["endmacro"], dropNeedle: true);
        _loopDepth = loops;
        return new MacroNode(name, parameters, body, line);
    }

    private LoopControlNode ParseLoopControl()
    {
        var token = Next();
        if (_loopDepth == 0)
            throw Fail(token, $"'{token.Value}' outside loop");
        return new LoopControlNode(token.Value == "break", token.Line);
    }

    private ScopedBlockNode ParseGeneration()
    {
        int line = Next().Line;
        return new ScopedBlockNode([], ParseStatements(["endgeneration"], dropNeedle: true), line);
    }

    private ScopedBlockNode ParseFilterBlock()
    {
        int line = Next().Line;
        var filters = ParseFilterChain(startInline: true);
        return new ScopedBlockNode(filters, ParseStatements(["endfilter"], dropNeedle: true), line);
    }

    private JinjaTarget ParseAssignTarget(string[]? extraEnd = null, bool withNamespace = false)
    {
        var at = Current;
        var expr = ParseTuple(simplified: true, extraEnd: extraEnd, withNamespace: withNamespace);
        return ToTarget(expr, at);
    }

    private JinjaTarget ToTarget(JinjaExpr expr, JinjaToken at) => expr switch
    {
        NameExpr n => new NameTarget(n.Name, n.Line),
        AttributeExpr { Value: NameExpr ns } a => new NamespaceTarget(ns.Name, a.Name, a.Line),
        ListExpr { IsTuple: true } t => new TupleTarget(t.Items.Select(i => ToTarget(i, at)).ToList(), t.Line),
        ConstExpr => throw Fail(at, "can't assign to 'const'"),
        _ => throw Fail(at, $"can't assign to '{expr.GetType().Name.Replace("Expr", "").ToLowerInvariant()}'"),
    };

    // ---- expressions ----

    private JinjaExpr ParseExpression(bool withCondexpr = true) => withCondexpr ? ParseConditional() : ParseOr();

    private JinjaExpr ParseConditional()
    {
        using var nesting = Deeper();
        int line = Current.Line;
        var expr = ParseOr();
        while (SkipName("if"))
        {
            var test = ParseOr();
            var otherwise = SkipName("else") ? ParseConditional() : null;
            expr = new ConditionalExpr(test, expr, otherwise, line);
            line = Current.Line;
        }
        return expr;
    }

    /// <summary><c>first (operator next)*</c> built left to right; <paramref name="link"/> consumes one operator and
    /// its operand. Each link makes the tree a level deeper, so it counts against the nesting bound.</summary>
    private JinjaExpr LeftChain(JinjaExpr first, Func<bool> atOperator, Func<JinjaExpr, JinjaExpr> link)
    {
        int depth = _depth;
        try
        {
            var left = first;
            while (atOperator())
            {
                Chain();
                left = link(left);
            }
            return left;
        }
        finally
        {
            _depth = depth;
        }
    }

    private JinjaExpr ParseOr() =>
        LeftChain(ParseAnd(), () => Current.IsName("or"), left => new OrExpr(left, Skip(ParseAnd), left.Line));

    private JinjaExpr ParseAnd() =>
        LeftChain(ParseNot(), () => Current.IsName("and"), left => new AndExpr(left, Skip(ParseNot), left.Line));

    // Consumes the operator token, then parses its right operand.
    private JinjaExpr Skip(Func<JinjaExpr> operand)
    {
        Next();
        return operand();
    }

    private JinjaExpr ParseNot()
    {
        if (!Current.IsName("not"))
            return ParseCompare();
        using var nesting = Deeper();
        int line = Next().Line;
        return new NotExpr(ParseNot(), line);
    }

    private JinjaExpr ParseCompare()
    {
        int line = Current.Line;
        var first = ParseMath1();
        var rest = new List<(string, JinjaExpr)>();
        while (true)
        {
            if (Current.Kind == JinjaTokenKind.Operator && CompareOperators.Contains(Current.Value))
                rest.Add((Next().Value, ParseMath1()));
            else if (SkipName("in"))
                rest.Add(("in", ParseMath1()));
            else if (Current.IsName("not") && Look.IsName("in"))
            {
                Next();
                Next();
                rest.Add(("notin", ParseMath1()));
            }
            else
                break;
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, line);
    }

    private JinjaExpr ParseMath1() =>
        LeftChain(ParseConcat(), () => Current.IsOperator("+") || Current.IsOperator("-"),
            left => new BinaryExpr(Next().Value, left, ParseConcat(), left.Line));

    private JinjaExpr ParseConcat()
    {
        int line = Current.Line;
        var items = new List<JinjaExpr> { ParseMath2() };
        while (SkipOperator("~"))
            items.Add(ParseMath2());
        return items.Count == 1 ? items[0] : new ConcatExpr(items, line);
    }

    private JinjaExpr ParseMath2() =>
        LeftChain(ParsePow(), () => Current.Kind == JinjaTokenKind.Operator && Current.Value is "*" or "/" or "//" or "%",
            left => new BinaryExpr(Next().Value, left, ParsePow(), left.Line));

    // Left-associative, as jinja2 parses it: 2 ** 3 ** 2 is 64.
    private JinjaExpr ParsePow() =>
        LeftChain(ParseUnary(), () => Current.IsOperator("**"), left => new BinaryExpr(Next().Value, left, ParseUnary(), left.Line));

    private JinjaExpr ParseUnary(bool withFilter = true)
    {
        using var nesting = Deeper();
        var token = Current;
        JinjaExpr node;
        if (token.IsOperator("-") || token.IsOperator("+"))
        {
            Next();
            node = new UnaryExpr(token.Value, ParseUnary(withFilter: false), token.Line);
        }
        else
        {
            node = ParsePrimary();
        }
        node = ParsePostfix(node);
        return withFilter ? ParseFilterExpr(node) : node;
    }

    private JinjaExpr ParsePrimary(bool withNamespace = false)
    {
        var token = Current;
        switch (token.Kind)
        {
            case JinjaTokenKind.Name:
                Next();
                switch (token.Value)
                {
                    case "true" or "True":
                        return new ConstExpr(JinjaValue.True, token.Line);
                    case "false" or "False":
                        return new ConstExpr(JinjaValue.False, token.Line);
                    case "none" or "None":
                        return new ConstExpr(JinjaValue.None, token.Line);
                }
                if (withNamespace && Current.IsOperator("."))
                {
                    Next();
                    return new AttributeExpr(new NameExpr(token.Value, token.Line), ExpectName().Value, token.Line);
                }
                return new NameExpr(token.Value, token.Line);
            case JinjaTokenKind.String:
                string text = Next().Value;
                while (Current.Kind == JinjaTokenKind.String)
                    text += Next().Value; // adjacent literals join, as in Python
                return new ConstExpr(JinjaValue.From(text), token.Line);
            case JinjaTokenKind.Integer:
                Next();
                return new ConstExpr(JinjaValue.From(ParseInteger(token)), token.Line);
            case JinjaTokenKind.Float:
                Next();
                return new ConstExpr(JinjaValue.From(double.Parse(token.Value.Replace("_", ""), NumberStyles.Float, CultureInfo.InvariantCulture)), token.Line);
            case JinjaTokenKind.Operator when token.Value == "(":
                Next();
                var inner = ParseTuple(explicitParentheses: true);
                ExpectOperator(")");
                return inner;
            case JinjaTokenKind.Operator when token.Value == "[":
                return ParseList();
            case JinjaTokenKind.Operator when token.Value == "{":
                return ParseDict();
            case JinjaTokenKind.Eof:
                throw Fail(token, "unexpected end of template, expected an expression");
            default:
                throw Fail(token, $"unexpected '{token.Describe()}'");
        }
    }

    private long ParseInteger(JinjaToken token)
    {
        string digits = token.Value.Replace("_", "");
        try
        {
            return digits.Length > 2 && digits[0] == '0' && char.ToLowerInvariant(digits[1]) is 'x' or 'o' or 'b'
                ? Convert.ToInt64(digits[2..], char.ToLowerInvariant(digits[1]) switch { 'x' => 16, 'o' => 8, _ => 2 })
                : long.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture);
        }
        catch (OverflowException)
        {
            throw Fail(token, $"the integer {token.Value} does not fit in 64 bits");
        }
    }

    /// <summary>One expression, or a tuple when commas separate several (<c>{{ a, b }}</c>, <c>set x, y = 1, 2</c>).</summary>
    private JinjaExpr ParseTuple(bool simplified = false, bool withCondexpr = true, string[]? extraEnd = null, bool explicitParentheses = false, bool withNamespace = false)
    {
        int line = Current.Line;
        var items = new List<JinjaExpr>();
        bool isTuple = false;
        while (true)
        {
            if (items.Count > 0)
                ExpectOperator(",");
            if (IsTupleEnd(extraEnd))
                break;
            items.Add(simplified ? ParsePrimary(withNamespace) : ParseExpression(withCondexpr));
            if (Current.IsOperator(","))
                isTuple = true;
            else
                break;
        }
        if (!isTuple)
        {
            if (items.Count > 0)
                return items[0];
            if (!explicitParentheses)
                throw Fail(Current, $"Expected an expression, got '{Current.Describe()}'");
        }
        return new ListExpr(items, IsTuple: true, line);
    }

    private bool IsTupleEnd(string[]? extraEnd) =>
        Current.Kind is JinjaTokenKind.VariableEnd or JinjaTokenKind.BlockEnd || Current.IsOperator(")")
        || (extraEnd is not null && Current.Kind == JinjaTokenKind.Name && extraEnd.Contains(Current.Value));

    private ListExpr ParseList()
    {
        int line = ExpectOperator("[").Line;
        var items = new List<JinjaExpr>();
        while (!Current.IsOperator("]"))
        {
            if (items.Count > 0)
                ExpectOperator(",");
            if (Current.IsOperator("]"))
                break;
            items.Add(ParseExpression());
        }
        ExpectOperator("]");
        return new ListExpr(items, IsTuple: false, line);
    }

    private DictExpr ParseDict()
    {
        int line = ExpectOperator("{").Line;
        var items = new List<(JinjaExpr, JinjaExpr)>();
        while (!Current.IsOperator("}"))
        {
            if (items.Count > 0)
                ExpectOperator(",");
            if (Current.IsOperator("}"))
                break;
            var key = ParseExpression();
            ExpectOperator(":");
            items.Add((key, ParseExpression()));
        }
        ExpectOperator("}");
        return new DictExpr(items, line);
    }

    private JinjaExpr ParsePostfix(JinjaExpr node) =>
        LeftChain(node, () => Current.IsOperator(".") || Current.IsOperator("[") || Current.IsOperator("("),
            left => Current.IsOperator("(") ? ParseCall(left) : ParseSubscript(left));

    private JinjaExpr ParseFilterExpr(JinjaExpr node) =>
        LeftChain(node, () => Current.IsOperator("|") || Current.IsName("is") || Current.IsOperator("("),
            left => Current.IsOperator("|") ? ParseFilterChain(left)[^1] : Current.IsName("is") ? ParseTest(left) : ParseCall(left));

    private JinjaExpr ParseSubscript(JinjaExpr node)
    {
        var token = Next();
        if (token.IsOperator("."))
        {
            var attribute = Next();
            if (attribute.Kind == JinjaTokenKind.Name)
                return new AttributeExpr(node, attribute.Value, token.Line);
            if (attribute.Kind != JinjaTokenKind.Integer)
                throw Fail(attribute, "expected name or number");
            return new ItemExpr(node, new ConstExpr(JinjaValue.From(ParseInteger(attribute)), attribute.Line), token.Line);
        }
        var args = new List<JinjaExpr>();
        while (!Current.IsOperator("]"))
        {
            if (args.Count > 0)
                ExpectOperator(",");
            args.Add(ParseSubscribed());
        }
        ExpectOperator("]");
        return new ItemExpr(node, args.Count == 1 ? args[0] : new ListExpr(args, IsTuple: true, token.Line), token.Line);
    }

    private JinjaExpr ParseSubscribed()
    {
        int line = Current.Line;
        JinjaExpr? start = null;
        if (!Current.IsOperator(":"))
        {
            var node = ParseExpression();
            if (!Current.IsOperator(":"))
                return node;
            start = node;
        }
        Next(); // the first ':'
        JinjaExpr? stop = Current.IsOperator(":") || Current.IsOperator("]") || Current.IsOperator(",") ? null : ParseExpression();
        JinjaExpr? step = null;
        if (SkipOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(","))
            step = ParseExpression();
        return new SliceExpr(start, stop, step, line);
    }

    private (List<JinjaExpr> Args, List<(string, JinjaExpr)> Keywords) ParseCallArgs()
    {
        var open = ExpectOperator("(");
        var args = new List<JinjaExpr>();
        var keywords = new List<(string, JinjaExpr)>();
        while (!Current.IsOperator(")"))
        {
            if (args.Count + keywords.Count > 0)
            {
                ExpectOperator(",");
                if (Current.IsOperator(")"))
                    break;
            }
            if (Current.IsOperator("*") || Current.IsOperator("**"))
                throw Fail(Current, "*args and **kwargs in calls are not supported");
            if (Current.Kind == JinjaTokenKind.Name && Look.IsOperator("="))
            {
                string key = Next().Value;
                Next();
                keywords.Add((key, ParseExpression()));
            }
            else
            {
                if (keywords.Count > 0)
                    throw Fail(open, "invalid syntax for function call expression");
                args.Add(ParseExpression());
            }
        }
        ExpectOperator(")");
        return (args, keywords);
    }

    private CallExpr ParseCall(JinjaExpr callee)
    {
        int line = Current.Line;
        var (args, keywords) = ParseCallArgs();
        return new CallExpr(callee, args, keywords, line);
    }

    /// <summary><c>| name(args) | name ...</c>: each filter applied to the one before (the first to <paramref name="value"/>).</summary>
    private List<FilterExpr> ParseFilterChain(JinjaExpr? value = null, bool startInline = false)
    {
        var chain = new List<FilterExpr>();
        int depth = _depth;
        while (Current.IsOperator("|") || startInline)
        {
            Chain();
            if (!startInline)
                Next();
            startInline = false;
            var token = ExpectName();
            string name = DottedName(token.Value);
            if (!JinjaFilters.Exists(name))
                throw Fail(token, $"No filter named '{name}'.");
            var (args, keywords) = Current.IsOperator("(") ? ParseCallArgs() : ([], []);
            var filter = new FilterExpr(chain.Count > 0 ? chain[^1] : value, name, args, keywords, token.Line);
            chain.Add(filter);
        }
        _depth = depth;
        return chain;
    }

    private string DottedName(string name)
    {
        while (SkipOperator("."))
            name += "." + ExpectName().Value;
        return name;
    }

    private JinjaExpr ParseTest(JinjaExpr node)
    {
        int line = Next().Line; // 'is'
        bool negated = SkipName("not");
        var token = ExpectName();
        string name = DottedName(token.Value);
        if (!JinjaTestFunctions.Exists(name))
            throw Fail(token, $"No test named '{name}'.");
        List<JinjaExpr> args = [];
        List<(string, JinjaExpr)> keywords = [];
        if (Current.IsOperator("("))
        {
            (args, keywords) = ParseCallArgs();
        }
        else if ((Current.Kind is JinjaTokenKind.Name or JinjaTokenKind.String or JinjaTokenKind.Integer or JinjaTokenKind.Float
                     || Current.IsOperator("[") || Current.IsOperator("{"))
                 && !Current.IsName("else") && !Current.IsName("or") && !Current.IsName("and"))
        {
            if (Current.IsName("is"))
                throw Fail(Current, "You cannot chain multiple tests with is");
            args = [ParsePostfix(ParsePrimary())];
        }
        JinjaExpr test = new TestExpr(node, name, args, keywords, line);
        return negated ? new NotExpr(test, line) : test;
    }
}
