using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace SpecializedInference.Generators.Json;

/// <summary>Thrown by <see cref="JsonReader"/> with the offset of the offending character.</summary>
internal sealed class JsonSyntaxException : Exception
{
    public JsonSyntaxException(string message, int offset) : base(message) => Offset = offset;
    public int Offset { get; }
}

/// <summary>
/// A small strict JSON (RFC 8259) reader that keeps character offsets. A compiler process cannot rely on
/// System.Text.Json being loadable from a netstandard2.0 analyzer, and we need positions anyway.
/// </summary>
internal sealed class JsonReader
{
    private const int MaxDepth = 64;
    private readonly string _text;
    private int _pos;

    private JsonReader(string text) => _text = text;

    public static JsonNode Parse(string text)
    {
        var reader = new JsonReader(text);
        reader.SkipWhitespace();
        var root = reader.ReadValue(0);
        reader.SkipWhitespace();
        if (reader._pos < text.Length)
            throw new JsonSyntaxException($"unexpected '{text[reader._pos]}' after the end of the JSON document", reader._pos);
        return root;
    }

    private JsonNode ReadValue(int depth)
    {
        if (depth > MaxDepth) throw new JsonSyntaxException($"nesting deeper than {MaxDepth} levels", _pos);
        if (_pos >= _text.Length) throw new JsonSyntaxException("unexpected end of file, expected a value", _pos);
        char c = _text[_pos];
        switch (c)
        {
            case '{': return ReadObject(depth);
            case '[': return ReadArray(depth);
            case '"':
            {
                int start = _pos;
                string s = ReadString();
                return new JsonNode(JsonKind.String, start, _pos) { Text = s };
            }
            case 't': return ReadLiteral("true", JsonKind.True);
            case 'f': return ReadLiteral("false", JsonKind.False);
            case 'n': return ReadLiteral("null", JsonKind.Null);
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber();
                throw new JsonSyntaxException($"unexpected '{c}', expected a value", _pos);
        }
    }

    private JsonNode ReadObject(int depth)
    {
        var node = new JsonNode(JsonKind.Object, _pos, _pos) { Members = new List<JsonMember>() };
        _pos++; // {
        SkipWhitespace();
        if (Peek() == '}') { _pos++; node.End = _pos; return node; }
        while (true)
        {
            SkipWhitespace();
            if (Peek() != '"') throw new JsonSyntaxException("expected a property name in double quotes", _pos);
            int keyStart = _pos;
            string key = ReadString();
            int keyEnd = _pos;
            SkipWhitespace();
            if (Peek() != ':') throw new JsonSyntaxException($"expected ':' after property name \"{key}\"", _pos);
            _pos++;
            SkipWhitespace();
            var value = ReadValue(depth + 1);
            foreach (var existing in node.Members)
                if (existing.Key == key) throw new JsonSyntaxException($"duplicate property \"{key}\"", keyStart);
            node.Members.Add(new JsonMember(key, keyStart, keyEnd, value));
            SkipWhitespace();
            char c = Peek();
            if (c == ',') { _pos++; continue; }
            if (c == '}') { _pos++; node.End = _pos; return node; }
            throw new JsonSyntaxException("expected ',' or '}' in object", _pos);
        }
    }

    private JsonNode ReadArray(int depth)
    {
        var node = new JsonNode(JsonKind.Array, _pos, _pos) { Items = new List<JsonNode>() };
        _pos++; // [
        SkipWhitespace();
        if (Peek() == ']') { _pos++; node.End = _pos; return node; }
        while (true)
        {
            SkipWhitespace();
            node.Items.Add(ReadValue(depth + 1));
            SkipWhitespace();
            char c = Peek();
            if (c == ',') { _pos++; continue; }
            if (c == ']') { _pos++; node.End = _pos; return node; }
            throw new JsonSyntaxException("expected ',' or ']' in array", _pos);
        }
    }

    private JsonNode ReadLiteral(string word, JsonKind kind)
    {
        if (string.CompareOrdinal(_text, _pos, word, 0, word.Length) != 0)
            throw new JsonSyntaxException($"unexpected '{_text[_pos]}', expected a value", _pos);
        var node = new JsonNode(kind, _pos, _pos + word.Length);
        _pos += word.Length;
        return node;
    }

    private JsonNode ReadNumber()
    {
        int start = _pos;
        if (Peek() == '-') _pos++;
        if (Peek() == '0') _pos++;
        else if (IsDigit(Peek())) while (IsDigit(Peek())) _pos++;
        else throw new JsonSyntaxException("invalid number", start);
        if (Peek() == '.')
        {
            _pos++;
            if (!IsDigit(Peek())) throw new JsonSyntaxException("invalid number: expected a digit after '.'", _pos);
            while (IsDigit(Peek())) _pos++;
        }
        if (Peek() == 'e' || Peek() == 'E')
        {
            _pos++;
            if (Peek() == '+' || Peek() == '-') _pos++;
            if (!IsDigit(Peek())) throw new JsonSyntaxException("invalid number: expected a digit in the exponent", _pos);
            while (IsDigit(Peek())) _pos++;
        }
        return new JsonNode(JsonKind.Number, start, _pos) { Text = _text.Substring(start, _pos - start) };
    }

    private string ReadString()
    {
        int start = _pos;
        _pos++; // opening quote
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _text.Length) throw new JsonSyntaxException("unterminated string", start);
            char c = _text[_pos++];
            if (c == '"') return sb.ToString();
            if (c < 0x20) throw new JsonSyntaxException("control character in string", _pos - 1);
            if (c != '\\') { sb.Append(c); continue; }
            if (_pos >= _text.Length) throw new JsonSyntaxException("unterminated string", start);
            char e = _text[_pos++];
            switch (e)
            {
                case '"': sb.Append('"'); break;
                case '\\': sb.Append('\\'); break;
                case '/': sb.Append('/'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case 'n': sb.Append('\n'); break;
                case 'r': sb.Append('\r'); break;
                case 't': sb.Append('\t'); break;
                case 'u':
                    if (_pos + 4 > _text.Length ||
                        !int.TryParse(_text.Substring(_pos, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out int code))
                        throw new JsonSyntaxException("invalid \\u escape", _pos - 2);
                    sb.Append((char)code);
                    _pos += 4;
                    break;
                default: throw new JsonSyntaxException($"invalid escape '\\{e}'", _pos - 2);
            }
        }
    }

    private void SkipWhitespace()
    {
        while (_pos < _text.Length)
        {
            char c = _text[_pos];
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r') _pos++;
            else break;
        }
    }

    private char Peek() => _pos < _text.Length ? _text[_pos] : '\0';

    private static bool IsDigit(char c) => c >= '0' && c <= '9';
}
