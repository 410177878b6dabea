using System.ComponentModel;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary>Options of the commands that run one checkpoint themselves (<c>si generate</c>, <c>si perplexity</c>): which
/// checkpoint, on which device, in which dtypes.</summary>
internal abstract class CheckpointRunSettings : CommandSettings
{
    [CommandOption("--model <DIR>")]
    [Description("Checkpoint folder: config.json, model.safetensors (or the sharded index), optional tokenizer.model.")]
    public string Model { get; init; } = "";

    [CommandOption("--device <DEVICE>")]
    [Description("auto (CUDA when present), cpu or cuda.")]
    public string Device { get; init; } = "auto";

    [CommandOption("--weight-dtype <DTYPE>")]
    [Description("Weights on the device: f16 (default) or f32.")]
    public string WeightDtype { get; init; } = "f16";

    [CommandOption("--kv-dtype <DTYPE>")]
    [Description("KV cache: f16 (default) or f32.")]
    public string KvDtype { get; init; } = "f16";
}
