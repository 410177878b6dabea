using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Kernels;

/// <summary>The generated tensor-core decode (<c>DecodeMma</c>) on the CPU accelerator, against float64.</summary>
[CiSeconds(45)]
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

    public static TheoryData<string, LargeBatchDecodePolicy, bool, DecodeLaunch> TensorCoreDecodeSets() => new()
    {
        { "gqa_hd128_long", LargeBatchDecodePolicy.Never, false, DecodeLaunch.StreamOrdered },
        // The kernel a programmatic launch runs (DecodeLaunch.Programmatic: its griddepcontrol marks are no-ops here, and
        // the K/V loads go out before the queries': the same results).
        { "mqa8_hd64", LargeBatchDecodePolicy.Never, false, DecodeLaunch.Programmatic },
        // Its large-batch decode (partitions of 128 on 2 warps), loaded with the stage clock of si attention-bench
        // --stage-times: the marks leave the results alone (the CPU accelerator has no clock to record).
        { "mqa8_hd64", LargeBatchDecodePolicy.Always, true, DecodeLaunch.StreamOrdered },
    };

    /// <summary>
    /// The tensor-core decode (<see cref="DecodeCores.Tensor"/>) against float64, launched twice with one plan: contexts
    /// of 1 key, a 16-key tile plus one, one under a block boundary and two partitions plus a few keys (the ticket and
    /// the combine), so its key tiles are full, partial and past the context. On the CPU accelerator the mma is computed
    /// with warp shuffles from the same fragments (checked against the hardware by <c>si selftest</c>'s tensor-core
    /// lines), twelve shuffles per mma, which costs tens of seconds per preset on two cores; the small sets here cover the emitter's cases
    /// (2 and 8 heads per K/V head, head_dim 128 and 64, 4 tiles per warp and 1, K in batches with V loaded before the
    /// softmax, and a large-batch decode) and <c>si selftest</c> runs every set's tensor-core decodes on the device.
    /// </summary>
    [Theory]
    [MemberData(nameof(TensorCoreDecodeSets))]
    public void TensorCoreDecodeMatchesReference(string name, LargeBatchDecodePolicy largeBatch, bool stageClock, DecodeLaunch launch)
    {
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == name);
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        var options = new AttentionOptions(KvDtype.F16, DecodeCores: DecodeCores.Tensor, LargeBatchDecode: largeBatch, TimeDecodeStages: stageClock,
            DecodeLaunch: launch);
        var kernels = (AttentionKernelsBase)_fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
        Assert.True(kernels.DecodeOnTensorCores, $"{name} has no tensor-core decode");
        Assert.Equal(launch == DecodeLaunch.Programmatic, kernels.DecodeProgrammatic);
        Assert.Null(kernels.ProgrammaticNotice);
        var layout = largeBatch == LargeBatchDecodePolicy.Always
            ? kernels.LargeBatchDecode ?? throw new InvalidOperationException($"{name} has no large-batch decode")
            : null;
        int partition = layout?.PartitionSize ?? set.Engine.Tiles.DecodePartitionSize;
        var seqs = new[] { new SeqSpec(1, 1), new SeqSpec(17, 1), new SeqSpec(shape.BlockSize * 3 - 1, 1), new SeqSpec(2 * partition + 9, 1) };
        int blocks = seqs.Sum(s => (s.Context + shape.BlockSize - 1) / shape.BlockSize) + 2;
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F16, blocks, seed);
        var batch = h.Batch(seqs, seqs.Select(s => h.TakeBlocks((s.Context + shape.BlockSize - 1) / shape.BlockSize)).ToArray());
        using var plan = kernels.Plan(batch);
        Assert.Equal(layout, ((AttentionPlan)plan).DecodeLayout);
        var r = h.Step(batch, kernels, plan, attends: 2);
        string what = $"{name} tensor-core decode{(layout is null ? "" : $" {layout}")} ({string.Join(",", seqs.Select(s => s.Context))})";
        AssertClose(r.Outputs[0], r.Expected, shape.HeadDim, $"{what}, launch 1", seed);
        AssertClose(r.Outputs[1], r.Expected, shape.HeadDim, $"{what}, launch 2 (same plan)", seed);
        // A row of stage times per decode group when clocked (all zero here: no clock on the CPU), none otherwise.
        var times = ((AttentionPlan)plan).ReadStageTimes();
        int groups = ((AttentionPlan)plan).NumDecodeItems * (layout?.HeadGroups ?? kernels.Dims.HeadGroups);
        Assert.Equal(stageClock ? groups * DecodeStage.SlotsPerGroup : 0, times.Length);
        Assert.All(times, t => Assert.Equal(0, t));
        Assert.Null(SpecializedInference.Kernels.Reference.DecodeStageSummary.From(times));
    }

    /// <summary>
    /// <see cref="LargeBatchDecodePolicy.Auto"/> plans a step for the large-batch decode once its groups' threads would
    /// be <see cref="AttentionKernelsBase.LargeBatchMinThreadShare"/> of the device's, and not before; Never and the
    /// CUDA-core decode never do. Planning only: nothing is launched.
    /// </summary>
    [Fact]
    public void LargeBatchDecodeIsChosenByTheStepsWork()
    {
        var set = KernelRegistry.All.Single(s => s.Name == "mqa8_hd64");
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        AttentionKernelsBase Kernels(AttentionOptions o) => (AttentionKernelsBase)_fx.Get($"mqa8_hd64 {o}", () => set.CreateAttentionKernels!(_fx.Accelerator, o));
        var auto = Kernels(new AttentionOptions(KvDtype.F16, DecodeCores: DecodeCores.Tensor));
        var large = auto.LargeBatchDecode!;
        long threadsPerPartition = (long)large.HeadGroups * large.Warps * 32;
        long needed = (long)Math.Ceiling(AttentionKernelsBase.LargeBatchMinThreadShare * _fx.Accelerator.MaxNumThreads / threadsPerPartition);
        // Decodes of one partition each: one short of the threshold, then at it.
        Assert.True(needed >= 2, $"the accelerator's {_fx.Accelerator.MaxNumThreads} threads leave no step below the threshold");
        int context = large.PartitionSize, below = (int)needed - 1, at = (int)needed;
        AttentionBatch Decodes(int n)
        {
            int blocksPerSeq = context / shape.BlockSize;
            return new AttentionBatch(
                QueryLens: Enumerable.Repeat(1, n).ToArray(),
                ContextLens: Enumerable.Repeat(context, n).ToArray(),
                BlockTables: Enumerable.Range(0, n).Select(s => Enumerable.Range(s * blocksPerSeq, blocksPerSeq).ToArray()).ToArray(),
                SlotMapping: Enumerable.Range(0, n).Select(s => (s + 1) * context - 1).ToArray());
        }
        DecodeLayout? Planned(AttentionKernelsBase k, int n)
        {
            using var plan = k.Plan(Decodes(n));
            return ((AttentionPlan)plan).DecodeLayout;
        }
        Assert.Null(Planned(auto, below));
        Assert.Equal(large, Planned(auto, at));
        Assert.Null(Planned(Kernels(new AttentionOptions(KvDtype.F16, DecodeCores: DecodeCores.Tensor, LargeBatchDecode: LargeBatchDecodePolicy.Never)), at));
        var cudaCores = Kernels(new AttentionOptions(KvDtype.F16));
        Assert.Null(cudaCores.LargeBatchDecode);
        Assert.Null(Planned(cudaCores, at));
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
