using System.Text.Json;
using SpecializedInference.Accelerators;
using SpecializedInference.Cli;
using SpecializedInference.Runtime;
using SpecializedInference.Tests.Model;
using SpecializedInference.Text;

namespace SpecializedInference.Tests.Cli;

/// <summary>
/// What <c>si serve</c> loads from a checkpoint whose tokenizer_config.json has a chat template (the docstrings
/// checkpoint's files, with the synthetic runner so no weights are uploaded): the template when it parses, and
/// when it does not, a note and the reason for the chat endpoint's 400, the rest of the model still served.
/// </summary>
public sealed class ChatTemplateLoadingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("si-chat-checkpoint-").FullName;

    public ChatTemplateLoadingTests()
    {
        foreach (var file in new[] { "config.json", "generation_config.json", "model.safetensors", "tokenizer.model" })
            File.CreateSymbolicLink(Path.Combine(_dir, file), Path.Combine(TestPaths.Docstrings, file));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private LoadedModel Load(string chatTemplate)
    {
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), JsonSerializer.Serialize(new
        {
            tokenizer_class = "LlamaTokenizer", bos_token = "<s>", eos_token = "</s>", unk_token = "<unk>", add_bos_token = true, chat_template = chatTemplate,
        }));
        return ModelLoading.Load(new ModelRequest(_dir, Synthetic: true, Name: null, MaxBatchSize: 2, KvBlocks: null, DeviceKind.Cpu,
            SyntheticVocabSize: 0, SyntheticMaxSeqLen: 0, SyntheticStepDelay: TimeSpan.Zero), new Progress<ModelLoadProgress>());
    }

    [Fact]
    public void ATemplateThatParsesIsLoaded()
    {
        var model = Load("{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}");
        using var engine = model.Engine;
        var template = Assert.IsType<JinjaChatTemplate>(model.ChatTemplate);
        Assert.Null(model.ChatTemplateError);
        Assert.DoesNotContain(model.Notes, n => n.Contains("chat", StringComparison.OrdinalIgnoreCase));
        Assert.Equal("<s>[user] hi", template.Render([new ChatMessage("user", "hi")]));
        Assert.Equal([1, .. model.Tokenizer!.Encode("[user] hi", addBos: false)], model.Tokenizer.EncodeWithSpecialTokens("<s>[user] hi", addBos: false));
    }

    [Fact]
    public void ATemplateThatDoesNotParseIsANoteAndTheChatEndpointsReason()
    {
        var model = Load("{% for m in messages %}\n{{ m.content + }}\n{% endfor %}");
        using var engine = model.Engine;
        Assert.Null(model.ChatTemplate);
        Assert.NotNull(model.Tokenizer); // completions are still served, with text
        string expected = $"{Path.Combine(_dir, "tokenizer_config.json")} chat_template: line 2, column 16: unexpected 'end of print statement'";
        Assert.Equal(expected, model.ChatTemplateError);
        Assert.Contains($"The chat template cannot be used, so /v1/chat/completions answers 400: {expected}", model.Notes);
    }
}
