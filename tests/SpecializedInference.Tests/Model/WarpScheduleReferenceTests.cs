using SpecializedInference.Kernels;
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
[CiSeconds(45)]
public sealed class WarpScheduleReferenceTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    /// <summary>
    /// gqa-tiny's three prompts (5, 12 and 1 tokens) prefill as one 18-token step: the group RMSNorm and the batched
    /// projection with a full and a partial 16-token group, every position's logits compared. The decode steps
    /// (3 sequences) run the fused norm → projection → rope / SwiGLU kernels and the warp matvec. Three greedy
    /// tokens per prompt (the prefill's, then two decode steps): each warp shuffle costs three barriers of 32 OS
    /// threads on the CPU accelerator, and a decode step takes thousands (a lane's sums cross the warp together, one
    /// shuffle per level: a float at a time, this test took three times as long).
    /// Kernel by kernel, against float64: the batched projection's 8- and 16-token groups and its dispatch from
    /// Linear are BatchedLinearTests', the fused kernels' 1- to 8-token cases (MHA, GQA, MQA) FusedKernelTests'.
    /// The attention kernels do not depend on the dense schedule: every reference case runs them in HfReferenceTests.
    /// With the decode matvecs' L2 prefetch on (ModelOptions.WeightPrefetch): each warp's own rows, and each projection
    /// handed the next one, the last layer's down_proj the LM head (the prefetch itself is a no-op on the CPU accelerator).
    /// </summary>
    [Fact]
    public void Float32WarpScheduleMatchesHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = HfReferenceTests.Load(fixture, checkpoint, dir, ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp, WeightPrefetch = new WeightPrefetch(1 << 20, OwnRows: true) });
        Assert.Equal(DenseSchedule.Warp, runner.DenseSchedule);
        HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: 3);
    }

    /// <summary>
    /// The same with every decode matvec streaming its weights through shared memory (<see cref="MatvecLoads.AsyncCopy"/>):
    /// o_proj and down_proj (<see cref="AsyncCopyBodies.LinearWarpAsync{TW, TE}"/>), the fused qkv with its rope and cache
    /// writes, gate|up with SwiGLU and the LM head (<see cref="FusedKernelBodies.NormLinearWarpAsync{TW, TO}"/>). Kernel by
    /// kernel against float64: DenseKernelTests and FusedKernelTests.
    /// </summary>
    [Fact]
    public void AsyncCopyMatvecsMatchHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = HfReferenceTests.Load(fixture, checkpoint, dir,
            ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp, MatvecLoads = MatvecLoads.AsyncCopy });
        HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: 3);
    }

    /// <summary>
    /// The tensor-core projection inside the decoder: a 10-token prefill and a step of 9 sequences of 2 tokens (qkv, o,
    /// gate/up, down and the LM head on <see cref="TensorCoreBodies.LinearMma{TE}"/>, activations rounded to f16) give
    /// the logits of the CUDA-core kernels on the same f16 weights, within the f16 tests' 3e-2 of the largest logit,
    /// and not exactly (the rounded activations show, so the tensor-core path ran).
    /// The kernel itself is checked against float64 in TensorCoreTests; a small random model keeps the shuffles that
    /// stand in for mma on the CPU accelerator few.
    /// </summary>
    [Fact]
    public void TensorCoreProjectionsGiveTheCudaCoreLogits()
    {
        var config = new LlamaConfig(32, 2, 1, 16, 1, 64, 64, 1e-5, 64, 10000, RopeScaling.Default.Instance, false, 1, [2]);
        var options = new ModelOptions(WeightDtype.F16, KvDtype.F16) { DenseSchedule = DenseSchedule.Warp, MaxSeqLen = 32, NumKvBlocks = 20, KvBlockSize = 16 };
        var logits = new List<float[]>[2];
        foreach (bool tensorCores in new[] { false, true })
        {
            using var runner = new LlamaModelRunner(fixture.Accelerator, new RandomDeviceWeights(config, 7, std: 0.2), options with { TensorCores = tensorCores });
            var rows = new List<float[]>(runner.ExecuteAllLogits(StepBatch.Of(new SequenceChunk(0, [1, 5, 9, 13, 17, 21, 25, 29, 33, 37], 0, [0], true))));
            var decode = new StepBatch(Enumerable.Range(0, 9).Select(i => new SequenceChunk(1 + i, [3 + i, 40 + i], 0, [1 + i], true)).ToArray(), []);
            rows.AddRange(runner.Execute(decode)!);
            logits[tensorCores ? 1 : 0] = rows;
        }

        Assert.Equal(10 + 9, logits[1].Count);
        double anywhere = 0;
        for (int r = 0; r < logits[0].Count; r++)
        {
            double scale = Math.Max(1, logits[0][r].Max(Math.Abs)), worst = 0;
            for (int v = 0; v < config.VocabSize; v++) worst = Math.Max(worst, Math.Abs(logits[0][r][v] - logits[1][r][v]));
            output.WriteLine($"row {r}: max |difference| {worst:E2} (largest logit {scale:F2})");
            Assert.True(worst <= 3e-2 * scale, $"row {r}: {worst} > 3e-2 x {scale}");
            anywhere = Math.Max(anywhere, worst);
        }

        Assert.True(anywhere > 0, "the tensor-core runner gave bit-identical logits: its projections did not run on LinearMma");
    }
}
