using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The grid-synced layer tail and whole layer (<see cref="DecodeLaunches.GridSyncedTails"/>,
/// <see cref="DecodeLaunches.GridSyncedLayers"/>, <see cref="LayerTailBodies"/>) and their <see cref="GridBarrier"/>. The default CPU accelerator has one multiprocessor, which runs a launch's groups one after
/// another, so there the tail runs as one group; a simulated device with 3 multiprocessors runs 3 groups at once, which
/// is what a GPU does and what the barrier is for.
/// </summary>
[CiSeconds(70)]
public sealed class LayerTailTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    private const int Rounds = 4, GroupThreads = 64;

    /// <summary>Round r: each thread writes its slot, waits, reads the next group's slot (which that group wrote before
    /// the barrier), waits again before the next round overwrites it; a wrong or stale value counts an error.</summary>
    internal static void BarrierRounds(ArrayView<int> slots, ArrayView<int> errors, GridBarrier barrier)
    {
        int g = Grid.IdxX, t = Group.IdxX, groups = Grid.DimX;
        int neighbour = (g + 1) % groups;
        for (int r = 1; r <= Rounds; r++)
        {
            slots[g * GroupThreads + t] = r * 100_000 + g * GroupThreads + t;
            barrier.Wait();
            if (slots[neighbour * GroupThreads + t] != r * 100_000 + neighbour * GroupThreads + t) Atomic.Add(ref errors[0], 1);
            barrier.Wait();
        }
    }

    [Fact]
    public void GridBarrierOrdersEveryGroupsWritesBeforeAnyGroupsReads()
    {
        using var handle = AcceleratorFactory.CreateCpu(device: new CPUDevice(32, GroupThreads / 32, 3));
        var a = handle.Accelerator;
        var kernel = a.LoadStreamKernel<ArrayView<int>, ArrayView<int>, GridBarrier>(BarrierRounds);
        using var slots = a.Allocate1D(Enumerable.Repeat(-1, 3 * GroupThreads).ToArray());
        using var errors = a.Allocate1D(new int[1]);
        using var state = a.Allocate1D(new int[GridBarrier.StateLength]);
        kernel(new KernelConfig(3, GroupThreads), slots.View, errors.View, new GridBarrier { State = state.View, Groups = 3, SpinLimit = 1 << 28 });
        a.Synchronize();
        Assert.Equal(0, errors.GetAsArray1D()[0]);
        var s = state.GetAsArray1D();
        Assert.Equal((0, 0), (s[GridBarrier.Word], s[GridBarrier.GaveUp]));   // an even number of flips of the top bit, none given up
    }

    /// <summary>Two groups on one multiprocessor never meet (the second starts when the first ends): the first group's
    /// waits give up after their polls and flag it, and the launch ends instead of hanging.</summary>
    [Fact]
    public void AGridBarrierWhoseGroupsAreNotResidentGivesUpInsteadOfHanging()
    {
        var a = fixture.Accelerator;
        Assert.Equal(1, a.NumMultiprocessors);
        var kernel = a.LoadStreamKernel<ArrayView<int>, ArrayView<int>, GridBarrier>(BarrierRounds);
        using var slots = a.Allocate1D(new int[2 * GroupThreads]);
        using var errors = a.Allocate1D(new int[1]);
        using var state = a.Allocate1D(new int[GridBarrier.StateLength]);
        kernel(new KernelConfig(2, GroupThreads), slots.View, errors.View, new GridBarrier { State = state.View, Groups = 2, SpinLimit = 1000 });
        a.Synchronize();
        Assert.Equal(1, state.GetAsArray1D()[GridBarrier.GaveUp]);
    }

    /// <summary>
    /// A random 2-layer model (GQA 4/2 heads of 16, hidden 64, intermediate 96: a tail with the next layer's qkv and the
    /// last one without): a 5-token prefill of two sequences (per-stage launches in both: the tail serves up to 4
    /// tokens), then decode steps of 1 and 2 tokens, as the tails' one group on the fixture: plain, and with each warp's own
    /// rows in L2, matvec depths 8/4/8 and the preloaded tail's launch (the tail kernel's other variants; its rows are
    /// shorter than a step, so nothing is carried here: <c>DenseSelfTest</c> checks the carry on longer rows). The grid-synced runner runs two launches per
    /// layer where the per-stage one runs five, and gives the same logits bit for bit: the same per-warp kernels on the
    /// same data. (Several groups meeting at the barriers, against Hugging Face: <see cref="GridSyncedLayersMatchHuggingFace"/>.)
    /// </summary>
    [Fact]
    public void GridSyncedLayerTailsGiveThePerStageLogitsBitForBit()
    {
        var a = fixture.Accelerator;
        var config = new LlamaConfig(64, 4, 2, 16, 2, 96, 80, 1e-5, 64, 10000, RopeScaling.Default.Instance, false, 1, [2]);
        var options = new ModelOptions(WeightDtype.F16, KvDtype.F16) { DenseSchedule = DenseSchedule.Warp, MaxSeqLen = 32, NumKvBlocks = 12, KvBlockSize = 8 };
        var variants = new[]
        {
            options with { DecodeLaunches = DecodeLaunches.GridSyncedTails },
            options with { DecodeLaunches = DecodeLaunches.GridSyncedTailsPreloaded, WeightPrefetch = new WeightPrefetch(1 << 20, OwnRows: true), MatvecDepth = new MatvecDepth(8, 4, 8) },
        };
        var expected = Steps(a, config, options, out var perStage);
        foreach (var variant in variants)
        {
            var actual = Steps(a, config, variant, out var gridSynced);
            Assert.Equal(expected.Count, actual.Count);
            for (int i = 0; i < expected.Count; i++)
                Assert.True(expected[i].AsSpan().SequenceEqual(actual[i]), $"{variant.DecodeLaunches} {variant.WeightPrefetch} {variant.MatvecDepth}: logits row {i} differs");
            // Per decode step: the embedding, layer 0's qkv, a tail per layer (the per-stage runner: four launches per layer), the LM head.
            Assert.Equal(perStage.Dense - (3 * config.NumHiddenLayers - 1), gridSynced.Dense);
            Assert.Equal(perStage.AttentionCalls, gridSynced.AttentionCalls);
        }
    }

    /// <summary>
    /// Whole grid-synced layers (<see cref="DecodeLaunches.GridSyncedLayers"/>) against Hugging Face's float64 logits:
    /// gqa-tiny (8/2 heads of 16, so its generated set hands its decode over) on 3 simulated multiprocessors, whose 3
    /// groups share the decode's groups and the tail's rows and meet at every barrier. Its three prompts prefill in one
    /// step (per-stage launches: the grid-synced ones serve up to 4 tokens), then decode 3 sequences a step, each layer one
    /// launch that does not call the attention set.
    /// </summary>
    [Fact]
    public void GridSyncedLayersMatchHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var handle = AcceleratorFactory.CreateCpu(device: new CPUDevice(32, 8, 3));
        using var runner = HfReferenceTests.Load(handle.Accelerator, checkpoint, dir,
            ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp, DecodeLaunches = DecodeLaunches.GridSyncedLayers });
        Assert.True(runner.IsSpecialized);
        HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: 3);
        // The last decode step: the embedding, layer 0's qkv, a launch per layer, the LM head (the CPU accelerator picks greedy
        // tokens on the host: no argmax launch); no call into the attention set.
        Assert.Equal((3L + runner.Config.NumHiddenLayers, 0), (runner.LastStepLaunches.Dense, runner.LastStepLaunches.AttentionCalls));
    }

    /// <summary>A stage timeline of grid-synced decode steps (what <c>report --stage-times</c> prints for its grid-synced
    /// rows): the first layer's qkv once per step, then an attention and a tail per layer, each tail's weights those of
    /// its layer's o_proj, gate|up and down_proj and of the next layer's qkv.</summary>
    [Fact]
    public void AStageTimelineOfGridSyncedStepsHasATailPerLayer()
    {
        using var profiled = AcceleratorFactory.CreateCpu(new AcceleratorOptions(DeviceKind.Cpu, Profiling: true));
        var config = new LlamaConfig(64, 4, 2, 16, 2, 96, 80, 1e-5, 64, 10000, RopeScaling.Default.Instance, false, 1, [2]);
        var options = new ModelOptions(WeightDtype.F32, KvDtype.F32) { DenseSchedule = DenseSchedule.Warp, MaxSeqLen = 32, NumKvBlocks = 4, KvBlockSize = 8,
            DecodeLaunches = DecodeLaunches.GridSyncedTails };
        using var runner = new LlamaModelRunner(profiled.Accelerator, new RandomDeviceWeights(config, 5), options);
        var timeline = runner.StartStageTimeline();
        runner.Execute(StepBatch.Of(new SequenceChunk(0, [1, 2, 3], 0, [0], true)));
        for (int i = 0; i < 2; i++) runner.Execute(StepBatch.Of(new SequenceChunk(0, [4 + i], 3 + i, [0], true)));
        Assert.Equal(2, timeline.Steps);
        var stages = timeline.MeanStep(runner.StageWeightBytes);
        Assert.Equal(new[] { StepStages.Embedding, StepStages.Qkv, StepStages.Attention, StepStages.LayerTail, StepStages.LmHead, StepStages.ArgMax, StepStages.CopyOut },
            stages.Select(s => s.Stage));
        Assert.Equal(new double[] { 1, 1, 2, 2, 1, 1, 1 }, stages.Select(s => s.CallsPerStep));
        long qkv = (long)(config.QueryDim + 2 * config.KeyValueDim) * config.HiddenSize * 4;
        long mlp = 3L * config.IntermediateSize * config.HiddenSize * 4, o = (long)config.HiddenSize * config.QueryDim * 4;
        Assert.Equal(qkv, stages.Single(s => s.Stage == StepStages.Qkv).WeightBytes);
        Assert.Equal(2 * (o + mlp) + qkv, stages.Single(s => s.Stage == StepStages.LayerTail).WeightBytes);
    }

    /// <summary>A prefill, then decode steps of 1 and 2 sequences; every logits row in order, and the last step's launches.</summary>
    private static List<float[]> Steps(Accelerator a, LlamaConfig config, ModelOptions options, out StepLaunches lastDecode)
    {
        using var runner = new LlamaModelRunner(a, new RandomDeviceWeights(config, 11, std: 0.3), options);
        var rows = new List<float[]>();
        rows.AddRange(runner.Execute(new StepBatch([new SequenceChunk(0, [1, 5, 9], 0, [0], true), new SequenceChunk(1, [7, 3], 0, [1], true)], []))!.Select(r => r!));
        rows.AddRange(runner.Execute(StepBatch.Of(new SequenceChunk(0, [12], 3, [0], true)))!.Select(r => r!));
        rows.AddRange(runner.Execute(new StepBatch([new SequenceChunk(0, [4], 4, [0], true), new SequenceChunk(1, [60], 2, [1], true)], []))!.Select(r => r!));
        lastDecode = runner.LastStepLaunches;
        runner.Accelerator.Synchronize();
        return rows;
    }
}
