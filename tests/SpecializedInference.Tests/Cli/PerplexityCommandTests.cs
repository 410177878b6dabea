using System.Text.Json;
using SpecializedInference.Cli.Commands;
using SpecializedInference.Model;
using SpecializedInference.Tests.Model;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Cli;

/// <summary><c>si perplexity</c> against the float64 C# Llama over the same windows.</summary>
[Collection("Console")]
[CiSeconds(5)]
public sealed class PerplexityCommandTests
{
    [Fact]
    public void Sliding_windows_score_every_token_after_the_first_once()
    {
        Assert.Equal([new PerplexityCommand.Window(0, 5, 1)], PerplexityCommand.Windows(5, context: 8, stride: 4));
        Assert.Equal([new PerplexityCommand.Window(0, 8, 1)], PerplexityCommand.Windows(8, context: 8, stride: 4));
        Assert.Equal([new PerplexityCommand.Window(0, 8, 1), new PerplexityCommand.Window(4, 5, 8)], PerplexityCommand.Windows(9, context: 8, stride: 4));
        // Stride 1: each window past the first scores its last token with the 7 before it.
        var windows = PerplexityCommand.Windows(12, context: 8, stride: 1);
        Assert.Equal(5, windows.Count);
        Assert.All(windows.Skip(1), w => Assert.Equal(w.Begin + w.Length - 1, w.FirstScored));
        Assert.Equal(Enumerable.Range(1, 11), windows.SelectMany(w => Enumerable.Range(w.FirstScored, w.Begin + w.Length - w.FirstScored)));
    }

    /// <summary>18 tokens of gqa-tiny in windows of 8 with stride 5: [0, 8) scores 1..7, [5, 13) scores 8..12 and [10, 18)
    /// scores 13..17, each under the float64 model run on that window alone.</summary>
    [Fact]
    public void Perplexity_is_the_float64_models_over_the_same_windows()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var reference = ReferenceData.Load(dir)[1];
        int[] ids = [.. reference.Prompt, .. reference.Greedy[..6]];
        Assert.Equal(18, ids.Length);
        var (code, stdout, stderr) = Model.CliTests.Run("perplexity", "--model", dir, "--prompt-ids", string.Join(",", ids), "--context", "8", "--stride", "5",
            "--device", "cpu", "--weight-dtype", "f32", "--kv-dtype", "f32", "--json");
        Assert.True(code == 0, stderr);
        using var doc = JsonDocument.Parse(stdout);
        var root = doc.RootElement;

        double nll = 0;
        using (var checkpoint = LlamaCheckpoint.Open(dir))
            foreach (var (begin, end, first) in new[] { (0, 8, 1), (5, 13, 8), (10, 18, 13) })
            {
                var logits = Float64LlamaTests.Reference(checkpoint.Config, checkpoint.Weights, ids[begin..end]);
                for (int t = first; t < end; t++)
                {
                    var row = logits[t - begin - 1];
                    double max = row.Max();
                    nll -= row[ids[t]] - max - Math.Log(row.Sum(x => Math.Exp(x - max)));
                }
            }
        Assert.Equal(17, root.GetProperty("tokens_scored").GetInt32());
        Assert.Equal(3, root.GetProperty("windows").GetInt32());
        Assert.Equal(nll / 17, root.GetProperty("nll_per_token").GetDouble(), 4);
        Assert.Equal(Math.Exp(nll / 17), root.GetProperty("perplexity").GetDouble(), 3);
    }

    [Fact]
    public void A_stride_as_long_as_the_context_and_a_single_token_are_refused()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        // Spectre throws a failed Validate() under PropagateExceptions.
        var misuse = Assert.ThrowsAny<Exception>(() => Model.CliTests.Run("perplexity", "--model", dir, "--prompt-ids", "5,17,3", "--context", "8", "--stride", "8"));
        Assert.Contains("--stride (8) must be less than --context (8)", misuse.Message);
        var (code, _, stderr) = Model.CliTests.Run("perplexity", "--model", dir, "--prompt-ids", "5", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("the text is 1 token; at least 2 are needed", stderr);
    }
}
