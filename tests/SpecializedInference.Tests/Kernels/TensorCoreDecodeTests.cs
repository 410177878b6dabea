using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Kernels;

/// <summary>The generated tensor-core decode (<c>DecodeMma</c>) on the CPU accelerator, against float64.</summary>
[CiSeconds(70)]
public sealed class TensorCoreDecodeTests : IClassFixture<CpuAcceleratorFixture>
{
    private readonly CpuAcceleratorFixture _fx;
    private readonly ITestOutputHelper _out;

    public TensorCoreDecodeTests(CpuAcceleratorFixture fx, ITestOutputHelper output)
    {
        _fx = fx;
        _out = output;
    }

    private void AssertClose(float[] actual, double[] expected, int headDim, string what, int seed) =>
        SpecializedKernelTests.AssertClose(_out, actual, expected, headDim, what, seed);

    public static TheoryData<string> TensorCoreDecodeSets() => new() { "gqa_hd128_long", "mqa8_hd64" };

    /// <summary>
    /// The tensor-core decode (<see cref="DecodeCores.Tensor"/>) against float64, launched twice with one plan: contexts
    /// of 1 key, a 16-key tile plus one, one under a block boundary and two partitions plus a few keys (the ticket and
    /// the combine), so its key tiles are full, partial and past the context. On the CPU accelerator the mma is computed
    /// with warp shuffles from the same fragments (checked against the hardware by <c>si selftest</c>'s tensor-core
    /// lines), which costs about a minute per preset on two cores; the two small sets here cover the emitter's cases
    /// (2 and 8 heads per K/V head, head_dim 128 and 64, 4 tiles per warp and 1) and <c>si selftest</c> runs every
    /// set's tensor-core decode on the device.
    /// </summary>
    [Theory]
    [MemberData(nameof(TensorCoreDecodeSets))]
    public void TensorCoreDecodeMatchesReference(string name)
    {
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == name);
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        int partition = set.Engine.Tiles.DecodePartitionSize;
        var seqs = new[] { new SeqSpec(1, 1), new SeqSpec(17, 1), new SeqSpec(shape.BlockSize * 3 - 1, 1), new SeqSpec(2 * partition + 9, 1) };
        var options = new AttentionOptions(KvDtype.F16, DecodeCores: DecodeCores.Tensor);
        var kernels = (AttentionKernelsBase)_fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
        Assert.True(kernels.DecodeOnTensorCores, $"{name} has no tensor-core decode");
        int blocks = seqs.Sum(s => (s.Context + shape.BlockSize - 1) / shape.BlockSize) + 2;
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F16, blocks, seed);
        var batch = h.Batch(seqs, seqs.Select(s => h.TakeBlocks((s.Context + shape.BlockSize - 1) / shape.BlockSize)).ToArray());
        using var plan = kernels.Plan(batch);
        var r = h.Step(batch, kernels, plan, attends: 2);
        string contexts = string.Join(",", seqs.Select(s => s.Context));
        AssertClose(r.Outputs[0], r.Expected, shape.HeadDim, $"{name} tensor-core decode ({contexts}), launch 1", seed);
        AssertClose(r.Outputs[1], r.Expected, shape.HeadDim, $"{name} tensor-core decode ({contexts}), launch 2 (same plan)", seed);
    }

    /// <summary>Where no tensor-core decode applies (an f32 cache, the expanded mapping, a shape without DecodeMma) the
    /// option falls back to the CUDA-core kernel, and says so.</summary>
    [Fact]
    public void TensorCoreDecodeFallsBackWhereItDoesNotApply()
    {
        foreach (var (name, options) in new[]
        {
            ("gqa_hd128_long", new AttentionOptions(KvDtype.F32, DecodeCores: DecodeCores.Tensor)),
            ("gqa_hd128_long", new AttentionOptions(KvDtype.F16, HeadMapping: HeadMapping.Expanded, DecodeCores: DecodeCores.Tensor)),
            ("gqa_tiny", new AttentionOptions(KvDtype.F16, DecodeCores: DecodeCores.Tensor)),
            ("gqa_hd128_long", new AttentionOptions(KvDtype.F16)),
        })
        {
            var set = KernelRegistry.All.Single(s => s.Name == name);
            var kernels = (AttentionKernelsBase)_fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
            Assert.False(kernels.DecodeOnTensorCores, $"{name} {options}");
        }
    }
}
