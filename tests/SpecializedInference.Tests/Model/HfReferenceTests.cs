using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The whole decoder against Hugging Face transformers' float64 logits: every prompt position, then every greedy
/// decode step, for each reference checkpoint. A case's prompts run together as one batch of sequences (one
/// prefill step for all prompts, then one decode step per token for all of them), so batching is tested too.
/// </summary>
[CiSeconds(65)]
public sealed class HfReferenceTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    public static TheoryData<string> Cases() => new() { "gqa-tiny", "mha-tiny", "gqa-hd128-long" };

    /// <summary>KV blocks for every prompt of a reference, each sequence with its own blocks.</summary>
    internal static int BlocksNeeded(IReadOnlyList<ReferencePrompt> prompts, int blockSize) =>
        prompts.Sum(p => (p.Prompt.Length + p.Greedy.Length + blockSize - 1) / blockSize);

    /// <summary>
    /// Prefills every prompt in one step (all positions' logits), then decodes greedily, all sequences per step;
    /// returns each prompt's generated tokens. Asserts logits within tolerance × max(1, max |logit|) of each row
    /// when <paramref name="logitTolerance"/> is set, and greedy tokens equal to the reference when
    /// <paramref name="assertTokens"/>. With <paramref name="teacherForcing"/> the reference's tokens are fed back
    /// instead of the engine's (so every step is compared in the reference's context), and a token is asserted
    /// only where the float64 reference's own top-2 margin is at least <paramref name="minMargin"/>. With
    /// <paramref name="maxDecodeSteps"/> each prompt stops after that many greedy tokens (for schedules that are slow
    /// on the CPU accelerator).
    /// </summary>
    internal static int[][] RunAndCompare(LlamaModelRunner runner, string directory, double? logitTolerance, bool assertTokens, ITestOutputHelper output,
        bool teacherForcing = false, double minMargin = 0, int maxDecodeSteps = int.MaxValue)
    {
        var prompts = ReferenceData.Load(directory);
        string name = Path.GetFileName(directory);
        int bs = runner.BlockSize;
        var tables = new int[prompts.Count][];
        int nextBlock = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            int blocks = (prompts[i].Prompt.Length + prompts[i].Greedy.Length + bs - 1) / bs;
            tables[i] = Enumerable.Range(nextBlock, blocks).ToArray();
            nextBlock += blocks;
        }

        int[] Blocks(int seq, int contextLength) => tables[seq][..((contextLength + bs - 1) / bs)];

        // Prefill: one chunk per prompt, one step, every position's logits.
        var prefill = StepBatch.Of(prompts.Select((p, i) => new SequenceChunk(i, p.Prompt, 0, Blocks(i, p.Prompt.Length), true)).ToArray());
        var all = runner.ExecuteAllLogits(prefill);
        var last = new float[prompts.Count][];
        int row = 0;
        for (int i = 0; i < prompts.Count; i++)
        {
            var p = prompts[i];
            for (int pos = 0; pos < p.Prompt.Length; pos++, row++)
                if (logitTolerance is double tol && p.PromptLogits is not null)
                    ReferenceData.AssertRowClose(p.PromptLogits[pos], all[row], tol, $"{name} prompt {i} position {pos}");
            last[i] = all[row - 1];
        }

        // Decode: every unfinished sequence advances one token per step.
        var generated = prompts.Select(_ => new List<int>()).ToArray();
        int nearTies = 0, flips = 0;
        for (int step = 0; ; step++)
        {
            var chunks = new List<SequenceChunk>();
            for (int i = 0; i < prompts.Count; i++)
            {
                var p = prompts[i];
                int steps = Math.Min(p.Greedy.Length, maxDecodeSteps);
                if (step >= steps) continue;
                if (logitTolerance is double tol) ReferenceData.AssertRowClose(p.StepLogits[step], last[i], tol, $"{name} prompt {i} decode step {step}");
                int next = Sampler.ArgMax(last[i]);
                generated[i].Add(next);
                var sorted = p.StepLogits[step].OrderDescending().ToArray();
                bool clear = sorted[0] - sorted[1] >= minMargin;
                if (!clear) nearTies++;
                if (next != p.Greedy[step] && !clear) flips++;
                if (assertTokens && clear)
                    Assert.True(next == p.Greedy[step],
                        $"{name} prompt {i}: greedy token {step} is {next}, expected {p.Greedy[step]} (reference margin {sorted[0] - sorted[1]:G3}; so far [{string.Join(", ", generated[i])}])");
                if (teacherForcing) next = p.Greedy[step];
                if (step + 1 == steps) continue;
                int pos = p.Prompt.Length + step;
                chunks.Add(new SequenceChunk(i, new[] { next }, pos, Blocks(i, pos + 1), true));
            }

            if (chunks.Count == 0) break;
            var results = runner.Execute(new StepBatch(chunks, Array.Empty<BlockCopy>()));
            for (int j = 0; j < chunks.Count; j++) last[chunks[j].SequenceId] = results[j]!;
        }

        output.WriteLine($"{name}: prompts [{string.Join(", ", prompts.Select(p => p.Prompt.Length))}], " +
            $"{prompts.Sum(p => Math.Min(p.Greedy.Length, maxDecodeSteps))} greedy tokens; kernels {runner.KernelSetName}, dense {runner.DenseSchedule}; " +
            $"{nearTies} steps with a reference margin below {minMargin} (not asserted), {flips} of them flipped");
        return generated.Select(g => g.ToArray()).ToArray();
    }

    internal static LlamaModelRunner Load(AcceleratorFixture fixture, LlamaCheckpoint checkpoint, string directory, ModelOptions options) =>
        Load(fixture.Accelerator, checkpoint, directory, options);

    /// <summary>The reference's checkpoint on <paramref name="accelerator"/>, its cache sized for every prompt at once.</summary>
    internal static LlamaModelRunner Load(Accelerator accelerator, LlamaCheckpoint checkpoint, string directory, ModelOptions options)
    {
        var prompts = ReferenceData.Load(directory);
        int bs = options.KvBlockSize ?? 16;
        return new LlamaModelRunner(accelerator, checkpoint, options with
        {
            KvBlockSize = bs,
            NumKvBlocks = BlocksNeeded(prompts, bs),
            MaxSeqLen = prompts.Max(p => p.Prompt.Length + p.Greedy.Length),
            MaxBatchTokens = prompts.Sum(p => p.Prompt.Length),
        });
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Float32MatchesHuggingFace(string name)
    {
        var dir = TestPaths.HfCase(name);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = Load(fixture, checkpoint, dir, ModelOptions.Float32);
        RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output);
    }

    /// <summary>
    /// f16 weights and f16 cache: logits within 3e-2 at every position and step, and the reference's greedy token
    /// wherever the float64 reference itself separates its top two logits by at least 1e-2. The reference's tokens are
    /// fed back, so a step's context is the reference's; where every step of a prompt is asserted, the engine's own
    /// greedy run is therefore the reference's token for token. Closer calls are near-ties that f16 rounding (about
    /// 5e-4 relative per weight) cannot resolve, six steps in all: mha-tiny prompt 0 steps 1 (margin 2.3e-4) and 12
    /// (4.3e-3), prompt 1 step 9 (4.7e-3); gqa-tiny prompt 1 step 13 (2.8e-3); gqa-hd128-long steps 1 (8.6e-3) and 23
    /// (4.0e-3). Run free (`si generate --weight-dtype f16 --kv-dtype f16`), mha-tiny's prompt 0 turns at step 1 and
    /// gqa-hd128-long's at step 23; the other four prompts give the reference's tokens.
    /// </summary>
    [Theory]
    [MemberData(nameof(Cases))]
    public void Float16WeightsAndCacheStayCloseAndKeepClearGreedyTokens(string name)
    {
        var dir = TestPaths.HfCase(name);
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = Load(fixture, checkpoint, dir, new ModelOptions(WeightDtype.F16, KvDtype.F16));
        RunAndCompare(runner, dir, logitTolerance: 3e-2, assertTokens: true, output, teacherForcing: true, minMargin: 1e-2);
    }

    /// <summary>
    /// Every launch of a decode layer programmatic (<see cref="DecodeLaunches.PerStageProgrammatic"/>: the warp matvecs and
    /// gqa-tiny's generated decode, whose partitions load their K/V rows before the wait and its queries after) against
    /// Hugging Face's float64 logits. On the CPU accelerator the marks are no-ops, so this checks the kernels' arithmetic
    /// and the order of their loads; <c>si selftest</c> and the bundled model's text check the overlap on an sm_90 GPU.
    /// </summary>
    [Fact]
    public void ProgrammaticLaunchesMatchHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using var runner = Load(fixture, checkpoint, dir,
            ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp, DecodeLaunches = DecodeLaunches.PerStageProgrammatic });
        Assert.True(runner.IsSpecialized);
        Assert.True(runner.DecodeAttentionProgrammatic);
        Assert.Null(runner.DecodeAttentionLaunchNotice);
        RunAndCompare(runner, dir, logitTolerance: 1e-4, assertTokens: true, output, maxDecodeSteps: 1);

        // The generic kernels have no programmatic decode: said, not dropped silently.
        using var generic = Load(fixture, checkpoint, dir,
            ModelOptions.Float32 with { DenseSchedule = DenseSchedule.Warp, DecodeLaunches = DecodeLaunches.PerStageProgrammatic, ForceGenericKernels = true });
        Assert.False(generic.DecodeAttentionProgrammatic);
        Assert.Equal("programmatic decode launch: the generic kernels have none; the decode launches stream-ordered", generic.DecodeAttentionLaunchNotice);
    }

    /// <summary>
    /// The decode attention on tensor cores (<see cref="DecodeCores.Tensor"/>, gqa-hd128-long's <c>DecodeMma</c>, its mma
    /// emulated with warp shuffles on the CPU accelerator) in the whole model: the same bounds as the f16 run above, for
    /// the first two decode steps of every prompt (each emulated step takes seconds). The CPU accelerator's default keeps
    /// the CUDA-core decode.
    /// </summary>
    [Fact]
    public void TensorCoreDecodeMatchesHuggingFace()
    {
        var dir = TestPaths.HfCase("gqa-hd128-long");
        using var checkpoint = LlamaCheckpoint.Open(dir);
        using (var byDefault = Load(fixture, checkpoint, dir, new ModelOptions(WeightDtype.F16, KvDtype.F16)))
            Assert.False(byDefault.DecodeOnTensorCores, "the CPU accelerator's default decode is on CUDA cores");
        using var runner = Load(fixture, checkpoint, dir, new ModelOptions(WeightDtype.F16, KvDtype.F16, DecodeCores: DecodeCores.Tensor));
        Assert.True(runner.DecodeOnTensorCores);
        RunAndCompare(runner, dir, logitTolerance: 3e-2, assertTokens: true, output, teacherForcing: true, minMargin: 1e-2, maxDecodeSteps: 2);
    }
}
