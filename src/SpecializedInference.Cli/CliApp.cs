using SpecializedInference.Cli.Commands;
using Spectre.Console;
using Spectre.Console.Cli;
using Spectre.Console.Cli.Help;
using Spectre.Console.Rendering;

namespace SpecializedInference.Cli;

/// <summary>Exit codes of <c>si</c> (also printed at the end of every <c>--help</c>).</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>Something failed while running (a model that cannot load, a port in use, a failed request).</summary>
    public const int RuntimeError = 1;

    /// <summary>The command line or its input is wrong (unknown option, bad value, missing file).</summary>
    public const int BadInput = 2;
}

/// <summary>Bad arguments or input found while running a command: exit code 2, message without a stack trace.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>The <c>si</c> command line.</summary>
internal static class CliApp
{
    public static Task<int> RunAsync(string[] args, IAnsiConsole? console = null)
    {
        bool verbose = args.Contains("--verbose") || args.Contains("-v");
        return Build(verbose, console).RunAsync(args);
    }

    public static CommandApp Build(bool verbose, IAnsiConsole? console = null, bool validateExamples = false)
    {
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("si");
            config.UseStrictParsing(); // an unknown option is an error, not a silently ignored argument
            if (console is not null)
                config.ConfigureConsole(console);
            if (validateExamples)
                config.ValidateExamples();
            config.SetHelpProvider(new HelpWithExitCodes(config.Settings));
            config.SetExceptionHandler((e, _) => Report(e, verbose, console));

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
            config.AddCommand<PerplexityCommand>("perplexity")
                .WithDescription("Score a text with a checkpoint: exp of the mean negative log-likelihood of its tokens, in sliding windows.")
                .WithExample("perplexity", "--model", "models/docstrings-bf16", "--text", "\"This module provides regular expression matching operations.\"")
                .WithExample("perplexity", "--model", "<checkpoint>", "--text-file", "wiki.test.raw", "--context", "2048", "--stride", "512")
                .WithExample("perplexity", "--model", "tests/reference/hf-llama/gqa-tiny", "--prompt-ids", "5,17,3,9", "--json");
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
            config.AddCommand<ServeCommand>("serve")
                .WithDescription("Serve a model over an OpenAI-compatible HTTP API (completions, chat, models, health, Prometheus metrics).")
                .WithExample("serve", "--model", "models/docstrings-bf16")
                .WithExample("serve", "--model", "models/docstrings-bf16", "--host", "0.0.0.0", "--port", "8080")
                .WithExample("serve", "--synthetic", "--port", "8000")
                .WithExample("serve", "--model", "models/docstrings-bf16", "--synthetic", "--max-waiting", "32");
            config.AddCommand<LoadTestCommand>("loadtest")
                .WithDescription("Measure requests/s and latency percentiles of a server with a bounded number of concurrent completion requests.")
                .WithExample("loadtest")
                .WithExample("loadtest", "--requests", "500", "--concurrency", "32", "--max-tokens", "32")
                .WithExample("loadtest", "--url", "http://127.0.0.1:8000", "--prompt-text", "This module provides", "--no-stream");
        });
        return app;
    }

    /// <summary>Prints an error as one line (a stack trace only with --verbose) and picks the exit code.</summary>
    internal static int Report(Exception e, bool verbose, IAnsiConsole? console = null)
    {
        var err = console ?? ConsoleUi.Error;
        bool badInput = e is UsageException or CommandParseException or CommandRuntimeException;
        if (e is CommandParseException { Pretty: { } pretty } && !verbose)
            err.Write(pretty); // already says "Error: ..." and points at the argument
        else
            err.MarkupLine($"[red]error:[/] {Markup.Escape(e is CommandAppException ? e.Message : ConsoleUi.Describe(e))}");
        if (verbose)
            err.WriteException(e);
        else if (!badInput)
            err.MarkupLine("[grey](run with --verbose for details)[/]");
        return badInput ? ExitCodes.BadInput : ExitCodes.RuntimeError;
    }

    private sealed class HelpWithExitCodes(ICommandAppSettings settings) : HelpProvider(settings)
    {
        public override IEnumerable<IRenderable> GetFooter(ICommandModel model, ICommandInfo? command) =>
        [
            .. base.GetFooter(model, command),
            new Markup("\n[yellow]EXIT CODES:[/]\n    0    ok\n    1    runtime error (model failed to load, port in use, request failed)\n    2    bad arguments or input\n"),
        ];
    }
}
