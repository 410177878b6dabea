using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Model.Safetensors;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The bundled docstrings model (the README's first command) against Hugging Face's float64 logits: four prompts,
/// forty greedy tokens each, every step compared.
/// </summary>
[CiSeconds(60)]
public sealed class DocstringsReferenceTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    [Fact]
    public void Bfloat16DocstringsModelMatchesHuggingFace()
    {
        // bf16 weights widen to f32 exactly, so the f32 engine meets the float64 reference like the f32 cases.
        // make_model.py cast the model with .to(torch.bfloat16) before .to(torch.float64), which also rounded
        // the rotary inv_freq buffer to bfloat16: the reference's logits were computed with those frequencies
        // (with float32 frequencies the logits differ by up to 3.6e-3 at prompt 1's first step).
        var dir = TestPaths.Docstrings;
        using var checkpoint = LlamaCheckpoint.Open(dir);
        Assert.All(checkpoint.Weights.Tensors, t => Assert.Equal(SafetensorsDtype.BF16, t.Dtype));
        using var runner = HfReferenceTests.Load(fixture, checkpoint, dir, ModelOptions.Float32 with { RopeFrequencies = RopeFrequencyPrecision.BFloat16 });
        HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output);
    }
}
