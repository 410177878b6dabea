using System;
using System.Globalization;
using System.Text;

namespace SpecializedInference.Generators.Emission;

/// <summary>An indenting text writer for generated C#; always LF line endings and invariant culture.</summary>
internal sealed class SourceWriter
{
    private readonly StringBuilder _sb = new();
    private int _indent;

    public SourceWriter Line(string text = "")
    {
        if (text.Length > 0) _sb.Append(' ', _indent * 4).Append(text);
        _sb.Append('\n');
        return this;
    }

    public SourceWriter Open(string text)
    {
        Line(text);
        Line("{");
        _indent++;
        return this;
    }

    public SourceWriter Close(string suffix = "")
    {
        _indent--;
        return Line("}" + suffix);
    }

    public IDisposable Block(string text)
    {
        Open(text);
        return new Closer(this);
    }

    /// <summary>A bare <c>{ }</c> scope (unrolled loop bodies reuse local names in their own scopes).</summary>
    public IDisposable Scope()
    {
        Line("{");
        _indent++;
        return new Closer(this);
    }

    public override string ToString() => _sb.ToString();

    public static string Int(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary><paramref name="x"/> / <paramref name="n"/> for a non-negative <paramref name="x"/>: x itself for n = 1,
    /// a shift when n is a power of two. Written as a signed division, ptxas expands it into a reciprocal-multiply
    /// sequence of about a dozen instructions instead.</summary>
    public static string Div(string x, int n) => n == 1 ? x : IsPowerOfTwo(n) ? $"({Paren(x)} >> {Int(Log2(n))})" : $"{Paren(x)} / {Int(n)}";

    /// <summary><paramref name="x"/> % <paramref name="n"/> for a non-negative <paramref name="x"/>: 0 for n = 1, a mask
    /// when n is a power of two (see <see cref="Div"/>).</summary>
    public static string Mod(string x, int n) => n == 1 ? "0" : IsPowerOfTwo(n) ? $"({Paren(x)} & {Int(n - 1)})" : $"{Paren(x)} % {Int(n)}";

    /// <summary><paramref name="expr"/> + <paramref name="k"/>, or <paramref name="expr"/> itself for k = 0.</summary>
    public static string Plus(string expr, int k) => k == 0 ? expr : $"{expr} + {Int(k)}";

    /// <summary><paramref name="expr"/>, parenthesized when a top-level + or - would bind looser than what follows.</summary>
    public static string Paren(string expr)
    {
        int depth = 0;
        foreach (char ch in expr)
        {
            if (ch == '(') depth++;
            else if (ch == ')') depth--;
            else if (depth == 0 && (ch == '+' || ch == '-')) return $"({expr})";
        }
        return expr;
    }

    private static bool IsPowerOfTwo(int n) => n > 0 && (n & (n - 1)) == 0;

    /// <summary>log2 of a power of two.</summary>
    public static int Log2(int powerOfTwo)
    {
        int shift = 0;
        while ((1 << shift) < powerOfTwo) shift++;
        return shift;
    }

    /// <summary>A float literal that round-trips, whatever the build machine's culture.</summary>
    public static string Float(double value) => ((float)value).ToString("R", CultureInfo.InvariantCulture) switch
    {
        var s when s.Contains("E") || s.Contains(".") => s + "f",
        var s => s + ".0f",
    };

    public static string Double(double value) => value.ToString("R", CultureInfo.InvariantCulture) switch
    {
        var s when s.Contains("E") || s.Contains(".") => s + "d",
        var s => s + ".0d",
    };

    public static string Bool(bool value) => value ? "true" : "false";

    private sealed class Closer : IDisposable
    {
        private readonly SourceWriter _w;
        public Closer(SourceWriter w) => _w = w;
        public void Dispose() => _w.Close();
    }
}
