using System.Text;

namespace SpecializedInference.Text.Jinja;

internal enum JinjaTokenKind
{
    Data,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    Eof,
}

/// <summary>One token: its kind, its text (a string literal's unescaped value) and where it starts (1-based).</summary>
internal readonly record struct JinjaToken(JinjaTokenKind Kind, string Value, int Line, int Column)
{
    public bool Is(JinjaTokenKind kind, string value) => Kind == kind && Value == value;

    public bool IsName(string name) => Is(JinjaTokenKind.Name, name);

    public bool IsOperator(string op) => Is(JinjaTokenKind.Operator, op);

    /// <summary>How jinja2 names a token in its messages.</summary>
    public string Describe() => Kind switch
    {
        JinjaTokenKind.Eof => "end of template",
        JinjaTokenKind.BlockEnd => "end of statement block",
        JinjaTokenKind.VariableEnd => "end of print statement",
        JinjaTokenKind.BlockBegin => "begin of statement block",
        JinjaTokenKind.VariableBegin => "begin of print statement",
        JinjaTokenKind.Data => "template data",
        JinjaTokenKind.String => "string",
        JinjaTokenKind.Integer => "integer",
        JinjaTokenKind.Float => "float",
        _ => Value,
    };
}

/// <summary>
/// Splits template source into tokens as jinja2's lexer does: text, <c>{{ }}</c>, <c>{% %}</c>, <c>{# #}</c> and
/// <c>{% raw %}</c>, with whitespace control (<c>{%-</c> strips the whitespace before a tag, <c>-%}</c> the whitespace
/// after it, <c>+</c> keeps it) and the environment's <c>trim_blocks</c> and <c>lstrip_blocks</c>. Newlines are
/// normalized to <c>\n</c> and one trailing newline is dropped (jinja2's <c>keep_trailing_newline=False</c>).
/// </summary>
internal sealed class JinjaLexer
{
    private static readonly string[] Operators =
        ["//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[", "]", "(", ")", "{", "}", ">", "<", "=", ".", ":", "|", ",", ";"];

    private readonly string _source;
    private readonly string _sourceName;
    private readonly JinjaOptions _options;
    private readonly List<int> _lineStarts = [0];
    private readonly List<JinjaToken> _tokens = new();
    private int _pos;
    private bool _lineStarting = true; // whether the last thing consumed ended a line (lstrip_blocks needs it)

    private JinjaLexer(string source, string sourceName, JinjaOptions options)
    {
        _source = Normalize(source);
        _sourceName = sourceName;
        _options = options;
        for (int i = 0; i < _source.Length; i++)
            if (_source[i] == '\n')
                _lineStarts.Add(i + 1);
    }

    public static List<JinjaToken> Tokenize(string source, string sourceName, JinjaOptions options)
    {
        var lexer = new JinjaLexer(source, sourceName, options);
        lexer.Run();
        return lexer._tokens;
    }

    private static string Normalize(string source)
    {
        string text = source.Replace("\r\n", "\n").Replace('\r', '\n');
        return text.EndsWith('\n') ? text[..^1] : text;
    }

    private (int Line, int Column) Where(int position)
    {
        int line = _lineStarts.BinarySearch(position);
        if (line < 0)
            line = ~line - 1;
        return (line + 1, position - _lineStarts[line] + 1);
    }

    private JinjaSyntaxException Error(int position, string problem)
    {
        var (line, column) = Where(position);
        return new JinjaSyntaxException(_sourceName, line, column, problem);
    }

    private void Emit(JinjaTokenKind kind, string value, int position)
    {
        var (line, column) = Where(position);
        _tokens.Add(new JinjaToken(kind, value, line, column));
    }

    private bool At(int position, string text) => string.CompareOrdinal(_source, position, text, 0, text.Length) == 0;

    private void Run()
    {
        while (_pos < _source.Length)
        {
            int tag = _source.IndexOf('{', _pos);
            while (tag >= 0 && (tag + 1 >= _source.Length || _source[tag + 1] is not ('{' or '%' or '#')))
                tag = _source.IndexOf('{', tag + 1);
            if (tag < 0)
            {
                Emit(JinjaTokenKind.Data, _source[_pos..], _pos);
                break;
            }

            char kind = _source[tag + 1];
            char sign = tag + 2 < _source.Length && _source[tag + 2] is '-' or '+' ? _source[tag + 2] : '\0';
            int inside = tag + 2 + (sign == '\0' ? 0 : 1);
            string text = StripBeforeTag(_source[_pos..tag], sign, lstripAllowed: kind != '{');
            if (text.Length > 0)
                Emit(JinjaTokenKind.Data, text, _pos);

            if (kind == '#')
            {
                SkipComment(tag, inside);
            }
            else if (kind == '%' && RawBeginEnd(inside) is { } rawBody)
            {
                Raw(rawBody);
            }
            else
            {
                Emit(kind == '{' ? JinjaTokenKind.VariableBegin : JinjaTokenKind.BlockBegin, _source.Substring(tag, inside - tag), tag);
                _pos = inside;
                _lineStarting = false;
                Tag(block: kind == '%');
            }
        }
        Emit(JinjaTokenKind.Eof, "", _source.Length);
    }

    // The text before a tag: all trailing whitespace goes for '-'; for lstrip_blocks, the spaces between the line's
    // start and a block or comment tag go unless '+' keeps them.
    private string StripBeforeTag(string text, char sign, bool lstripAllowed)
    {
        if (sign == '-')
            return PythonText.Strip(text, null, left: false);
        if (sign == '+' || !_options.LstripBlocks || !lstripAllowed)
            return text;
        int lineStart = text.LastIndexOf('\n') + 1;
        if ((lineStart > 0 || _lineStarting) && lineStart < text.Length && PythonText.IsSpace(text[lineStart..]))
            return text[..lineStart];
        return text;
    }

    // After a closing '-%}' (or '-}}', '-#}') all whitespace goes; after '%}' or '#}' one newline with trim_blocks.
    private int AfterEnd(int end, char sign, bool trimmable)
    {
        if (sign == '-')
            while (end < _source.Length && PythonText.IsSpace(_source[end]))
                end++;
        else if (sign != '+' && trimmable && _options.TrimBlocks && end < _source.Length && _source[end] == '\n')
            end++;
        _lineStarting = end > 0 && _source[end - 1] == '\n';
        return end;
    }

    private void SkipComment(int tag, int inside)
    {
        int close = _source.IndexOf("#}", inside, StringComparison.Ordinal);
        if (close < 0)
            throw Error(tag, "Missing end of comment tag");
        char sign = close - 1 >= inside && _source[close - 1] is '-' or '+' ? _source[close - 1] : '\0';
        _pos = AfterEnd(close + 2, sign, trimmable: true);
    }

    // {% raw %} (with optional signs and spaces): the position after its '%}', where the raw text starts.
    private int? RawBeginEnd(int inside)
    {
        int p = SkipSpaces(inside);
        if (!At(p, "raw"))
            return null;
        p = SkipSpaces(p + 3);
        if (At(p, "-%}"))
        {
            int end = p + 3;
            while (end < _source.Length && PythonText.IsSpace(_source[end]))
                end++;
            _lineStarting = end > 0 && _source[end - 1] == '\n';
            return end;
        }
        if (At(p, "%}"))
        {
            _lineStarting = false;
            return p + 2;
        }
        return null;
    }

    private int SkipSpaces(int p)
    {
        while (p < _source.Length && PythonText.IsSpace(_source[p]))
            p++;
        return p;
    }

    private void Raw(int body)
    {
        for (int at = _source.IndexOf("{%", body, StringComparison.Ordinal); at >= 0; at = _source.IndexOf("{%", at + 2, StringComparison.Ordinal))
        {
            char sign = at + 2 < _source.Length && _source[at + 2] is '-' or '+' ? _source[at + 2] : '\0';
            int p = SkipSpaces(at + 2 + (sign == '\0' ? 0 : 1));
            if (!At(p, "endraw"))
                continue;
            p = SkipSpaces(p + 6);
            char endSign = At(p, "-%}") ? '-' : At(p, "+%}") ? '+' : At(p, "%}") ? '\0' : 'x';
            if (endSign == 'x')
                continue;
            string text = StripBeforeTag(_source[body..at], sign, lstripAllowed: true);
            if (text.Length > 0)
                Emit(JinjaTokenKind.Data, text, body);
            _pos = AfterEnd(p + (endSign == '\0' ? 2 : 3), endSign, trimmable: true);
            return;
        }
        throw Error(body, "Missing end of raw directive");
    }

    private void Tag(bool block)
    {
        var open = new Stack<char>();
        while (true)
        {
            if (_pos >= _source.Length)
                return; // the parser says what it was looking for
            if (open.Count == 0 && TagEnd(block))
                return;
            char c = _source[_pos];
            if (PythonText.IsSpace(c))
            {
                _pos++;
            }
            else if (char.IsAsciiDigit(c))
            {
                Number();
            }
            else if (c == '_' || char.IsLetter(c))
            {
                int start = _pos;
                while (_pos < _source.Length && (_source[_pos] == '_' || char.IsLetterOrDigit(_source[_pos])))
                    _pos++;
                Emit(JinjaTokenKind.Name, _source[start.._pos], start);
            }
            else if (c is '\'' or '"' && StringLiteral() is { } literal)
            {
                Emit(JinjaTokenKind.String, literal.Value, literal.Start);
            }
            else if (Operators.FirstOrDefault(op => At(_pos, op)) is { } op)
            {
                if (op is "(" or "[" or "{")
                    open.Push(op switch { "(" => ')', "[" => ']', _ => '}' });
                else if (op is ")" or "]" or "}")
                {
                    if (open.Count == 0)
                        throw Error(_pos, $"unexpected '{op}'");
                    char expected = open.Pop();
                    if (expected != op[0])
                        throw Error(_pos, $"unexpected '{op}', expected '{expected}'");
                }
                Emit(JinjaTokenKind.Operator, op, _pos);
                _pos += op.Length;
            }
            else
            {
                throw Error(_pos, $"unexpected char {PythonText.StrRepr(c.ToString())} at {_pos}");
            }
        }
    }

    private bool TagEnd(bool block)
    {
        int start = _pos;
        char sign;
        int length;
        if (block && At(_pos, "+%}"))
            (sign, length) = ('+', 3);
        else if (At(_pos, block ? "-%}" : "-}}"))
            (sign, length) = ('-', 3);
        else if (At(_pos, block ? "%}" : "}}"))
            (sign, length) = ('\0', 2);
        else
            return false;
        _pos = AfterEnd(_pos + length, sign, trimmable: block);
        Emit(block ? JinjaTokenKind.BlockEnd : JinjaTokenKind.VariableEnd, _source.Substring(start, length), start);
        return true;
    }

    // jinja2's integer and float literals: 1_000, 0x1F, 0o17, 0b101, 3.25, 1e3, 2.5E-3.
    private void Number()
    {
        int start = _pos;
        if (_source[_pos] == '0' && _pos + 1 < _source.Length && char.ToLowerInvariant(_source[_pos + 1]) is 'x' or 'o' or 'b')
        {
            char radix = char.ToLowerInvariant(_source[_pos + 1]);
            int p = _pos + 2;
            Func<char, bool> digit = radix switch { 'x' => char.IsAsciiHexDigit, 'o' => ch => ch is >= '0' and <= '7', _ => ch => ch is '0' or '1' };
            int digits = 0;
            while (p < _source.Length && (digit(_source[p]) || (_source[p] == '_' && p + 1 < _source.Length && digit(_source[p + 1]))))
            {
                if (_source[p] != '_')
                    digits++;
                p++;
            }
            if (digits > 0)
            {
                _pos = p;
                Emit(JinjaTokenKind.Integer, _source[start.._pos], start);
                return;
            }
        }

        int end = Digits(_pos);
        bool isFloat = false;
        if (end < _source.Length && _source[end] == '.' && end + 1 < _source.Length && char.IsAsciiDigit(_source[end + 1]))
        {
            end = Digits(end + 1);
            isFloat = true;
        }
        if (end < _source.Length && _source[end] is 'e' or 'E')
        {
            int p = end + 1;
            if (p < _source.Length && _source[p] is '+' or '-')
                p++;
            if (p < _source.Length && char.IsAsciiDigit(_source[p]))
            {
                end = Digits(p);
                isFloat = true;
            }
        }
        // A decimal integer with leading zeros ("0123") is "0" then "123", as in jinja2.
        if (!isFloat && _source[start] == '0')
        {
            end = start + 1;
            while (true)
            {
                if (end < _source.Length && _source[end] == '0')
                    end++;
                else if (end + 1 < _source.Length && _source[end] == '_' && _source[end + 1] == '0')
                    end += 2;
                else
                    break;
            }
        }
        _pos = end;
        Emit(isFloat ? JinjaTokenKind.Float : JinjaTokenKind.Integer, _source[start..end], start);
    }

    private int Digits(int p)
    {
        while (p < _source.Length && (char.IsAsciiDigit(_source[p]) || (_source[p] == '_' && p + 1 < _source.Length && char.IsAsciiDigit(_source[p + 1]))))
            p++;
        return p;
    }

    // A quoted string with Python's escapes (\n, \t, \\, \', \xhh, \uhhhh, \Uhhhhhhhh, octal); an unknown escape
    // keeps its backslash. Null when it is not closed: jinja2 then fails on the quote character.
    private (string Value, int Start)? StringLiteral()
    {
        int start = _pos;
        char quote = _source[start];
        var value = new StringBuilder();
        int p = start + 1;
        while (p < _source.Length && _source[p] != quote)
        {
            char c = _source[p];
            if (c != '\\')
            {
                value.Append(c);
                p++;
                continue;
            }
            if (p + 1 >= _source.Length)
                return null;
            char e = _source[p + 1];
            p += 2;
            switch (e)
            {
                case '\n': break;
                case '\\': value.Append('\\'); break;
                case '\'': value.Append('\''); break;
                case '"': value.Append('"'); break;
                case 'a': value.Append('\a'); break;
                case 'b': value.Append('\b'); break;
                case 'f': value.Append('\f'); break;
                case 'n': value.Append('\n'); break;
                case 'r': value.Append('\r'); break;
                case 't': value.Append('\t'); break;
                case 'v': value.Append('\v'); break;
                case 'x' or 'u' or 'U':
                    int width = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (p + width > _source.Length || !IsHex(p, width))
                        throw Error(p - 2, $"truncated \\{e}{new string('X', width)} escape in a string literal");
                    int code = Convert.ToInt32(_source.Substring(p, width), 16);
                    if (code > 0x10FFFF)
                        throw Error(p - 2, "illegal Unicode character in a string literal");
                    PythonText.AppendCodePoint(value, code);
                    p += width;
                    break;
                case >= '0' and <= '7':
                    int octal = e - '0';
                    for (int n = 0; n < 2 && p < _source.Length && _source[p] is >= '0' and <= '7'; n++, p++)
                        octal = octal * 8 + (_source[p] - '0');
                    PythonText.AppendCodePoint(value, octal);
                    break;
                default:
                    value.Append('\\').Append(e);
                    break;
            }
        }
        if (p >= _source.Length)
            return null;
        _pos = p + 1;
        return (value.ToString(), start);
    }

    private bool IsHex(int p, int width)
    {
        for (int i = p; i < p + width; i++)
            if (!char.IsAsciiHexDigit(_source[i]))
                return false;
        return true;
    }
}
