using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// A whole model with its decode matvecs streaming their weights through shared memory (<see cref="MatvecLoads.AsyncCopy"/>):
/// the per-stage o_proj and down_proj (<see cref="AsyncCopyBodies.LinearWarpAsync{TW, TE}"/>) and the fused qkv with its
/// rope and cache writes, gate|up with SwiGLU and the LM head (<see cref="FusedKernelBodies.NormLinearWarpAsync{TW, TO}"/>),
/// against Hugging Face's float64 logits. (Kernel by kernel, against float64: DenseKernelTests and FusedKernelTests.)
/// </summary>
[CiSeconds(25)]
public sealed class MatvecLoadsTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    [Fact]
    public void AsyncCopyMatvecsMatchHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = HfReferenceTests.Load(fixture, checkpoint, dir,
            ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp, MatvecLoads = MatvecLoads.AsyncCopy });
        HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: 3);
    }
}
