namespace SpecializedInference.Text.Jinja;

/// <summary>
/// A parsed Jinja template: the subset of jinja2 that Hugging Face chat templates are written in, rendered the
/// way transformers renders them (an immutable sandbox with <c>trim_blocks</c>, <c>lstrip_blocks</c>, the
/// loopcontrols extension, <c>{% generation %}</c>, and the globals <c>raise_exception</c> and <c>strftime_now</c>).
/// <code>
/// var template = JinjaTemplate.Parse("{{ bos_token }}{% for m in messages %}...", "tokenizer_config.json chat_template");
/// string prompt = template.Render(new Dictionary&lt;string, JinjaValue&gt; { ["messages"] = ..., ["bos_token"] = JinjaValue.From("&lt;s&gt;") });
/// </code>
/// Not supported: template inheritance and includes (<c>extends</c>, <c>include</c>, <c>import</c>, <c>block</c>),
/// <c>call</c> blocks, recursive loops, <c>*args</c>/<c>**kwargs</c> in calls, <c>%g</c> in printf-style formatting,
/// and integers beyond 64 bits. A template is immutable and can be rendered from several threads at once.
/// </summary>
public sealed class JinjaTemplate
{
    private readonly IReadOnlyList<JinjaNode> _body;

    private JinjaTemplate(IReadOnlyList<JinjaNode> body, string sourceName, JinjaOptions options)
    {
        _body = body;
        SourceName = sourceName;
        Options = options;
    }

    /// <summary>Parses <paramref name="source"/>; a syntax error is a <see cref="JinjaSyntaxException"/> naming
    /// <paramref name="sourceName"/>, the line and column, and what was expected.</summary>
    public static JinjaTemplate Parse(string source, string sourceName, JinjaOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentException.ThrowIfNullOrEmpty(sourceName);
        options ??= JinjaOptions.Default;
        return new JinjaTemplate(JinjaParser.Parse(source, sourceName, options), sourceName, options);
    }

    /// <summary>Where the template came from, as errors name it.</summary>
    public string SourceName { get; }

    public JinjaOptions Options { get; }

    /// <summary>The template's text for <paramref name="variables"/>. A failure is a <see cref="JinjaRenderException"/>
    /// naming the line (a <see cref="JinjaRaisedException"/> with the template's own message for <c>raise_exception</c>).</summary>
    public string Render(IReadOnlyDictionary<string, JinjaValue> variables)
    {
        ArgumentNullException.ThrowIfNull(variables);
        return JinjaInterpreter.Render(_body, variables, SourceName, Options);
    }
}
