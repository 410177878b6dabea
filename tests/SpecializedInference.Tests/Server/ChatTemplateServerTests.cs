using System.Net;
using System.Text.Json;
using SpecializedInference.Server;
using SpecializedInference.Tests.Model;
using SpecializedInference.Tests.Scheduling;
using SpecializedInference.Text;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary>
/// A server with a real chat template (Llama 2's, as published) and the docstrings checkpoint's SentencePiece
/// tokenizer over the fake model: the chat endpoint renders the template, encodes its special-token text as the
/// tokens, and answers 400 with the template's own message when the template refuses a conversation.
/// </summary>
public sealed class ChatTemplateServerFixture : IAsyncLifetime
{
    internal static readonly CheckpointTextTokenizer Tokenizer = CheckpointTextTokenizer.TryLoad(TestPaths.Docstrings)!;

    internal static readonly JinjaChatTemplate Template = new(
        File.ReadAllText(Path.Combine(TestPaths.ChatTemplates, "templates", "llama-2-chat.jinja")), "llama-2-chat.jinja",
        new Dictionary<string, string> { ["bos_token"] = "<s>", ["eos_token"] = "</s>", ["unk_token"] = "<unk>" });

    internal ServerHarness Harness { get; private set; } = null!;

    public async Task InitializeAsync() => Harness = await ServerHarness.StartAsync(
        new ServerOptions { EosTokenIds = [Tokenizer.Tokenizer.EosId] },
        tokenizer: Tokenizer,
        chatTemplate: Template,
        vocabSize: Tokenizer.Tokenizer.VocabularySize,
        maxSeqLen: 256);

    public async Task DisposeAsync() => await Harness.DisposeAsync();
}

public sealed class ChatTemplateServerTests(ChatTemplateServerFixture fixture) : IClassFixture<ChatTemplateServerFixture>
{
    private ServerHarness H => fixture.Harness;

    private const string Messages = """
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Return the"},
         {"role": "assistant", "content": "number of items."}, {"role": "user", "content": "And then?"}]
        """;

    [Fact]
    public async Task ChatGivesTheTokensOfACompletionOfTheRenderedPrompt()
    {
        var tokenizer = ChatTemplateServerFixture.Tokenizer;
        string rendered = ChatTemplateServerFixture.Template.Render(
        [
            new("system", "Be brief."), new("user", "Return the"), new("assistant", "number of items."), new("user", "And then?"),
        ]);
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nReturn the [/INST] number of items. </s><s>[INST] And then? [/INST]", rendered);
        int[] ids = tokenizer.EncodeWithSpecialTokens(rendered, addBos: false);
        // <s> and </s> are the BOS and EOS ids, not the characters SentencePiece would make of them.
        int[] bySegment =
        [
            1, .. tokenizer.Encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nReturn the [/INST] number of items. ", addBos: false), 2,
            1, .. tokenizer.Encode("[INST] And then? [/INST]", addBos: false),
        ];
        Assert.Equal(bySegment, ids);
        Assert.Equal(2, ids.Count(id => id == 1));
        Assert.Single(ids, 2);
        var expected = FakeModelRunner.GreedyReference(ids, 8, H.VocabSize, [2]);

        var chat = await H.PostOkAsync("v1/chat/completions", $$"""{"messages": {{Messages}}, "max_tokens": 8}""");
        Assert.Equal(expected, TokensOf(chat.GetProperty("choices")[0]));
        Assert.Equal(ids.Length, chat.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(tokenizer.Decode(expected.ToArray()), chat.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());

        var completion = await H.PostOkAsync("v1/completions", $$"""{"prompt": {{Ids(ids)}}, "max_tokens": 8}""");
        Assert.Equal(expected, TokensOf(completion.GetProperty("choices")[0]));
        Assert.Equal(ids.Length, completion.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());

        // The same text as a plain completion prompt is text: "<s>" there is characters, as before.
        var plain = await H.PostOkAsync("v1/completions", JsonSerializer.Serialize(new { prompt = rendered, max_tokens = 1 }));
        Assert.Equal(tokenizer.Encode(rendered, addBos: true).Length, plain.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task TemplatesRaiseExceptionIsA400WithItsMessage()
    {
        using var response = await H.PostAsync("v1/chat/completions", """{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}""");
        var error = await BadRequestTests.AssertErrorAsync(response, HttpStatusCode.BadRequest, "messages");
        Assert.Equal("The chat template cannot format these messages: Conversation roles must alternate user/assistant/user/assistant/...",
            error.GetProperty("message").GetString());
    }
}

public sealed class ChatTemplateErrorTests
{
    [Fact]
    public async Task ATemplateThatFailedToLoadIs400ChatTemplateMissingWithTheReason()
    {
        await using var h = await ServerHarness.StartAsync(
            new ServerOptions { ChatTemplateError = "tokenizer_config.json chat_template: line 2, column 16: unexpected 'end of print statement'" },
            tokenizer: ChatTemplateServerFixture.Tokenizer, vocabSize: ChatTemplateServerFixture.Tokenizer.Tokenizer.VocabularySize);
        using var response = await h.PostAsync("v1/chat/completions", """{"messages": [{"role": "user", "content": "hi"}]}""");
        var error = await BadRequestTests.AssertErrorAsync(response, HttpStatusCode.BadRequest, null);
        Assert.Equal("chat_template_missing", error.GetProperty("code").GetString());
        Assert.Equal("Chat completions are not available for model 'fake': the checkpoint's chat template cannot be used "
            + "(tokenizer_config.json chat_template: line 2, column 16: unexpected 'end of print statement'). Use POST /v1/completions with a prompt instead.",
            error.GetProperty("message").GetString());
        // Completions are still served.
        await h.PostOkAsync("v1/completions", """{"prompt": "Return the", "max_tokens": 2}""");
    }
}
