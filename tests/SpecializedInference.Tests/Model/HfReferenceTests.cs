using SpecializedInference.Kernels;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The whole decoder against Hugging Face transformers' float64 logits: every prompt position (one prefill step),
/// then every greedy decode step, for each reference checkpoint.
/// </summary>
public sealed class HfReferenceTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    public static TheoryData<string> Cases() => new() { "gqa-tiny", "mha-tiny", "gqa-hd128-long" };

    /// <summary>Runs prefill (all positions' logits) then greedy decode, comparing everything.</summary>
    internal static void RunAndCompare(LlamaModelRunner runner, string directory, double tolerance, bool compareLogits, ITestOutputHelper output)
    {
        var prompts = ReferenceData.Load(directory);
        for (int pi = 0; pi < prompts.Count; pi++)
        {
            var p = prompts[pi];
            string where = $"{Path.GetFileName(directory)} prompt {pi}";
            int total = p.Prompt.Length + p.Greedy.Length;
            var blocks = Enumerable.Range(0, (total + runner.BlockSize - 1) / runner.BlockSize).ToArray();
            int[] Blocks(int n) => blocks[..((n + runner.BlockSize - 1) / runner.BlockSize)];

            var all = runner.ExecuteAllLogits(StepBatch.Of(new SequenceChunk(pi, p.Prompt, 0, Blocks(p.Prompt.Length), true)));
            if (compareLogits && p.PromptLogits is not null)
                for (int pos = 0; pos < p.Prompt.Length; pos++)
                    ReferenceData.AssertRowClose(p.PromptLogits[pos], all[pos], tolerance, $"{where} prompt position {pos}");

            var logits = all[^1];
            var generated = new List<int>();
            for (int step = 0; step < p.Greedy.Length; step++)
            {
                if (compareLogits) ReferenceData.AssertRowClose(p.StepLogits[step], logits, tolerance, $"{where} decode step {step}");
                int next = Sampler.ArgMax(logits);
                generated.Add(next);
                Assert.True(next == p.Greedy[step], $"{where}: greedy token {step} is {next}, expected {p.Greedy[step]} (so far [{string.Join(", ", generated)}])");
                if (step + 1 == p.Greedy.Length) break;
                int pos = p.Prompt.Length + step;
                logits = runner.Execute(StepBatch.Of(new SequenceChunk(pi, new[] { next }, pos, Blocks(pos + 1), true)))[0]!;
            }

            output.WriteLine($"{where}: {p.Prompt.Length} prompt tokens, {p.Greedy.Length} greedy tokens match");
        }
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float32MatchesHuggingFace(string name)
    {
        var dir = TestPaths.HfCase(name);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { MaxSeqLen = 512 });
        output.WriteLine($"kernels: {runner.KernelSetName} (specialized {runner.IsSpecialized}); {runner.KernelNotice}");
        RunAndCompare(runner, dir, 1e-4, compareLogits: true, output);
    }
}
