using System.Text.Json;
using SpecializedInference.Text.Jinja;
using SpecializedInference.Tokenization;

namespace SpecializedInference.Text;

/// <summary>
/// A checkpoint's Hugging Face chat template (a Jinja template), rendered as transformers'
/// <c>apply_chat_template(messages, add_generation_prompt=True)</c> renders it: with <c>messages</c> (a list of
/// <c>{role, content}</c>), <c>tools</c> and <c>documents</c> as none, <c>add_generation_prompt</c> true, and the
/// tokenizer's special tokens (<c>bos_token</c>, <c>eos_token</c>, ...). The template writes BOS itself, so
/// <see cref="AddBos"/> is false, as transformers encodes the rendered text without adding special tokens; encode
/// it with <see cref="ITextTokenizer.EncodeWithSpecialTokens"/> so that the special-token text it contains
/// (<c>&lt;s&gt;</c>, <c>&lt;|eot_id|&gt;</c>) becomes their ids.
/// </summary>
public sealed class JinjaChatTemplate : IChatTemplate
{
    /// <summary>The entry of a list-form <c>chat_template</c> that renders chats (transformers' choice when no other is named).</summary>
    public const string DefaultName = "default";

    /// <summary>Where recent transformers versions save the template instead of in tokenizer_config.json; used when present.</summary>
    public const string TemplateFileName = "chat_template.jinja";

    private static readonly string[] SpecialTokenFields = ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"];

    private readonly JinjaTemplate _template;
    private readonly IReadOnlyDictionary<string, JinjaValue> _tokenVariables;

    /// <summary>A template from its source; <paramref name="specialTokens"/> are the variables such as
    /// <c>bos_token</c> it may use. Throws <see cref="JinjaSyntaxException"/> when it does not parse.</summary>
    public JinjaChatTemplate(string source, string sourceName, IReadOnlyDictionary<string, string> specialTokens,
        IReadOnlyList<string>? additionalSpecialTokens = null, JinjaOptions? options = null)
    {
        _template = JinjaTemplate.Parse(source, sourceName, options);
        SpecialTokens = specialTokens;
        var variables = specialTokens.ToDictionary(p => p.Key, p => JinjaValue.From(p.Value));
        if (additionalSpecialTokens is { Count: > 0 })
            variables["additional_special_tokens"] = JinjaValue.List(additionalSpecialTokens.Select(JinjaValue.From));
        _tokenVariables = variables;
    }

    /// <summary>False: the template writes BOS where the model expects it.</summary>
    public bool AddBos => false;

    /// <summary>Where the template came from (the file, and the field or the list entry), as errors name it.</summary>
    public string SourceName => _template.SourceName;

    /// <summary>The special-token variables the template sees, e.g. <c>bos_token</c> = <c>&lt;s&gt;</c>.</summary>
    public IReadOnlyDictionary<string, string> SpecialTokens { get; }

    /// <summary>
    /// The chat template of a checkpoint folder: <c>chat_template.jinja</c>, else <c>tokenizer_config.json</c>'s
    /// <c>chat_template</c> (a string, or a list of <c>{name, template}</c> of which the <c>default</c> one is used);
    /// null when it has neither. A field of the wrong form is an <see cref="InvalidDataException"/> naming the file,
    /// the field and what was expected; a template that does not parse, a <see cref="JinjaSyntaxException"/>.
    /// </summary>
    public static JinjaChatTemplate? TryLoad(string directory, JinjaOptions? options = null)
    {
        string configPath = Path.Combine(directory, TextTokenizer.TokenizerConfigFileName);
        JsonDocument? config = null;
        try
        {
            if (File.Exists(configPath))
            {
                try
                {
                    config = JsonDocument.Parse(File.ReadAllText(configPath));
                }
                catch (JsonException e)
                {
                    throw new InvalidDataException($"{configPath}: not valid JSON: {e.Message}", e);
                }
                if (config.RootElement.ValueKind != JsonValueKind.Object)
                    throw new InvalidDataException($"{configPath}: expected a JSON object, got {JsonDescriptions.Describe(config.RootElement)}");
            }
            var root = config?.RootElement;
            var tokens = root is { } r ? ReadSpecialTokens(r, configPath) : new Dictionary<string, string>();
            var additional = root is { } a ? ReadAdditionalSpecialTokens(a, configPath) : [];

            string templateFile = Path.Combine(directory, TemplateFileName);
            if (File.Exists(templateFile))
                return new JinjaChatTemplate(File.ReadAllText(templateFile), templateFile, tokens, additional, options);
            if (root is not { } json || !json.TryGetProperty("chat_template", out var template) || template.ValueKind == JsonValueKind.Null)
                return null;
            var (source, sourceName) = ReadTemplate(template, configPath);
            return new JinjaChatTemplate(source, sourceName, tokens, additional, options);
        }
        finally
        {
            config?.Dispose();
        }
    }

    private static (string Source, string SourceName) ReadTemplate(JsonElement template, string path)
    {
        if (template.ValueKind == JsonValueKind.String)
            return (template.GetString()!, $"{path} chat_template");
        if (template.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: 'chat_template' must be a string or a list of {{\"name\", \"template\"}} objects, got {JsonDescriptions.Describe(template)}");
        var names = new List<string>();
        int index = 0;
        foreach (var entry in template.EnumerateArray())
        {
            if (entry.ValueKind != JsonValueKind.Object
                || !entry.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                || !entry.TryGetProperty("template", out var source) || source.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{path}: chat_template[{index}] must be an object with a string 'name' and a string 'template', got {JsonDescriptions.Describe(entry)}");
            if (name.GetString() == DefaultName)
                return (source.GetString()!, $"{path} chat_template '{DefaultName}'");
            names.Add(name.GetString()!);
            index++;
        }
        throw new InvalidDataException(names.Count == 0
            ? $"{path}: 'chat_template' is an empty list; expected a template named '{DefaultName}'"
            : $"{path}: 'chat_template' has no template named '{DefaultName}' (it has {string.Join(", ", names.Select(n => $"'{n}'"))}); chats are rendered with the '{DefaultName}' one");
    }

    // A template may print any special token, so one it cannot read is an error here (TokenizerConfig passes over it).
    private static string? ReadToken(JsonElement value, string path, string field) =>
        value.ValueKind == JsonValueKind.Null ? null
        : TokenizerConfig.TokenText(value)
          ?? throw new InvalidDataException($"{path}: '{field}' must be a string or an AddedToken object {{\"content\": \"...\"}}, got {JsonDescriptions.Describe(value)}");

    private static Dictionary<string, string> ReadSpecialTokens(JsonElement root, string path)
    {
        var tokens = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var field in SpecialTokenFields)
            if (root.TryGetProperty(field, out var value) && ReadToken(value, path, field) is { } token)
                tokens[field] = token;
        return tokens;
    }

    private static List<string> ReadAdditionalSpecialTokens(JsonElement root, string path)
    {
        const string field = "additional_special_tokens";
        if (!root.TryGetProperty(field, out var list) || list.ValueKind == JsonValueKind.Null)
            return [];
        if (list.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: '{field}' must be a list of strings or AddedToken objects, got {JsonDescriptions.Describe(list)}");
        return list.EnumerateArray().Select((t, i) => ReadToken(t, path, $"{field}[{i}]")).OfType<string>().ToList();
    }

    /// <summary>The prompt for <paramref name="messages"/>. A conversation the template refuses
    /// (<c>raise_exception</c>) or cannot render is a <see cref="JinjaRenderException"/>, an <see cref="ArgumentException"/>.</summary>
    public string Render(IReadOnlyList<ChatMessage> messages)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var variables = new Dictionary<string, JinjaValue>(_tokenVariables, StringComparer.Ordinal)
        {
            ["messages"] = JinjaValue.List(messages.Select(m => JinjaValue.Dict([
                KeyValuePair.Create("role", JinjaValue.From(m.Role)),
                KeyValuePair.Create("content", JinjaValue.From(m.Content)),
            ]))),
            ["tools"] = JinjaValue.None,
            ["documents"] = JinjaValue.None,
            ["add_generation_prompt"] = JinjaValue.True,
        };
        return _template.Render(variables);
    }
}
