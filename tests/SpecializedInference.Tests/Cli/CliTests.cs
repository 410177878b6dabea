using SpecializedInference.Accelerators;
using SpecializedInference.Cli;
using SpecializedInference.Engine;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using Spectre.Console;

namespace SpecializedInference.Tests.Cli;

/// <summary>
/// In the "Console" collection: `engines --json` writes JSON to <see cref="System.Console.Out"/>, which the
/// generate tests redirect, so the two must not run at the same time.
/// </summary>
[Collection("Console")]
public sealed class CliTests
{
    private static (IAnsiConsole Console, StringWriter Output) CaptureConsole()
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 200;
        return (console, writer);
    }

    private static async Task<(int Code, string Output)> RunAsync(params string[] args)
    {
        var (console, output) = CaptureConsole();
        int code = await CliApp.RunAsync(args, console);
        return (code, output.ToString());
    }

    [Theory]
    [InlineData("serve")]
    [InlineData("loadtest")]
    [InlineData("engines")]
    public async Task HelpOfEveryCommandHasExamplesAndExitCodes(string command)
    {
        var (code, output) = await RunAsync(command, "--help");
        Assert.Equal(0, code);
        Assert.Contains("EXAMPLES:", output);
        Assert.Contains($"si {command}", output);
        Assert.Contains("EXIT CODES:", output);
        Assert.Contains("2    bad arguments or input", output);
    }

    [Fact]
    public async Task EveryExampleParses()
    {
        var (console, _) = CaptureConsole();
        Assert.Equal(0, await CliApp.Build(verbose: false, console, validateExamples: true).RunAsync(["engines", "--json"]));
    }

    [Theory]
    [InlineData("serve")]                                         // neither --model nor --synthetic
    [InlineData("serve", "--synthetic", "--port", "abc")]         // not a number
    [InlineData("serve", "--synthetic", "--port", "70000")]       // out of range
    [InlineData("serve", "--synthetic", "--host", "example.com")] // not an IP address
    [InlineData("serve", "--synthetic", "--no-such-option")]
    [InlineData("serve", "--synthetic", "--cuda-cores")]          // no projections to run on them
    [InlineData("serve", "--model", "/no/such/checkpoint")]       // found while running: still bad input
    [InlineData("serve", "--model", ".")]                         // a folder without config.json
    [InlineData("loadtest", "--url", "ftp://x")]
    [InlineData("loadtest", "--url", "http://127.0.0.1:1", "--synthetic")]
    [InlineData("loadtest", "--requests", "0")]
    [InlineData("loadtest", "--cuda-cores")]                      // no --model: the synthetic runner, no projections
    [InlineData("attention-bench", "--device", "cpu", "--sets", "NoSuchSet")]
    [InlineData("attention-bench", "--device", "cpu", "--sets", "TinyLlama_1_1B")]  // 32/4 heads, d=64: not the default 32/8, d=128
    [InlineData("attention-bench", "--device", "cpu", "--batch", "0")]
    [InlineData("attention-bench", "--device", "cpu", "--context", "16,x")]
    [InlineData("selftest", "--device", "cpu", "--set", "nosuch")]    // would run no check and pass
    [InlineData("generate", "--model", ".", "--prompts-file", "p.jsonl", "--stage-times")]   // times one prompt's steps
    [InlineData("no-such-command")]
    public async Task BadArgumentsExitWith2WithoutAStackTrace(params string[] args)
    {
        var (code, output) = await RunAsync(args);
        Assert.True(code == 2, $"exit code {code}: {output}");
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public void RuntimeErrorsExitWith1AndShowAStackTraceOnlyWhenVerbose()
    {
        Exception thrown;
        try
        {
            throw new InvalidOperationException("the port is in use");
        }
        catch (Exception e)
        {
            thrown = e;
        }

        var (quiet, quietOutput) = CaptureConsole();
        Assert.Equal(1, CliApp.Report(thrown, verbose: false, quiet));
        Assert.Contains("error: the port is in use", quietOutput.ToString());
        Assert.Contains("--verbose", quietOutput.ToString());
        Assert.DoesNotContain(nameof(RuntimeErrorsExitWith1AndShowAStackTraceOnlyWhenVerbose), quietOutput.ToString());

        var (verbose, verboseOutput) = CaptureConsole();
        Assert.Equal(1, CliApp.Report(thrown, verbose: true, verbose));
        Assert.Contains(nameof(RuntimeErrorsExitWith1AndShowAStackTraceOnlyWhenVerbose), verboseOutput.ToString());
    }

    /// <summary>Runs a command that writes its lines to <see cref="Console.Out"/> (not through Spectre's console): its exit
    /// code, what Spectre's console got, and what Console.Out got.</summary>
    private static async Task<(int Code, string Output, string Stdout)> RunWritingToStdoutAsync(params string[] args)
    {
        var stdout = new StringWriter();
        var oldOut = Console.Out;
        Console.SetOut(stdout);
        try
        {
            var (code, output) = await RunAsync(args);
            return (code, output, stdout.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
        }
    }

    /// <summary>attention-bench times every batch × context of its lists with each variant compiled once.</summary>
    [Fact]
    public async Task AttentionBenchTimesEveryBatchAndContextOfItsLists()
    {
        var (code, output, stdout) = await RunWritingToStdoutAsync("attention-bench", "--device", "cpu", "--sets", "gqa_tiny", "--heads", "8", "--kv-heads", "2",
            "--head-dim", "16", "--batch", "1,2", "--context", "16,17", "--prefill-tokens", "0", "--iterations", "1");
        Assert.True(code == 0, output + stdout);
        foreach (var work in new[] { "decode b1 ctx 16 ", "decode b1 ctx 17 ", "decode b2 ctx 16 ", "decode b2 ctx 17 " })
            Assert.Single(stdout.Split('\n'), line => line.Contains(work) && line.Contains("us/call"));
    }

    /// <summary><c>si selftest --set</c> on one small set: a line per check (its KV write, flash prefill and decode, the
    /// non-flash pair), each ok, the summary, exit code 0.</summary>
    [Fact]
    public async Task SelftestOfOneSetPrintsALinePerKernelAndExits0()
    {
        var (code, output, stdout) = await RunWritingToStdoutAsync("selftest", "--device", "cpu", "--set", "gqa_tiny");
        Assert.True(code == 0, output + stdout);
        var lines = stdout.Split('\n');
        foreach (var kernel in new[] { "kv-write", "prefill", "decode", "prefill-mat", "decode-mat" })
            Assert.Single(lines, line => line.StartsWith("gqa_tiny ") && line.Contains($" {kernel} ") && line.TrimEnd().EndsWith("ok"));
        Assert.Contains("all 5 checks passed", stdout);
    }

    /// <summary>The load check as a command: an in-process server over the synthetic runner, loopback only.</summary>
    [Fact]
    public async Task LoadTestCommandRunsAgainstAnInProcessServer()
    {
        var (code, output) = await RunAsync("loadtest", "--requests", "24", "--concurrency", "4", "--max-tokens", "4", "--synthetic-max-seq-len", "64");
        Assert.True(code == 0, $"exit code {code}: {output}");
    }

    /// <summary>What the model description says about the projections: tensor cores by default where they apply,
    /// CUDA cores with --cuda-cores, and --cuda-cores without effect where there is no tensor-core path.</summary>
    [Fact]
    public void ModelDescriptionSaysWhereTheF16ProjectionsRun()
    {
        Assert.Equal("f16 projections of 9+ tokens on tensor cores", ModelLoading.TensorCoreNotice(true, DenseSchedule.Warp, WeightDtype.F16));
        Assert.Equal("f16 projections on CUDA cores only (--cuda-cores)", ModelLoading.TensorCoreNotice(false, DenseSchedule.Warp, WeightDtype.F16));
        Assert.Null(ModelLoading.TensorCoreNotice(true, DenseSchedule.Serial, WeightDtype.F16));
        Assert.Null(ModelLoading.TensorCoreNotice(true, DenseSchedule.Warp, WeightDtype.F32));
        Assert.Equal("--cuda-cores has no effect: the serial dense schedule has no tensor-core path",
            ModelLoading.TensorCoreNotice(false, DenseSchedule.Serial, WeightDtype.F16));
        Assert.Equal("--cuda-cores has no effect: the tensor-core path takes f16 weights, not f32",
            ModelLoading.TensorCoreNotice(false, DenseSchedule.Warp, WeightDtype.F32));
        Assert.True(new ModelRequest(null, true, null, 1, null, DeviceKind.Auto, 2, 2, TimeSpan.Zero).TensorCores);
    }

    [Fact]
    public void SummaryLineReportsTokensRateAndTimeToFirstToken()
    {
        var completion = new Completion(1, [5, 6, 7, 8], FinishReason.Length,
            new CompletionUsage(PromptTokens: 12, CompletionTokens: 4, CachedPromptTokens: 8, Preemptions: 0, TimeToFirstToken: TimeSpan.FromMilliseconds(35)));
        Assert.Equal("4 tokens in 0.50 s (8.0 tokens/s), time to first token 35 ms, prompt 12 tokens (8 cached), finish length",
            ConsoleUi.SummaryLine(completion, TimeSpan.FromSeconds(0.5)));
    }

    private static string RepositoryRoot => typeof(CliTests).Assembly
        .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
        .Cast<System.Reflection.AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!;
}
