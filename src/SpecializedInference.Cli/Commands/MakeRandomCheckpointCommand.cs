using System.ComponentModel;
using System.Diagnostics;
using SpecializedInference.Model;
using SpecializedInference.Model.Safetensors;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary><c>si make-random-checkpoint</c>: a checkpoint of a preset shape with random weights, for benchmarks.</summary>
internal sealed class MakeRandomCheckpointCommand : Command<MakeRandomCheckpointCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--config <FILE>")]
        [Description("A Hugging Face config.json or one of configs/*.json (the model shape).")]
        public string Config { get; init; } = "";

        [CommandOption("--out <DIR>")]
        [Description("Folder to write config.json, generation_config.json and model.safetensors into.")]
        public string Out { get; init; } = "";

        [CommandOption("--dtype <DTYPE>")]
        [Description("Stored dtype: f16 (default), bf16 or f32.")]
        public string Dtype { get; init; } = "f16";

        [CommandOption("--layers <N>")]
        [Description("Keep only N decoder layers (smaller files; same per-layer shapes).")]
        public int? Layers { get; init; }

        [CommandOption("--seed <SEED>")]
        [Description("Seed of the random weights (default 0).")]
        public ulong Seed { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Config)) return ValidationResult.Error("--config <FILE> is required");
            if (string.IsNullOrWhiteSpace(Out)) return ValidationResult.Error("--out <DIR> is required");
            if (Layers is < 1) return ValidationResult.Error("--layers must be at least 1");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        try
        {
            var dtype = settings.Dtype.ToLowerInvariant() switch
            {
                "f16" or "fp16" or "float16" => SafetensorsDtype.F16,
                "bf16" or "bfloat16" => SafetensorsDtype.BF16,
                "f32" or "fp32" or "float32" => SafetensorsDtype.F32,
                _ => throw new ArgumentException($"--dtype '{settings.Dtype}': expected f16, bf16 or f32"),
            };
            var config = LlamaConfig.Load(settings.Config);
            if (settings.Layers is int n) config = config with { NumHiddenLayers = n };
            if (config.EosTokenIds.Count == 0) config = config with { EosTokenIds = new[] { 2 }, BosTokenId = config.BosTokenId ?? 1 };
            var clock = Stopwatch.StartNew();
            long bytes = RandomCheckpoint.Write(settings.Out, config, dtype, settings.Seed);
            Console.Out.WriteLine($"wrote {settings.Out}: {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, vocab {config.VocabSize}, " +
                $"{dtype.Name()} weights, {bytes / (1024.0 * 1024.0):F1} MiB in {clock.Elapsed.TotalSeconds:F1} s");
            return 0;
        }
        catch (Exception e) when (e is CheckpointException or ArgumentException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }
}
