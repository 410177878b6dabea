using SpecializedInference.Cli.Commands;
using Spectre.Console.Cli;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("si");
    config.AddCommand<EnginesCommand>("engines")
        .WithDescription("List the kernel sets generated from configs/*.json at build time.")
        .WithExample("engines")
        .WithExample("engines", "--json");
    config.AddCommand<GenerateCommand>("generate")
        .WithDescription("Generate from a Hugging Face Llama checkpoint (safetensors) on the GPU, or on the CPU accelerator.")
        .WithExample("generate", "--model", "models/docstrings-bf16", "--prompt", "\"This module provides\"", "--max-new-tokens", "32")
        .WithExample("generate", "--model", "tests/reference/hf-llama/gqa-tiny", "--prompt-ids", "5,17,3", "--max-new-tokens", "16", "--greedy", "--ignore-eos", "--json")
        .WithExample("generate", "--model", "models/docstrings-bf16", "--prompt", "\"Return the\"", "--temperature", "0.8", "--top-p", "0.9", "--seed", "7");
    config.AddCommand<TokenizeCommand>("tokenize")
        .WithDescription("Encode text with a checkpoint's tokenizer (ids and pieces, no BOS).")
        .WithExample("tokenize", "--model", "models/docstrings-bf16", "--text", "\"Return the number of items.\"", "--json");
    config.AddCommand<MakeRandomCheckpointCommand>("make-random-checkpoint")
        .WithDescription("Write a checkpoint of a config's shape with random weights (for benchmarks; no download).")
        .WithExample("make-random-checkpoint", "--config", "configs/medium.json", "--out", "/tmp/llama3-8b-2l", "--dtype", "f16", "--layers", "2");
    config.AddCommand<SelftestCommand>("selftest")
        .WithDescription("Run every kernel set's KV write, prefill and decode against the float64 reference on the device.")
        .WithExample("selftest")
        .WithExample("selftest", "--device", "cpu");
    config.AddCommand<AttentionBenchCommand>("attention-bench")
        .WithDescription("Time decode and prefill attention (device time), generated vs generic kernels.")
        .WithExample("attention-bench", "--device", "cuda", "--context", "4096");
});
return await app.RunAsync(args);
