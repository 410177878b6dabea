namespace SpecializedInference.Text.Jinja;

/// <summary>
/// How a <see cref="JinjaTemplate"/> is lexed and how much one render may do. The defaults are the environment
/// Hugging Face transformers compiles chat templates with (<c>trim_blocks=True, lstrip_blocks=True</c>), and bounds
/// no chat template comes near but that stop a hostile or broken one from hanging or exhausting the server.
/// </summary>
public sealed record JinjaOptions
{
    public static JinjaOptions Default { get; } = new();

    /// <summary>Jinja's <c>trim_blocks</c>: the first newline after a block tag (<c>%}</c>) or comment is removed.</summary>
    public bool TrimBlocks { get; init; } = true;

    /// <summary>Jinja's <c>lstrip_blocks</c>: spaces and tabs from the start of a line up to a block tag or comment are removed.</summary>
    public bool LstripBlocks { get; init; } = true;

    /// <summary>Most characters a render may produce, and the longest string or list an operation may build.</summary>
    public int MaxOutputLength { get; init; } = 4 << 20;

    /// <summary>Most loop iterations of one render, all loops together (each <c>range()</c> counts as its length too).</summary>
    public int MaxLoopIterations { get; init; } = 1_000_000;

    /// <summary>Longest one render may take, checked at each loop iteration and macro call: each step is bounded by
    /// the limits above, but a million of them that each build a long string would still run for minutes.</summary>
    public TimeSpan MaxRenderTime { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Deepest nesting of macro calls, and of one expression: brackets, operators and filters chained
    /// (<c>a + b + c</c> is two levels), which the interpreter evaluates recursively.</summary>
    public int MaxDepth { get; init; } = 200;

    /// <summary>The clock of <c>strftime_now()</c> (transformers' global): local time, as Python's <c>datetime.now()</c>.</summary>
    public Func<DateTime> Now { get; init; } = () => DateTime.Now;
}
