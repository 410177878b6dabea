using System.Text.Json;
using SpecializedInference.Tests.Model;
using SpecializedInference.Text.Jinja;

namespace SpecializedInference.Tests.Text;

/// <summary>
/// The Jinja interpreter against renderings by the real jinja2 (tests/reference/chat-templates/golden.json, made
/// by make_golden.py with transformers' environment): published chat templates over several conversations, and
/// one case per language feature, including the failures (the same exception kind, message and line as jinja2's).
/// </summary>
public sealed class JinjaTemplateTests
{
    private const string Source = "golden-template";

    private sealed record GoldenCase(string Name, string Template, string Environment, JsonElement Variables, string? Expected, JsonElement? Error);

    private static readonly Lazy<(Dictionary<string, string> Templates, Dictionary<string, GoldenCase> Cases, DateTime Now)> Golden = new(() =>
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.ChatTemplates, "golden.json")));
        var root = doc.RootElement;
        var templates = root.GetProperty("templates").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        var cases = root.GetProperty("cases").EnumerateArray().Select(c => new GoldenCase(
            c.GetProperty("name").GetString()!,
            c.GetProperty("template").GetString()!,
            c.GetProperty("environment").GetString()!,
            c.GetProperty("variables").Clone(),
            c.TryGetProperty("expected", out var e) ? e.GetString() : null,
            c.TryGetProperty("error", out var error) ? error.Clone() : null)).ToDictionary(c => c.Name);
        return (templates, cases, DateTime.Parse(root.GetProperty("now").GetString()!, System.Globalization.CultureInfo.InvariantCulture));
    });

    public static IEnumerable<object[]> Cases() => Golden.Value.Cases.Keys.Select(name => new object[] { name });

    private static JinjaOptions OptionsFor(string environment) => environment switch
    {
        "hf" => JinjaOptions.Default with { Now = () => Golden.Value.Now },
        "plain" => JinjaOptions.Default with { TrimBlocks = false, LstripBlocks = false, Now = () => Golden.Value.Now },
        _ => throw new ArgumentException(environment),
    };

    private static Dictionary<string, JinjaValue> Variables(JsonElement json) =>
        json.EnumerateObject().ToDictionary(p => p.Name, p => JinjaValue.FromJson(p.Value));

    [Theory]
    [MemberData(nameof(Cases))]
    public void RendersLikeJinja2(string name)
    {
        var golden = Golden.Value.Cases[name];
        string source = Golden.Value.Templates[golden.Template];
        var options = OptionsFor(golden.Environment);
        if (golden.Expected is { } expected)
        {
            Assert.Equal(expected, JinjaTemplate.Parse(source, Source, options).Render(Variables(golden.Variables)));
            return;
        }

        var error = golden.Error!.Value;
        string type = error.GetProperty("type").GetString()!;
        string message = error.GetProperty("message").GetString()!;
        int? line = error.GetProperty("line").ValueKind == JsonValueKind.Number ? error.GetProperty("line").GetInt32() : null;
        if (type is "TemplateSyntaxError" or "TemplateAssertionError" or "SyntaxError")
        {
            var e = Assert.Throws<JinjaSyntaxException>(() => JinjaTemplate.Parse(source, Source, options));
            Assert.StartsWith($"{Source}: line {e.Line}, column {e.Column}: ", e.Message);
            if (line is { } expectedLine)
                Assert.True(expectedLine == e.Line, $"jinja2 says line {expectedLine} ({message}); got {e.Message}");
            // A Python SyntaxError (jinja2 found it compiling the template to Python) names a line of that Python.
            if (type == "SyntaxError")
                Assert.StartsWith(e.Problem, message);
            else
                Assert.Equal(message, e.Problem);
            return;
        }

        var template = JinjaTemplate.Parse(source, Source, options);
        var failure = Assert.ThrowsAny<JinjaRenderException>(() => template.Render(Variables(golden.Variables)));
        if (type == "TemplateError")
        {
            var raised = Assert.IsType<JinjaRaisedException>(failure);
            Assert.Equal(message, raised.Message);
        }
        else
        {
            Assert.IsNotType<JinjaRaisedException>(failure);
            Assert.Equal($"{Source}: line {failure.Line}: {failure.Problem}", failure.Message);
            // Sorting compares in another order than Python's timsort, so the operand types may come swapped.
            if (message.StartsWith("'<' not supported between instances of", StringComparison.Ordinal))
                Assert.StartsWith("'<' not supported between instances of", failure.Problem);
            else
                Assert.Equal(message, failure.Problem);
        }
        if (line is { } at)
            Assert.True(at == failure.Line, $"jinja2 says line {at} ({message}); got line {failure.Line}: {failure.Message}");
    }

    private static string Render(string source, JinjaOptions? options = null, Dictionary<string, JinjaValue>? variables = null) =>
        JinjaTemplate.Parse(source, "t.jinja", options).Render(variables ?? new Dictionary<string, JinjaValue>());

    [Theory]
    [InlineData("a\n{{ 1 + }}", 2, 8, "unexpected 'end of print statement'")]
    [InlineData("{% if x %}\n  {% for y in z %}\n{% endif %}", 3, 4, "Encountered unknown tag 'endif'. You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for 'endfor' or 'else'. The innermost block that needs to be closed is 'for'.")]
    [InlineData("{{ 'a' | nope }}", 1, 10, "No filter named 'nope'.")]
    [InlineData("{% set x = 1 %}{{ x is nope }}", 1, 24, "No test named 'nope'.")]
    [InlineData("\n\n   {{ x ]] }}", 3, 9, "unexpected ']'")]
    [InlineData("{{ x }}{% for %}", 1, 15, "Expected an expression, got 'end of statement block'")]
    [InlineData("{% set x = 99999999999999999999 %}", 1, 12, "the integer 99999999999999999999 does not fit in 64 bits")]
    public void SyntaxErrorsNameTheSourceLineColumnAndWhatWasExpected(string source, int line, int column, string problem)
    {
        var e = Assert.Throws<JinjaSyntaxException>(() => JinjaTemplate.Parse(source, "t.jinja"));
        Assert.Equal($"t.jinja: line {line}, column {column}: {problem}", e.Message);
        Assert.Equal(("t.jinja", line, column, problem), (e.SourceName, e.Line, e.Column, e.Problem));
    }

    [Fact]
    public void RuntimeErrorsNameTheSourceAndLine()
    {
        var e = Assert.Throws<JinjaRenderException>(() => Render("ok\n{% for m in messages %}\n{{ m.content.text }}\n{% endfor %}",
            variables: new() { ["messages"] = JinjaValue.List([JinjaValue.Dict([KeyValuePair.Create("role", JinjaValue.From("user"))])]) }));
        Assert.Equal("t.jinja: line 3: 'dict object' has no attribute 'content'", e.Message);
        Assert.Equal(3, e.Line);
    }

    [Theory]
    [InlineData("{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(2) %}{% endfor %}{% endfor %}{% endfor %}", "the template ran more than 1000000 loop iterations")]
    [InlineData("{{ range(100001) | length }}", "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).")]
    [InlineData("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "the result would be 8388608 characters, more than the 4194304 a render may produce")]
    [InlineData("{{ 'x' * 5000000 }}", "the result would be 5000000 characters, more than the 4194304 a render may produce")]
    [InlineData("{% for i in range(100000) %}{{ 'abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz' }}{% endfor %}", "the result would be 4194320 characters, more than the 4194304 a render may produce")]
    [InlineData("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "macros call each other more than 200 levels deep")]
    [InlineData("{{ 2 ** 64 }}", "integer overflow: the result does not fit in 64 bits")]
    [InlineData("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}{{ ns.l }}", "lists and dicts would nest more than 500 levels deep")]
    [InlineData("{% set ns = namespace(d={}) %}{% for i in range(1000) %}{% set ns.d = {'d': ns.d} %}{% endfor %}", "lists and dicts would nest more than 500 levels deep")]
    [InlineData("{{ ('abc' * 1000) | replace('', 'y' * 100000) }}", "the result would be 300103000 characters, more than the 4194304 a render may produce")]
    [InlineData("{{ ('abc' * 1000).replace('', 'y' * 100000) }}", "the result would be 300103000 characters, more than the 4194304 a render may produce")]
    [InlineData("{{ ('y' * 4000000).join(['a', 'b', 'c']) }}", "the result would be 8000003 characters, more than the 4194304 a render may produce")]
    public void HostileTemplatesStopWithAClearError(string source, string problem)
    {
        var e = Assert.Throws<JinjaRenderException>(() => Render(source));
        Assert.StartsWith("t.jinja: line 1: ", e.Message);
        Assert.Equal(problem, e.Problem);
    }

    [Fact]
    public void ARenderStopsAtItsTimeBound()
    {
        var options = JinjaOptions.Default with { MaxRenderTime = TimeSpan.FromMilliseconds(200) };
        var started = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<JinjaRenderException>(() => Render("{% for i in range(100000) %}{% set s = ('x' * 4000000) ~ i %}{% endfor %}", options));
        Assert.Equal("the template ran longer than 0.2 s", e.Problem);
        Assert.True(started.Elapsed < TimeSpan.FromSeconds(5), $"{started.Elapsed}");
    }

    [Fact]
    public void DeepNestingIsASyntaxErrorNotAStackOverflow()
    {
        var e = Assert.Throws<JinjaSyntaxException>(() => JinjaTemplate.Parse("{{ " + new string('(', 10_000) + "1" + new string(')', 10_000) + " }}", "t.jinja"));
        Assert.Contains("nests more than 200 levels deep", e.Message);
        Assert.Throws<JinjaSyntaxException>(() => JinjaTemplate.Parse("{{ 1" + string.Concat(Enumerable.Repeat(" + 1", 10_000)) + " }}", "t.jinja"));
        Assert.Throws<JinjaSyntaxException>(() => JinjaTemplate.Parse("{{ x" + string.Concat(Enumerable.Repeat(" | trim", 10_000)) + " }}", "t.jinja"));
        Assert.Equal("101", Render("{{ 1" + string.Concat(Enumerable.Repeat(" + 1", 100)) + " }}"));
    }

    [Fact]
    public void StrftimeNowReadsTheLocalClockByDefault()
    {
        var before = DateTime.Now;
        string text = Render("{{ strftime_now('%Y-%m-%d %H') }}");
        var after = DateTime.Now;
        Assert.Contains(text, new[] { before.ToString("yyyy-MM-dd HH", System.Globalization.CultureInfo.InvariantCulture), after.ToString("yyyy-MM-dd HH", System.Globalization.CultureInfo.InvariantCulture) });
    }

    [Fact]
    public void JsonNumbersKeepPythonsIntAndFloat()
    {
        using var doc = JsonDocument.Parse("""{"i": 3, "f": 3.0, "e": 1e2, "big": 1e400}""");
        var variables = doc.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => JinjaValue.FromJson(p.Value));
        Assert.Equal("3 3.0 100.0 inf", Render("{{ i }} {{ f }} {{ e }} {{ big }}", variables: variables));
    }

    [Fact]
    public void ATemplateRendersOnManyThreadsAtOnce()
    {
        var template = JinjaTemplate.Parse(Golden.Value.Templates["llama-3.1-instruct"], "t.jinja");
        var golden = Golden.Value.Cases["llama-3.1-instruct/tools"];
        var results = new string[64];
        Parallel.For(0, results.Length, i => results[i] = template.Render(Variables(golden.Variables)));
        Assert.All(results, r => Assert.Equal(golden.Expected, r));
    }
}
