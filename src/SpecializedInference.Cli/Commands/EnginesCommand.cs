using System.ComponentModel;
using System.Text.Json;
using SpecializedInference.Generated;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary><c>si engines</c>: the kernel sets this build generated, one per config.</summary>
internal sealed class EnginesCommand : Command<EnginesCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--json")]
        [Description("Print a JSON array instead of a table.")]
        public bool Json { get; init; }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var sets = KernelRegistry.All;
        if (settings.Json)
        {
            var rows = sets.Select(s => new Dictionary<string, object>
            {
                ["name"] = s.Name,
                ["config_file"] = s.ConfigFile,
                ["hidden_size"] = s.Shape.HiddenSize,
                ["num_attention_heads"] = s.Shape.NumAttentionHeads,
                ["num_key_value_heads"] = s.Shape.NumKeyValueHeads,
                ["head_dim"] = s.Shape.HeadDim,
                ["num_hidden_layers"] = s.Shape.NumHiddenLayers,
                ["intermediate_size"] = s.Shape.IntermediateSize,
                ["vocab_size"] = s.Shape.VocabSize,
                ["kv_block_size"] = s.Engine.KvBlockSize,
                ["kv_dtype"] = s.Engine.KvDtype.ToString().ToLowerInvariant(),
                ["weight_dtype"] = s.Engine.WeightDtype.ToString().ToLowerInvariant(),
            });
            Console.Out.WriteLine(JsonSerializer.Serialize(rows, new JsonSerializerOptions { WriteIndented = true }));
            return 0;
        }

        var table = new Table().AddColumns("name", "config", "hidden", "heads", "kv heads", "head_dim", "group", "layers", "vocab", "block", "kv dtype");
        foreach (var s in sets)
            table.AddRow(s.Name, s.ConfigFile, $"{s.Shape.HiddenSize}", $"{s.Shape.NumAttentionHeads}", $"{s.Shape.NumKeyValueHeads}",
                $"{s.Shape.HeadDim}", $"{s.Shape.GroupSize}", $"{s.Shape.NumHiddenLayers}", $"{s.Shape.VocabSize}", $"{s.Engine.KvBlockSize}",
                s.Engine.KvDtype.ToString().ToLowerInvariant());
        AnsiConsole.Write(table);
        return 0;
    }
}
