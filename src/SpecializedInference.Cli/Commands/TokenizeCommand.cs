using System.ComponentModel;
using System.Text.Json;
using SpecializedInference.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary><c>si tokenize</c>: the checkpoint tokenizer's ids and pieces for a text (no BOS), or for a chat message as
/// the checkpoint's chat template renders it (special-token text as the tokens, as generate --chat and the server encode it).</summary>
internal sealed class TokenizeCommand : Command<TokenizeCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--model <DIR>")]
        [Description("Checkpoint folder with tokenizer.model (and tokenizer_config.json).")]
        public string Model { get; init; } = "";

        [CommandOption("--text <TEXT>")]
        [Description("Text to encode.")]
        public string? Text { get; init; }

        [CommandOption("--chat <TEXT>")]
        [Description("A user message, rendered with the checkpoint's chat template first (see si generate --chat).")]
        public string? Chat { get; init; }

        [CommandOption("--system <TEXT>")]
        [Description("A system message before the --chat message.")]
        public string? SystemMessage { get; init; }

        [CommandOption("--json")]
        [Description("Print {\"ids\": [...], \"pieces\": [...]} (with --chat also \"text\", the rendered prompt).")]
        public bool Json { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model <DIR> is required");
            if ((Text is null) == (Chat is null)) return ValidationResult.Error("give exactly one of --text <TEXT> or --chat <TEXT>");
            if (SystemMessage is not null && Chat is null) return ValidationResult.Error("--system goes with --chat: it is the system message of that chat");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        TextTokenizer? tokenizer;
        try
        {
            tokenizer = TextTokenizer.TryLoad(settings.Model);
        }
        catch (Exception e) when (e is InvalidDataException or NotSupportedException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }

        if (tokenizer is null)
        {
            Console.Error.WriteLine($"error: {settings.Model} has no {TextTokenizer.SentencePieceFileName} or {TextTokenizer.TokenizerJsonFileName}");
            return 2;
        }

        IReadOnlyList<TokenPiece> pieces;
        string? rendered = null;
        if (settings.Chat is not null)
        {
            try
            {
                rendered = ChatPrompt.Render(settings.Model, settings.SystemMessage, settings.Chat);
            }
            catch (Exception e) when (e is ArgumentException or InvalidDataException)
            {
                Console.Error.WriteLine($"error: {e.Message}");
                return 2;
            }
            pieces = tokenizer.EncodeWithSpecialTokens(rendered, addBos: false).Select(id => new TokenPiece(id, tokenizer.Piece(id))).ToArray();
        }
        else
        {
            pieces = tokenizer.EncodeToPieces(settings.Text!);
        }

        if (settings.Json)
        {
            var json = new Dictionary<string, object>
            {
                ["ids"] = pieces.Select(p => p.Id).ToArray(),
                ["pieces"] = pieces.Select(p => p.Piece).ToArray(),
            };
            if (rendered is not null) json["text"] = rendered;
            Console.Out.WriteLine(JsonSerializer.Serialize(json));
            return 0;
        }

        if (rendered is not null) Console.Out.WriteLine(rendered);
        var table = new Table().AddColumns("id", "piece");
        foreach (var p in pieces) table.AddRow(p.Id.ToString(), Markup.Escape(p.Piece));
        AnsiConsole.Write(table);
        return 0;
    }
}
