using System.Reflection;

namespace SpecializedInference.Tests.Model;

/// <summary>Paths of the repository's reference checkpoints.</summary>
internal static class TestPaths
{
    public static string RepositoryRoot { get; } = typeof(TestPaths).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepositoryRoot").Value!;

    public static string HfCase(string name) => Path.Combine(RepositoryRoot, "tests", "reference", "hf-llama", name);

    public static string Docstrings => Path.Combine(RepositoryRoot, "models", "docstrings-bf16");

    /// <summary>tests/reference/chat-templates: chat templates and jinja2's renderings of them (make_golden.py).</summary>
    public static string ChatTemplates => Path.Combine(RepositoryRoot, "tests", "reference", "chat-templates");

    public static string Config(string file) => Path.Combine(RepositoryRoot, "configs", file);
}
