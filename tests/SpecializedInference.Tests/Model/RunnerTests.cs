using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Accelerators;
using SpecializedInference.Engine;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Model;

/// <summary>The runner and generator beyond the reference logits: kernel selection, chunked prefill, block copies, EOS.</summary>
[CiSeconds(25)]
public sealed class RunnerTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    /// <summary>Each checkpoint through its generated set and through the generic kernels (forced): the reference's logits and
    /// tokens both ways. gqa-tiny runs every decode step; mha-tiny (MHA, head_dim 32) and gqa-hd128-long (2 query heads per
    /// K/V head, head_dim 128) the first four of each prompt, after a prefill of every position.</summary>
    [Theory]
    [InlineData("gqa-tiny", "gqa_tiny", int.MaxValue)]
    [InlineData("mha-tiny", "mha_tiny", 4)]
    [InlineData("gqa-hd128-long", "gqa_hd128_long", 4)]
    public void SpecializedAndForcedGenericKernelsGiveTheReferenceTokens(string name, string kernelSet, int decodeSteps)
    {
        // configs/{name}.json is this checkpoint's config, so a generated kernel set matches it.
        var dir = TestPaths.HfCase(name);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        int[][] tokens = new int[2][];
        foreach (var generic in new[] { false, true })
        {
            using var runner = HfReferenceTests.Load(fixture, checkpoint, dir, ModelOptions.Float32 with { ForceGenericKernels = generic });
            output.WriteLine($"{runner.KernelSetName}: specialized {runner.IsSpecialized}; {runner.KernelNotice}");
            Assert.Equal(!generic, runner.IsSpecialized);
            Assert.Equal(generic ? "generic" : kernelSet, runner.KernelSetName);
            tokens[generic ? 1 : 0] = HfReferenceTests.RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: decodeSteps)
                .SelectMany(t => t).ToArray();
        }

        Assert.Equal(tokens[0], tokens[1]);
    }

    [Fact]
    public void UnmatchedShapeRunsGenericWithANoticeNamingTheConfig()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        // No generated set has block size 8 for this shape.
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { KvBlockSize = 8, MaxSeqLen = 32 });
        Assert.False(runner.IsSpecialized);
        Assert.Equal("generic", runner.KernelSetName);
        Assert.Contains("configs/", runner.KernelNotice);
        Assert.Contains("kv_block_size", runner.KernelNotice);
    }

    [Fact]
    public void ChunkedPrefillAndBlockCopyGiveTheSameLogitsAsOneShot()
    {
        // gqa-tiny prompt 1 (12 tokens) with block size 16 (the generated set's): one prefill of 12 tokens versus
        // chunks of 5 + 5 + 2; then the prefix blocks copied to fresh blocks continue identically.
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[1];
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { NumKvBlocks = 4, MaxSeqLen = 64 });
        var oneShot = runner.Execute(StepBatch.Of(new SequenceChunk(0, p.Prompt, 0, new[] { 0 }, true)))[0]!;
        float[]? chunked = null;
        for (int start = 0; start < p.Prompt.Length; start += 5)
        {
            int n = Math.Min(5, p.Prompt.Length - start);
            var r = runner.Execute(StepBatch.Of(new SequenceChunk(1, p.Prompt[start..(start + n)], start, new[] { 1 }, start + n == p.Prompt.Length)));
            if (start + n < p.Prompt.Length) Assert.Null(r[0]);
            else chunked = r[0];
        }

        ReferenceData.AssertRowClose(oneShot.Select(v => (double)v).ToArray(), chunked!, 1e-5, "chunked prefill");
        ReferenceData.AssertRowClose(p.StepLogits[0], chunked!, 1e-4, "chunked prefill vs reference");

        // Copy block 1 (the chunked sequence's) to block 3, then decode the next token from both: same logits.
        int next = Sampler.ArgMax(chunked!);
        var copy = new StepBatch(new[]
        {
            new SequenceChunk(2, new[] { next }, p.Prompt.Length, new[] { 3 }, true),
        }, new[] { new BlockCopy(1, 3) });
        var fromCopy = runner.Execute(copy)[0]!;
        var fromOriginal = runner.Execute(StepBatch.Of(new SequenceChunk(1, new[] { next }, p.Prompt.Length, new[] { 1 }, true)))[0]!;
        ReferenceData.AssertRowClose(p.StepLogits[1], fromOriginal, 1e-4, "decode after chunked prefill");
        ReferenceData.AssertRowClose(fromOriginal.Select(v => (double)v).ToArray(), fromCopy, 1e-6, "decode from the copied block");
    }

    /// <summary>With the greedy tokens picked on the host and on the device (the generator asks for them when it
    /// records no logits).</summary>
    [Theory]
    [InlineData(GreedySampling.Host)]
    [InlineData(GreedySampling.Device)]
    public void GeneratorStopsAtEosAndReportsTimings(GreedySampling greedy)
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[0];
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { MaxSeqLen = 32, GreedySampling = greedy });
        // Make the reference's 4th greedy token the end of sequence: generation stops there, EOS included.
        var generator = new Generator(runner, new[] { p.Greedy[3] });
        var result = generator.Generate(p.Prompt, new GenerationOptions(MaxNewTokens: 16, PrefillChunkTokens: 2, RecordLogits: true));
        Assert.Equal(p.Greedy[..4], result.Tokens);
        Assert.Equal(StopReason.EndOfSequence, result.StopReason);
        Assert.Equal(4, result.StepLogits!.Length);
        Assert.Equal(3, result.DecodeSteps);
        Assert.True(result.PrefillMs > 0 && result.DecodeTokensPerSecond > 0);
        // The rate leaves out the first decode step (it compiles kernels): 2 steps over the time after it.
        Assert.InRange(result.FirstDecodeMs, double.Epsilon, result.DecodeMs);
        Assert.Equal(2 / ((result.DecodeMs - result.FirstDecodeMs) / 1000.0), result.DecodeTokensPerSecond, 6);

        var ignored = new Generator(runner, new[] { p.Greedy[3] }).Generate(p.Prompt, new GenerationOptions(MaxNewTokens: 6, IgnoreEos: true));
        Assert.Equal(p.Greedy[..6], ignored.Tokens);
        Assert.Equal(StopReason.MaxNewTokens, ignored.StopReason);
    }

    [Fact]
    public void BadStepsAreRejectedWithTheSequenceNamed()
    {
        // Load: the checkpoint files are closed once the weights are uploaded.
        using var runner = LlamaModelRunner.Load(fixture.Accelerator, TestPaths.HfCase("gqa-tiny"), ModelOptions.Float32 with { NumKvBlocks = 2, MaxSeqLen = 32 });
        Assert.Equal(new[] { 2 }, runner.EosTokenIds);
        Assert.Contains("sequence 7: token id 512 is outside the vocabulary",
            Assert.Throws<ArgumentException>(() => runner.Execute(StepBatch.Of(new SequenceChunk(7, new[] { 512 }, 0, new[] { 0 }, true)))).Message);
        Assert.Contains("sequence 7: block id 5 is outside the KV cache",
            Assert.Throws<ArgumentException>(() => runner.Execute(StepBatch.Of(new SequenceChunk(7, new[] { 3 }, 0, new[] { 5 }, true)))).Message);
        Assert.Contains("need 2",
            Assert.Throws<ArgumentException>(() => runner.Execute(StepBatch.Of(new SequenceChunk(7, new[] { 3, 4 }, 15, new[] { 0 }, true)))).Message);
        Assert.Contains("exceeds the runner's max sequence length 32",
            Assert.Throws<ArgumentException>(() => runner.Execute(StepBatch.Of(new SequenceChunk(7, new[] { 3 }, 32, new[] { 0, 1, 0 }, true)))).Message);
    }

    [Theory]
    [InlineData(DenseSchedule.Warp)]
    [InlineData(DenseSchedule.Serial)]
    public void DecodeStepEnqueuesFourDenseKernelsPerLayer(DenseSchedule schedule)
    {
        // gqa-tiny prompt 2 (one token), then one batch-1 decode step, both fused on either schedule. Per layer:
        // norm+qkv+rope (k and v into the cache), o (+=), norm+gate|up+silu·up, down (+=); per step the embedding,
        // and the final norm with the LM head (one launch). Attention is one call per layer whatever the schedule.
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[2];
        Assert.Single(p.Prompt);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { DenseSchedule = schedule, NumKvBlocks = 1, MaxSeqLen = 16 });
        int layers = runner.Config.NumHiddenLayers;
        var prefill = runner.Execute(StepBatch.Of(new SequenceChunk(0, p.Prompt, 0, new[] { 0 }, true)))[0]!;
        ReferenceData.AssertRowClose(p.StepLogits[0], prefill, 1e-4, $"{schedule}: prefill");
        Assert.Equal(new StepLaunches(4 * layers + 2, layers), runner.LastStepLaunches);

        var decode = runner.Execute(StepBatch.Of(new SequenceChunk(0, new[] { p.Greedy[0] }, p.Prompt.Length, new[] { 0 }, true)))[0]!;
        ReferenceData.AssertRowClose(p.StepLogits[1], decode, 1e-4, $"{schedule}: decode");
        var launches = runner.LastStepLaunches;
        output.WriteLine($"{schedule}: batch-1 decode step of {layers} layers: {launches.Dense} dense launches, {launches.AttentionCalls} attention calls");
        Assert.Equal(new StepLaunches(4 * layers + 2, layers), launches);
    }

    /// <summary>
    /// One step of four sequences: two greedy chunks picked on the device, one that wants its logits and a prefill chunk
    /// that wants nothing. The picks are the argmax of the logits the same step gives <see cref="LlamaModelRunner.Execute"/>
    /// (the step rerun: it writes the same K/V into the same slots), the first one Hugging Face's greedy token, and the
    /// argmax is one more launch.
    /// </summary>
    [Fact]
    public void GreedyTokensPickedOnTheDeviceAreTheArgMaxOfTheStepsLogits()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var prompts = ReferenceData.Load(dir);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { NumKvBlocks = 8, MaxSeqLen = 64, GreedySampling = GreedySampling.Device });
        Assert.True(runner.PicksGreedyTokensOnDevice);
        var batch = new StepBatch(new[]
        {
            new SequenceChunk(0, prompts[0].Prompt, 0, [0], true) { GreedyToken = true },
            new SequenceChunk(1, prompts[1].Prompt, 0, [2], true),
            new SequenceChunk(2, prompts[1].Prompt[..3], 0, [4], false),
            new SequenceChunk(3, prompts[1].Prompt, 0, [6], true) { GreedyToken = true },
        }, []);

        var picked = runner.Run(batch);
        var launches = runner.LastStepLaunches;
        var logits = runner.Execute(batch);
        Assert.Equal(launches with { Dense = launches.Dense - 1 }, runner.LastStepLaunches);
        Assert.Equal(prompts[0].Greedy[0], picked.TokenAt(0));
        Assert.Null(picked.Logits[0]);
        Assert.Equal(Sampler.ArgMax(logits[0]), picked.TokenAt(0));
        Assert.Null(picked.TokenAt(1));
        Assert.Equal(logits[1], picked.Logits[1]);
        Assert.Null(picked.TokenAt(2));
        Assert.Null(picked.Logits[2]);
        Assert.Equal(Sampler.ArgMax(logits[3]), picked.TokenAt(3));
        Assert.Equal(prompts[1].Greedy[0], picked.TokenAt(3));

        // Without the option the same runner type leaves every argmax to the caller on the CPU accelerator.
        using var hostPicks = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { NumKvBlocks = 8, MaxSeqLen = 64 });
        Assert.False(hostPicks.PicksGreedyTokensOnDevice);
        var host = hostPicks.Run(batch);
        Assert.Null(host.Tokens);
        Assert.Equal(logits[3], host.Logits[3]);
    }

    /// <summary>The engine's <see cref="LlamaModelRunner.Run"/> hands back the same row arrays every step, refilled;
    /// <see cref="LlamaModelRunner.Execute"/> fresh ones the caller keeps.</summary>
    [Fact]
    public void RunReusesItsLogitsRowsAndExecuteDoesNot()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[1];
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { NumKvBlocks = 4, MaxSeqLen = 64, GreedySampling = GreedySampling.Host });
        var prefill = runner.Run(StepBatch.Of(new SequenceChunk(0, p.Prompt, 0, [0], true) { GreedyToken = true }));
        var first = prefill.Logits[0]!;
        ReferenceData.AssertRowClose(p.StepLogits[0], first, 1e-4, "prefill");
        var decode = StepBatch.Of(new SequenceChunk(0, [p.Greedy[0]], p.Prompt.Length, [0], true));
        var reused = runner.Run(decode).Logits[0]!;
        Assert.Same(first, reused);
        ReferenceData.AssertRowClose(p.StepLogits[1], reused, 1e-4, "decode, reused row");

        var fresh = runner.Execute(decode)[0]!;
        Assert.NotSame(reused, fresh);
        Assert.NotSame(fresh, runner.Execute(decode)[0]);
        Assert.Equal(reused, fresh);
    }

    /// <summary>A greedy row with no number in it has no argmax: it comes back as its logits, for the caller's error.</summary>
    [Fact]
    public void AGreedyRowOfNaNComesBackAsItsLogits()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[0];
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, new NaNFinalNorm(new CheckpointWeights(checkpoint)),
            ModelOptions.Float32 with { NumKvBlocks = 2, MaxSeqLen = 32, GreedySampling = GreedySampling.Device });
        var result = runner.Run(StepBatch.Of(new SequenceChunk(0, p.Prompt, 0, [0], true) { GreedyToken = true }));
        Assert.Null(result.TokenAt(0));
        Assert.All(result.Logits[0]!, v => Assert.True(float.IsNaN(v)));
        Assert.Throws<ArgumentException>(() => GreedyTokenSampler.Instance.Sample(result.Logits[0]));
    }

    /// <summary>A checkpoint's weights with a final norm of NaN: every logit NaN.</summary>
    private sealed class NaNFinalNorm(ILlamaWeights inner) : ILlamaWeights
    {
        public LlamaConfig Config => inner.Config;

        public IReadOnlyList<int> EosTokenIds => inner.EosTokenIds;

        public string Origin => inner.Origin;

        public DeviceMatrix Matrix(Accelerator accelerator, IReadOnlyList<string> names, WeightDtype dtype) => inner.Matrix(accelerator, names, dtype);

        public MemoryBuffer1D<float, Stride1D.Dense> Vector(Accelerator accelerator, string name)
        {
            var vector = inner.Vector(accelerator, name);
            if (name == "model.norm.weight") vector.CopyFromCPU(Enumerable.Repeat(float.NaN, (int)vector.Length).ToArray());
            return vector;
        }
    }

    /// <summary>
    /// <see cref="ModelOptions.CudaGraphs"/> on the CPU accelerator, which has no graphs: the runner says so and launches
    /// every step (the reference logits). Then, through a stand-in capture (<c>CaptureStepsWith</c>), a real model's decode
    /// steps: a step's key repeats the step before for as long as its block table keeps its power-of-two stride, so the
    /// second step is captured and the next ones replayed, and a step past a block boundary that doubles the stride
    /// starts over. A prefill (more tokens than sequences) is never captured.
    /// </summary>
    [Fact]
    public void DecodeStepsAreCapturedOnceTheirLaunchArgumentsRepeat()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[1];
        Assert.Equal(12, p.Prompt.Length);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { NumKvBlocks = 2, MaxSeqLen = 32, CudaGraphs = true });
        Assert.False(runner.CapturesCudaGraphs);
        Assert.Contains("CUDA graphs need a CUDA device", runner.CudaGraphsNotice);
        int layers = runner.Config.NumHiddenLayers;

        // Blocks of 16 (the gqa_tiny set's): one block up to 16 keys, two from 17.
        float[] Step(int[] ids, int start) =>
            runner.Execute(StepBatch.Of(new SequenceChunk(0, ids, start, start + ids.Length <= 16 ? [0] : [0, 1], true)))[0]!;
        ReferenceData.AssertRowClose(p.StepLogits[0], Step(p.Prompt, 0), 1e-4, "prefill");
        ReferenceData.AssertRowClose(p.StepLogits[1], Step([p.Greedy[0]], 12), 1e-4, "decode at 12, graphs asked for on the CPU");
        Assert.Equal(StepGraphUse.Launched, runner.LastStepGraph);

        // The stand-in captures a step by enqueueing it (so it runs), and its replays run nothing: from here on the
        // logits are not checked, only how each step went out.
        runner.CaptureStepsWith(enqueue =>
        {
            enqueue();
            return new NoGraph();
        });
        var uses = new List<StepGraphUse>();
        for (int position = 13; position <= 19; position++)
        {
            Step([p.Greedy[0]], position);
            uses.Add(runner.LastStepGraph);
            Assert.Equal(new StepLaunches(4 * layers + 2, layers), runner.LastStepLaunches);
        }
        Assert.Equal(new[]
        {
            StepGraphUse.Launched, StepGraphUse.Captured, StepGraphUse.Replayed,   // contexts 14–16: one block (stride 1)
            StepGraphUse.Launched, StepGraphUse.Captured, StepGraphUse.Replayed, StepGraphUse.Replayed,   // 17–20: two (stride 2)
        }, uses);
        Assert.Equal(new StepGraphCounts(Captured: 2, Replayed: 3), runner.CudaGraphSteps);
        Step([1, 2], 20);                                                          // two tokens of one sequence: a prefill chunk
        Step([1, 2], 22);
        Assert.Equal(StepGraphUse.Launched, runner.LastStepGraph);
    }

    /// <summary>A stand-in graph whose replays run nothing (<see cref="DecodeStepsAreCapturedOnceTheirLaunchArgumentsRepeat"/>).</summary>
    private sealed class NoGraph : ICapturedLaunches
    {
        public void Launch()
        {
        }

        public void Dispose()
        {
        }
    }

    /// <summary>
    /// A stage timeline (LlamaModelRunner.StartStageTimeline): every decode step (a prefill is not counted) marks each
    /// stage, in order, once per layer for the layers' stages; the logits are the untimed run's; the weight bytes a
    /// stage reads are the matrices'. On an accelerator without profiling markers it is refused with a message saying
    /// what to enable.
    /// </summary>
    [Fact]
    public void TimedStagesCoverEveryDecodeStepInOrderAndLeaveTheLogitsAlone()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var p = ReferenceData.Load(dir)[0];
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var profiled = AcceleratorFactory.CreateCpu(new AcceleratorOptions(DeviceKind.Cpu, Profiling: true));
        var options = ModelOptions.Float32 with { NumKvBlocks = 4, MaxSeqLen = 64 };
        using var timed = new LlamaModelRunner(profiled.Accelerator, checkpoint, options);
        using var plain = new LlamaModelRunner(fixture.Accelerator, checkpoint, options);
        Assert.Null(timed.Timeline);
        var timeline = timed.StartStageTimeline();

        float[]? Step(LlamaModelRunner runner, int[] ids, int start) =>
            runner.Execute(StepBatch.Of(new SequenceChunk(0, ids, start, new[] { 0 }, true)))[0];
        var prefill = Step(timed, p.Prompt, 0)!;
        ReferenceData.AssertRowClose(Step(plain, p.Prompt, 0)!.Select(v => (double)v).ToArray(), prefill, 0, "prefill, timed against untimed");
        Assert.Equal(0, timeline.Steps);
        int next = Sampler.ArgMax(prefill);
        for (int i = 0; i < 2; i++)
        {
            var logits = Step(timed, [next], p.Prompt.Length + i)!;
            ReferenceData.AssertRowClose(Step(plain, [next], p.Prompt.Length + i)!.Select(v => (double)v).ToArray(), logits, 0, $"decode step {i}, timed against untimed");
            next = Sampler.ArgMax(logits);
        }

        Assert.Equal(2, timeline.Steps);
        var stages = timeline.MeanStep(timed.StageWeightBytes);
        foreach (var s in stages) output.WriteLine($"{s.Stage}: {s.CallsPerStep} per step, {s.Seconds * 1e6:F0} us, {s.WeightBytes} bytes");
        Assert.Equal(new[]
        {
            StepStages.Embedding, StepStages.Qkv, StepStages.Attention, StepStages.OProj, StepStages.GateUp, StepStages.Down,
            StepStages.LmHead, StepStages.ArgMax, StepStages.CopyOut,
        }, stages.Select(s => s.Stage));
        int layers = timed.Config.NumHiddenLayers;
        Assert.All(stages, s => Assert.Equal(s.Stage is StepStages.Qkv or StepStages.Attention or StepStages.OProj or StepStages.GateUp or StepStages.Down ? layers : 1,
            s.CallsPerStep));
        Assert.All(stages, s => Assert.True(s.Seconds >= 0, $"{s.Stage}: {s.Seconds} s"));
        Assert.True(stages.Sum(s => s.Seconds) > 0);
        var c = timed.Config;
        Assert.Equal((long)layers * (c.QueryDim + 2 * c.KeyValueDim) * c.HiddenSize * 4, stages.Single(s => s.Stage == StepStages.Qkv).WeightBytes);
        Assert.Equal((long)c.VocabSize * c.HiddenSize * 4, stages.Single(s => s.Stage == StepStages.LmHead).WeightBytes);
        Assert.Null(stages.Single(s => s.Stage == StepStages.Attention).WeightBytes);

        Assert.Same(timeline, timed.StopStageTimeline());
        Assert.Null(timed.Timeline);
        Step(timed, [next], p.Prompt.Length + 2);
        Assert.Equal(2, timeline.Steps);   // not timing any more

        var refused = Assert.Throws<InvalidOperationException>(() => plain.StartStageTimeline());
        Assert.Contains("Profiling", refused.Message);
    }
}
