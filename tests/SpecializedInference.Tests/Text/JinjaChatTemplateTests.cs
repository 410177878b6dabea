using System.Text.Json;
using SpecializedInference.Tests.Model;
using SpecializedInference.Text;
using SpecializedInference.Text.Jinja;

namespace SpecializedInference.Tests.Text;

/// <summary>
/// <see cref="JinjaChatTemplate"/> read from a checkpoint folder's tokenizer_config.json in its published forms,
/// and rendered as transformers' apply_chat_template renders it (checked against jinja2's golden renderings).
/// </summary>
public sealed class JinjaChatTemplateTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("si-chat-template-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Published(string name) => File.ReadAllText(Path.Combine(TestPaths.ChatTemplates, "templates", name + ".jinja"));

    private void WriteConfig(object config) => File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), JsonSerializer.Serialize(config));

    private static readonly ChatMessage[] MultiTurn =
    [
        new("system", "  Answer in one word.  "),
        new("user", "Colour of the sky?"),
        new("assistant", " Blue. "),
        new("user", "And grass?"),
    ];

    /// <summary>jinja2's rendering of a published template for <see cref="MultiTurn"/> (golden.json's multi-turn case).</summary>
    private static string GoldenMultiTurn(string template)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(TestPaths.ChatTemplates, "golden.json")));
        var golden = doc.RootElement.GetProperty("cases").EnumerateArray().Single(c => c.GetProperty("name").GetString() == $"{template}/multi-turn");
        var messages = golden.GetProperty("variables").GetProperty("messages").EnumerateArray()
            .Select(m => new ChatMessage(m.GetProperty("role").GetString()!, m.GetProperty("content").GetString()!));
        Assert.Equal(MultiTurn, messages);
        return golden.GetProperty("expected").GetString()!;
    }

    [Fact]
    public void StringTemplateWithAddedTokenObjectsRendersLikeTransformers()
    {
        // Llama 2's tokenizer_config.json: special tokens as AddedToken objects.
        static object Added(string content) => new { __type = "AddedToken", content, lstrip = false, normalized = false, rstrip = false, single_word = false };
        WriteConfig(new { add_bos_token = true, bos_token = Added("<s>"), eos_token = Added("</s>"), unk_token = Added("<unk>"), pad_token = (object?)null,
            chat_template = Published("llama-2-chat"), tokenizer_class = "LlamaTokenizer" });

        var template = JinjaChatTemplate.TryLoad(_dir)!;
        Assert.False(template.AddBos); // the template writes <s> itself
        Assert.Equal(new Dictionary<string, string> { ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["unk_token"] = "<unk>" }, template.SpecialTokens);
        Assert.Equal(Path.Combine(_dir, "tokenizer_config.json") + " chat_template", template.SourceName);
        Assert.Equal(GoldenMultiTurn("llama-2-chat"), template.Render(MultiTurn));
        Assert.Equal("<s>[INST] hi [/INST]", template.Render([new ChatMessage("user", "hi")]));
    }

    [Fact]
    public void StringTokensAndALongTemplateWithToolsLogic()
    {
        WriteConfig(new { bos_token = "<|begin_of_text|>", eos_token = "<|eot_id|>", chat_template = Published("llama-3.1-instruct") });
        Assert.Equal(GoldenMultiTurn("llama-3.1-instruct"), JinjaChatTemplate.TryLoad(_dir)!.Render(MultiTurn));
    }

    [Fact]
    public void ListFormTakesTheDefaultTemplate()
    {
        WriteConfig(new
        {
            eos_token = "<|im_end|>",
            chat_template = new object[]
            {
                new { name = "tool_use", template = "{{ raise_exception('not this one') }}" },
                new { name = "default", template = Published("qwen2.5-instruct") },
                new { name = "rag", template = "{{ raise_exception('nor this one') }}" },
            },
        });
        var template = JinjaChatTemplate.TryLoad(_dir)!;
        Assert.EndsWith("chat_template 'default'", template.SourceName);
        Assert.Equal(GoldenMultiTurn("qwen2.5-instruct"), template.Render(MultiTurn));
    }

    [Fact]
    public void ListWithoutADefaultNamesTheTemplatesItHas()
    {
        WriteConfig(new { chat_template = new object[] { new { name = "tool_use", template = "x" }, new { name = "rag", template = "y" } } });
        var e = Assert.Throws<InvalidDataException>(() => JinjaChatTemplate.TryLoad(_dir));
        Assert.Contains(Path.Combine(_dir, "tokenizer_config.json"), e.Message);
        Assert.Contains("no template named 'default' (it has 'tool_use', 'rag')", e.Message);
    }

    [Theory]
    [InlineData("""{"chat_template": 42}""", "'chat_template' must be a string or a list of {\"name\", \"template\"} objects, got the number 42")]
    [InlineData("""{"chat_template": [{"name": "default"}]}""", "chat_template[0] must be an object with a string 'name' and a string 'template', got an object")]
    [InlineData("""{"chat_template": []}""", "'chat_template' is an empty list")]
    [InlineData("""{"chat_template": "x", "eos_token": 7}""", "'eos_token' must be a string or an AddedToken object {\"content\": \"...\"}, got the number 7")]
    [InlineData("""{"chat_template": "x", "bos_token": {"lstrip": false}}""", "'bos_token' must be a string or an AddedToken object")]
    [InlineData("""{"chat_template": "x", "additional_special_tokens": "<a>"}""", "'additional_special_tokens' must be a list of strings or AddedToken objects, got a string")]
    [InlineData("""["not", "an", "object"]""", "expected a JSON object, got an array")]
    [InlineData("""{"chat_template": """, "not valid JSON")]
    public void MalformedFieldsNameTheFileTheFieldAndWhatWasExpected(string config, string expected)
    {
        File.WriteAllText(Path.Combine(_dir, "tokenizer_config.json"), config);
        var e = Assert.Throws<InvalidDataException>(() => JinjaChatTemplate.TryLoad(_dir));
        Assert.StartsWith(Path.Combine(_dir, "tokenizer_config.json") + ": ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void NoTemplateIsNull()
    {
        Assert.Null(JinjaChatTemplate.TryLoad(_dir)); // no tokenizer_config.json at all
        WriteConfig(new { bos_token = "<s>" });
        Assert.Null(JinjaChatTemplate.TryLoad(_dir));
        WriteConfig(new { bos_token = "<s>", chat_template = (string?)null });
        Assert.Null(JinjaChatTemplate.TryLoad(_dir));
        Assert.Null(JinjaChatTemplate.TryLoad(TestPaths.Docstrings));
    }

    [Fact]
    public void ChatTemplateJinjaFileWinsOverTheConfigField()
    {
        WriteConfig(new { bos_token = "<s>", additional_special_tokens = new object[] { "<a>", new { content = "<b>" } }, chat_template = "from the config" });
        File.WriteAllText(Path.Combine(_dir, "chat_template.jinja"), "{{ bos_token }}{{ additional_special_tokens | join(',') }}{% for m in messages %}|{{ m.role }}:{{ m.content }}{% endfor %}{{ tools is none }}{{ add_generation_prompt }}\n");
        var template = JinjaChatTemplate.TryLoad(_dir)!;
        Assert.Equal(Path.Combine(_dir, "chat_template.jinja"), template.SourceName);
        Assert.Equal("<s><a>,<b>|user:hi|assistant:yo|user:ok TrueTrue", template.Render([new("user", "hi"), new("assistant", "yo"), new("user", "ok ")]));
    }

    [Fact]
    public void SyntaxErrorNamesTheFileFieldLineAndColumn()
    {
        WriteConfig(new { chat_template = "{% for m in messages %}\n{{ m.content + }}\n{% endfor %}" });
        var e = Assert.Throws<JinjaSyntaxException>(() => JinjaChatTemplate.TryLoad(_dir));
        Assert.Equal($"{Path.Combine(_dir, "tokenizer_config.json")} chat_template: line 2, column 16: unexpected 'end of print statement'", e.Message);
        Assert.Equal((2, 16), (e.Line, e.Column));
    }

    [Fact]
    public void RaiseExceptionIsAnArgumentExceptionWithTheTemplatesMessage()
    {
        WriteConfig(new { bos_token = "<s>", eos_token = "</s>", chat_template = Published("llama-2-chat") });
        var template = JinjaChatTemplate.TryLoad(_dir)!;
        var e = Assert.Throws<JinjaRaisedException>(() => template.Render([new("user", "a"), new("user", "b")]));
        Assert.IsAssignableFrom<ArgumentException>(e);
        Assert.Equal("Conversation roles must alternate user/assistant/user/assistant/...", e.Message);
        Assert.Equal(1, e.Line);
    }
}
