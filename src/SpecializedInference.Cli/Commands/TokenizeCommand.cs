using System.ComponentModel;
using System.Text.Json;
using SpecializedInference.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary><c>si tokenize</c>: the checkpoint tokenizer's ids and pieces for a text (no BOS).</summary>
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

        [CommandOption("--json")]
        [Description("Print {\"ids\": [...], \"pieces\": [...]}.")]
        public bool Json { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model <DIR> is required");
            if (Text is null) return ValidationResult.Error("--text <TEXT> is required");
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

        var pieces = tokenizer.EncodeToPieces(settings.Text!);
        if (settings.Json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["ids"] = pieces.Select(p => p.Id).ToArray(),
                ["pieces"] = pieces.Select(p => p.Piece).ToArray(),
            }));
            return 0;
        }

        var table = new Table().AddColumns("id", "piece");
        foreach (var p in pieces) table.AddRow(p.Id.ToString(), Markup.Escape(p.Piece));
        AnsiConsole.Write(table);
        return 0;
    }
}
