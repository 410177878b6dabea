using SpecializedInference.Text;
using SpecializedInference.Text.Jinja;
using SpecializedInference.Tokenization;

namespace SpecializedInference.Cli.Commands;

/// <summary>
/// <c>--chat</c> (and <c>--system</c>) of <c>si generate</c> and <c>si tokenize</c>: the conversation rendered through the
/// checkpoint's chat template, as the server's <c>/v1/chat/completions</c> renders it. The template writes BOS itself,
/// so its text is encoded with <see cref="TextTokenizer.EncodeWithSpecialTokens"/> and no BOS added.
/// </summary>
internal static class ChatPrompt
{
    /// <summary>The prompt text; an <see cref="ArgumentException"/> when the checkpoint has no usable template or the
    /// template refuses the conversation (its <c>raise_exception</c> message).</summary>
    public static string Render(string model, string? system, string user)
    {
        JinjaChatTemplate template;
        try
        {
            template = JinjaChatTemplate.TryLoad(model)
                ?? throw new ArgumentException($"{model} has no chat template ({JinjaChatTemplate.TemplateFileName}, or 'chat_template' in " +
                    $"{TextTokenizer.TokenizerConfigFileName}), so --chat cannot be formatted the way this model expects; give the text with --prompt");
        }
        catch (JinjaSyntaxException e)
        {
            throw new ArgumentException($"the chat template cannot be used: {e.Message}", e);
        }
        var messages = new List<ChatMessage>();
        if (system is not null) messages.Add(new ChatMessage("system", system));
        messages.Add(new ChatMessage("user", user));
        return template.Render(messages);
    }
}
