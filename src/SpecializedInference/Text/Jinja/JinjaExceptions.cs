namespace SpecializedInference.Text.Jinja;

/// <summary>
/// A template that does not parse. The message names the template's source (e.g. <c>tokenizer_config.json
/// chat_template</c>), the line and column, and what was expected there.
/// </summary>
public sealed class JinjaSyntaxException : FormatException
{
    internal JinjaSyntaxException(string sourceName, int line, int column, string problem)
        : base($"{sourceName}: line {line}, column {column}: {problem}")
    {
        SourceName = sourceName;
        Line = line;
        Column = column;
        Problem = problem;
    }

    public string SourceName { get; }

    public int Line { get; }

    public int Column { get; }

    /// <summary>What is wrong, without the place.</summary>
    public string Problem { get; }
}

/// <summary>
/// A template that failed while rendering these variables: an undefined value used, a type error, a bound of
/// <see cref="JinjaOptions"/> passed. An <see cref="ArgumentException"/>, because the same template renders other
/// input: what failed is this input (for a chat template, this conversation).
/// </summary>
public class JinjaRenderException : ArgumentException
{
    internal JinjaRenderException(string message, string sourceName, int line, string problem) : base(message)
    {
        SourceName = sourceName;
        Line = line;
        Problem = problem;
    }

    internal JinjaRenderException(string sourceName, int line, string problem)
        : this($"{sourceName}: line {line}: {problem}", sourceName, line, problem)
    {
    }

    public string SourceName { get; }

    /// <summary>The template line that failed.</summary>
    public int Line { get; }

    /// <summary>What went wrong, without the place.</summary>
    public string Problem { get; }
}

/// <summary>
/// The template called <c>raise_exception(message)</c> (transformers' global, e.g. "Conversation roles must
/// alternate user/assistant/user/assistant/..."): <see cref="Exception.Message"/> is the template's message verbatim.
/// </summary>
public sealed class JinjaRaisedException : JinjaRenderException
{
    internal JinjaRaisedException(string sourceName, int line, string message) : base(message, sourceName, line, message)
    {
    }
}

/// <summary>A failure inside the interpreter, before the line it happened on is known.</summary>
internal sealed class JinjaRuntimeError : Exception
{
    public JinjaRuntimeError(string message, bool raisedByTemplate = false) : base(message) => RaisedByTemplate = raisedByTemplate;

    /// <summary>From <c>raise_exception()</c>.</summary>
    public bool RaisedByTemplate { get; }

    /// <summary>The innermost template line being evaluated when it was thrown; set as it passes up.</summary>
    public int? Line { get; set; }

    /// <summary>Jinja's UndefinedError: an operation on an undefined value, named by how the value came about.</summary>
    public static JinjaRuntimeError Undefined(JinjaUndefined value) => new(value.Hint);
}
