using System.Text.Json;
using SpecializedInference.Cli.Commands;
using Spectre.Console.Cli;

namespace SpecializedInference.Tests.Model;

/// <summary>The <c>si generate</c> and <c>si tokenize</c> commands, run in-process with their output captured.</summary>
[Collection("Console")]
public sealed class CliTests
{
    /// <summary>Runs <c>si generate</c>/<c>si tokenize</c> in-process and captures stdout and stderr.</summary>
    internal static (int Code, string Out, string Err) Run(params string[] args)
    {
        var app = new CommandApp();
        app.Configure(c =>
        {
            c.PropagateExceptions();
            c.AddCommand<GenerateCommand>("generate");
            c.AddCommand<TokenizeCommand>("tokenize");
            c.AddCommand<PerplexityCommand>("perplexity");
        });
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        Console.SetOut(stdout);
        Console.SetError(stderr);
        try
        {
            return (app.Run(args), stdout.ToString(), stderr.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldErr);
        }
    }

    [Fact]
    public void GenerateJsonReproducesTheReferenceGreedyTokensAndLogits()
    {
        var dir = TestPaths.HfCase("mha-tiny");
        var p = ReferenceData.Load(dir)[1];
        var (code, stdout, stderr) = Run("generate", "--model", dir, "--prompt-ids", string.Join(",", p.Prompt), "--max-new-tokens", "6",
            "--greedy", "--ignore-eos", "--json", "--device", "cpu", "--weight-dtype", "f32", "--kv-dtype", "f32");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        Assert.Equal(p.Greedy[..6], root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        var steps = root.GetProperty("step_logits").EnumerateArray().ToArray();
        Assert.Equal(6, steps.Length);
        for (int s = 0; s < steps.Length; s++)
            ReferenceData.AssertRowClose(p.StepLogits[s], steps[s].EnumerateArray().Select(e => e.GetSingle()).ToArray(), 1e-4, $"step {s}");
        Assert.Equal("mha_tiny", root.GetProperty("engine").GetString());
        Assert.True(root.GetProperty("specialized").GetBoolean());
        Assert.StartsWith("cpu", root.GetProperty("device").GetString());
        Assert.True(root.GetProperty("prefill_ms").GetDouble() > 0);
        Assert.True(root.GetProperty("decode_tokens_per_s").GetDouble() > 0);
        Assert.True(root.GetProperty("first_decode_ms").GetDouble() > 0);
    }

    /// <summary>--stage-times: the decode steps after the first timed stage by stage (JSON: stage_times; readable: a line
    /// per stage), the reference's tokens all the same. (With --prompts-file: a usage error, Cli/CliTests.)</summary>
    [Fact]
    public void StageTimesListEveryStageOfTheDecodeStepAndLeaveTheTokensAlone()
    {
        var dir = TestPaths.HfCase("mha-tiny");
        var p = ReferenceData.Load(dir)[1];
        using var doc = GreedyF32Json(dir, p, 4, "--stage-times").Json;
        var stages = doc.RootElement.GetProperty("stage_times").EnumerateArray().ToArray();
        Assert.Equal(new[] { "embedding", "norm+qkv+rope", "attention", "o_proj", "norm+gate|up+silu", "down_proj", "norm+lm_head", "argmax", "copy out" },
            stages.Select(t => t.GetProperty("stage").GetString()));
        Assert.All(stages, t => Assert.True(t.GetProperty("seconds_per_step").GetDouble() >= 0));
        Assert.True(stages.Single(t => t.GetProperty("stage").GetString() == "o_proj").GetProperty("weight_bytes_per_step").GetInt64() > 0);

        var (code, _, stderr) = Run("generate", "--model", dir, "--prompt-ids", string.Join(",", p.Prompt), "--max-new-tokens", "3",
            "--device", "cpu", "--stage-times");
        Assert.True(code == 0, stderr);
        Assert.Contains("device time of a decode step by stage", stderr);
        Assert.Contains("  norm+lm_head ", stderr);
    }

    /// <summary>The CPU accelerator's serial dense schedule has no tensor-core path to turn off: --cuda-cores is reported as
    /// having no effect, not silently dropped, and the tokens are the reference's.</summary>
    [Fact]
    public void CudaCoresOnTheCpuAcceleratorAreReportedWithoutEffect()
    {
        var dir = TestPaths.HfCase("mha-tiny");
        var p = ReferenceData.Load(dir)[1];
        var (json, stderr) = GreedyF32Json(dir, p, 2, "--cuda-cores");
        json.Dispose();
        Assert.Contains("--cuda-cores has no effect", stderr);
        Assert.Contains("the serial dense schedule has no tensor-core path", stderr);
    }

    /// <summary><c>si generate --json</c>, greedy, f32 weights and cache on the CPU accelerator, with <paramref name="extra"/>
    /// options: it must succeed and give the reference's first <paramref name="newTokens"/> greedy tokens.</summary>
    private (JsonDocument Json, string Stderr) GreedyF32Json(string dir, ReferencePrompt p, int newTokens, params string[] extra)
    {
        var (code, stdout, stderr) = Run(["generate", "--model", dir, "--prompt-ids", string.Join(",", p.Prompt), "--max-new-tokens", newTokens.ToString(),
            "--greedy", "--ignore-eos", "--json", "--device", "cpu", "--weight-dtype", "f32", "--kv-dtype", "f32", .. extra]);
        Assert.True(code == 0, stderr);
        var doc = JsonDocument.Parse(stdout);
        Assert.Equal(p.Greedy[..newTokens], doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray());
        return (doc, stderr);
    }

    /// <summary>--prefetch-weights, --fused-matvec-launch, --decode-launches, --matvec-loads, --stream and --cuda-graphs on the
    /// CPU accelerator: reported as having no effect (prefetch.L2 is CUDA's; the serial schedule has no fused warp matvec; the
    /// CPU accelerator has no streams and no graphs), the reference's tokens; malformed values are usage errors.</summary>
    [Fact]
    public void MatvecOptionsOnTheCpuAcceleratorAreReportedWithoutEffect()
    {
        var dir = TestPaths.HfCase("mha-tiny");
        var p = ReferenceData.Load(dir)[1];
        string ids = string.Join(",", p.Prompt);
        var (code, stdout, stderr) = Run("generate", "--model", dir, "--prompt-ids", ids, "--max-new-tokens", "2",
            "--greedy", "--ignore-eos", "--json", "--device", "cpu", "--weight-dtype", "f32", "--kv-dtype", "f32", "--prefetch-weights", "start:1");
        Assert.True(code == 0, stderr);
        Assert.Contains("--prefetch-weights has no effect", stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(p.Greedy[..2], doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray());

        // Each option: a value that has no effect on the serial schedule (said on stderr), and a malformed one (a usage error).
        foreach (var (option, value, notice, bad, error) in new[]
                 {
                     ("--prefetch-weights", "start:1", "--prefetch-weights has no effect", "lots", "weight prefetch 'lots': expected a positive number of MiB"),
                     ("--fused-matvec-launch", "2:88", "--fused-matvec-launch has no effect", "3:88", "WarpsPerGroup must be 1, 2, 4 or 8"),
                     ("--decode-launches", "grid-synced-layers", "--decode-launches grid-synced-layers has no effect", "one", "--decode-launches 'one': expected per-stage, per-stage-pdl, grid-synced-tails, grid-synced-tails-preloaded or grid-synced-layers"),
                     ("--matvec-loads", "async-copy", "--matvec-loads async-copy has no effect", "async", "--matvec-loads 'async': expected registers or async-copy"),
                     ("--stream", "non-blocking", "--stream non-blocking has no effect", "own", "--stream 'own': expected legacy or non-blocking"),
                 })
        {
            (code, _, stderr) = Run("generate", "--model", dir, "--prompt-ids", ids, "--max-new-tokens", "1", "--device", "cpu", option, value);
            Assert.True(code == 0, stderr);
            Assert.Contains(notice, stderr);
            (code, _, stderr) = Run("generate", "--model", dir, "--prompt-ids", ids, "--device", "cpu", option, bad);
            Assert.Equal(2, code);
            Assert.Contains(error, stderr);
        }

        // --cuda-graphs asks for the non-blocking stream (which the CPU accelerator does not have either) and says why no
        // step was captured.
        (code, _, stderr) = Run("generate", "--model", dir, "--prompt-ids", ids, "--max-new-tokens", "2", "--device", "cpu", "--cuda-graphs");
        Assert.True(code == 0, stderr);
        Assert.Contains("--stream non-blocking has no effect", stderr);
        Assert.Contains("--cuda-graphs: CUDA graphs need a CUDA device", stderr);
        Assert.Contains("CUDA graphs: 0 decode steps captured, 0 replayed", stderr);
    }

    /// <summary>The README's first command, shortened: text in, the bundled model's greedy continuation out as text (the
    /// start of the transformers reference's), then the readable summary line on stderr.</summary>
    [Fact]
    public void TextPromptOnTheBundledModelPrintsTheReferenceContinuation()
    {
        var reference = ReferenceData.Load(TestPaths.Docstrings).Single(p => p.PromptText == "This module provides");
        var (code, stdout, stderr) = Run("generate", "--model", TestPaths.Docstrings, "--prompt", "This module provides", "--max-new-tokens", "8", "--device", "cpu");
        Assert.True(code == 0, stderr);
        string line = stdout.Split('\n')[0];
        Assert.StartsWith("This module provides ", line);
        string continuation = line["This module provides ".Length..];
        Assert.True(continuation.Length >= 10, $"a continuation of 8 tokens, got '{continuation}'");
        Assert.StartsWith(continuation, reference.GreedyText);
        Assert.Contains("8 tokens (max new tokens)", stderr);
        Assert.Contains("attention kernels: docstrings_bf16 (specialized)", stderr);
    }

    /// <summary>Sampling from the command line: with a seed, temperature, top-k and top-p the run is reproducible, every
    /// token comes from the vocabulary and each step's logits are reported; without --greedy or --temperature, greedy.</summary>
    [Fact]
    public void SeededSamplingRepeatsItselfFromTheCommandLine()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[0];
        int[] Sample(params string[] extra)
        {
            var (code, stdout, stderr) = Run(["generate", "--model", dir, "--prompt-ids", string.Join(",", p.Prompt), "--max-new-tokens", "8",
                "--ignore-eos", "--json", "--device", "cpu", "--weight-dtype", "f32", "--kv-dtype", "f32", .. extra]);
            Assert.True(code == 0, stderr);
            using var doc = JsonDocument.Parse(stdout);
            Assert.Equal(8, doc.RootElement.GetProperty("step_logits").GetArrayLength());
            return doc.RootElement.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        }
        string[] sampling = ["--temperature", "1.5", "--top-k", "50", "--top-p", "0.95", "--seed", "7"];
        var first = Sample(sampling);
        Assert.Equal(8, first.Length);
        Assert.All(first, t => Assert.InRange(t, 0, 511));
        Assert.Equal(first, Sample(sampling));
        Assert.Equal(p.Greedy[..8], Sample());
    }

    /// <summary>Penalties from the command line, on the bundled model: each token is the argmax of its step's logits
    /// (reported before penalties) penalized by <see cref="Sampling.PenaltyReference"/>, and the JSON's text is what the
    /// tokens add to the prompt's text, leading space included.</summary>
    [Fact]
    public void PenaltiesChooseTheArgmaxOfThePenalizedLogitsAndTheTextContinuesThePrompt()
    {
        var (code, stdout, stderr) = Run("generate", "--model", TestPaths.Docstrings, "--prompt", "Return the", "--max-new-tokens", "8",
            "--repetition-penalty", "3", "--frequency-penalty", "0.5", "--presence-penalty", "0.25", "--json", "--device", "cpu");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;
        int[] prompt = root.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        int[] tokens = root.GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var penalties = new SpecializedInference.Sampling.LogitPenalties(3, 0.5, 0.25);
        int changed = 0;
        for (int i = 0; i < tokens.Length; i++)
        {
            float[] logits = root.GetProperty("step_logits")[i].EnumerateArray().Select(e => e.GetSingle()).ToArray();
            double[] row = Sampling.PenaltyReference.Apply(logits, prompt, tokens[..i], penalties);
            Assert.Equal(Array.IndexOf(row, row.Max()), tokens[i]);
            changed += Array.IndexOf(logits, logits.Max()) != tokens[i] ? 1 : 0;
        }
        // Unpenalized, "Return the" continues "file descriptor of the un…": the repeated "the" is penalized away.
        Assert.True(changed > 0, "the penalties changed no choice");
        var tokenizer = SpecializedInference.Tokenization.TextTokenizer.TryLoad(TestPaths.Docstrings)!;
        string text = root.GetProperty("text").GetString()!;
        Assert.Equal(tokenizer.Decode([.. prompt, .. tokens])[tokenizer.Decode(prompt).Length..], text);
        Assert.StartsWith(" ", text);
    }

    [Fact]
    public void TextPromptWithoutTokenizerSaysOnlyPromptIdsWork()
    {
        var (code, _, stderr) = Run("generate", "--model", TestPaths.HfCase("gqa-tiny"), "--prompt", "hello", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("only --prompt-ids can be used", stderr);
    }

    [Fact]
    public void TokenizeJsonGivesIdsAndPiecesWithoutBos()
    {
        var (code, stdout, stderr) = Run("tokenize", "--model", TestPaths.Docstrings, "--text", "Return the number of items.", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        Assert.Equal(new[] { 420, 264, 562, 298, 336, 427, 935, 946 }, doc.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(new[] { "\u2581Return", "\u2581the", "\u2581number", "\u2581of", "\u2581it", "em", "s", "." },
            doc.RootElement.GetProperty("pieces").EnumerateArray().Select(e => e.GetString()));
    }
    /// <summary><c>--chat</c> with <c>--system</c> (generate and tokenize): the bundled model's files with Llama 2's published chat template beside
    /// them. The prompt is the template's rendering with its <c>&lt;s&gt;</c> as the BOS id (once: the template writes it,
    /// so none is added), as the server's chat endpoint encodes it. A checkpoint without a template is a clear error.</summary>
    [Fact]
    public void ChatRendersTheCheckpointsTemplateAndEncodesItsSpecialTokens()
    {
        using var folder = new SpecializedInference.Tests.Text.ChatCheckpointFolder("llama-2-chat.jinja");
        string dir = folder.Path;
        var (code, stdout, stderr) = Run("generate", "--model", dir, "--chat", "Return the", "--system", "Be brief.", "--max-new-tokens", "2",
            "--json", "--device", "cpu");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        int[] promptIds = doc.RootElement.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray();
        var tokenizer = SpecializedInference.Tokenization.TextTokenizer.TryLoad(TestPaths.Docstrings)!;
        int[] expected = [tokenizer.BosId, .. tokenizer.Encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nReturn the [/INST]", addBos: false)];
        Assert.Equal(expected, promptIds);
        // si tokenize --chat shows the same ids, with the rendered text they came from.
        (code, stdout, stderr) = Run("tokenize", "--model", dir, "--chat", "Return the", "--system", "Be brief.", "--json");
        Assert.True(code == 0, stderr);
        using var tokens = JsonDocument.Parse(stdout);
        Assert.Equal(expected, tokens.RootElement.GetProperty("ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal("<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nReturn the [/INST]", tokens.RootElement.GetProperty("text").GetString());
        Assert.Equal("<s>", tokens.RootElement.GetProperty("pieces")[0].GetString());

        (code, _, stderr) = Run("generate", "--model", TestPaths.Docstrings, "--chat", "Return the", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("has no chat template", stderr);
        var misuse = Assert.ThrowsAny<Exception>(() => Run("generate", "--model", dir, "--prompt", "Return the", "--system", "Be brief."));
        Assert.Contains("--system goes with --chat", misuse.Message);
    }
}
