using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The GPU's dense schedule forced on the CPU accelerator (where the default is the serial one), inside the whole
/// decoder against Hugging Face's float64 logits. Its own class so that it runs beside <see cref="HfReferenceTests"/>.
/// </summary>
[CiSeconds(85)]
public sealed class WarpScheduleReferenceTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    /// <summary>
    /// gqa-tiny's three prompts (5, 12 and 1 tokens) prefill as one 18-token step: the group RMSNorm and the batched
    /// projection with a full and a partial 16-token group, every position's logits compared. The decode steps
    /// (3 sequences) run the fused norm → projection → rope / SwiGLU kernels and the warp matvec. Three greedy
    /// tokens per prompt (the prefill's, then two decode steps): each warp shuffle costs three barriers of 32 OS
    /// threads on the CPU accelerator, and a decode step takes tens of thousands.
    /// Kernel by kernel, against float64: the batched projection's 8- and 16-token groups and its dispatch from
    /// Linear are BatchedLinearTests', the fused kernels' 1- to 8-token cases (MHA, GQA, MQA) FusedKernelTests'.
    /// The attention kernels do not depend on the dense schedule: every reference case runs them in HfReferenceTests.
    /// </summary>
    [Fact]
    public void Float32WarpScheduleMatchesHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = HfReferenceTests.Load(fixture, checkpoint, dir, ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp });
        Assert.Equal(DenseSchedule.Warp, runner.DenseSchedule);
        HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: 3);
    }
}
