using SpecializedInference.Tests.Model;
using SpecializedInference.Text;

namespace SpecializedInference.Tests.Text;

/// <summary>The bundled model's files (linked, not copied) in a temporary folder with one of the published chat
/// templates from tests/reference/chat-templates beside them as <c>chat_template.jinja</c>: a checkpoint that has a chat
/// template, for the CLI's chat paths.</summary>
internal sealed class ChatCheckpointFolder : IDisposable
{
    public ChatCheckpointFolder(string template)
    {
        Path = Directory.CreateTempSubdirectory("si-chat-").FullName;
        foreach (var file in new[] { "config.json", "generation_config.json", "model.safetensors", "tokenizer.model", "tokenizer_config.json" })
            File.CreateSymbolicLink(System.IO.Path.Combine(Path, file), System.IO.Path.Combine(TestPaths.Docstrings, file));
        File.Copy(System.IO.Path.Combine(TestPaths.ChatTemplates, "templates", template), System.IO.Path.Combine(Path, JinjaChatTemplate.TemplateFileName));
    }

    public string Path { get; }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
