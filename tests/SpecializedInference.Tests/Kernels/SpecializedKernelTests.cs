using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Kernels.Reference;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// Every generated kernel set (configs/*.json) on the CPU accelerator: its specialized kernels against the
/// float64 reference and against the generic kernels, grouped and expanded, f16 and f32; and the selector.
/// </summary>
[CiSeconds(115)]
public sealed class SpecializedKernelTests : IClassFixture<CpuAcceleratorFixture>
{
    private readonly CpuAcceleratorFixture _fx;
    private readonly ITestOutputHelper _out;

    public SpecializedKernelTests(CpuAcceleratorFixture fx, ITestOutputHelper output)
    {
        _fx = fx;
        _out = output;
    }

    public static TheoryData<string> KernelSets()
    {
        var data = new TheoryData<string>();
        foreach (var set in KernelRegistry.All) data.Add(set.Name);
        return data;
    }

    private void AssertClose(float[] actual, double[] expected, int headDim, string what, int seed) =>
        AssertClose(_out, actual, expected, headDim, what, seed);

    /// <summary>Every row of <paramref name="actual"/> within <see cref="AttentionKernelTests.Tolerance"/> of its norm, the
    /// comparison logged; the seed named on failure.</summary>
    internal static void AssertClose(ITestOutputHelper output, float[] actual, double[] expected, int headDim, string what, int seed)
    {
        var c = AttentionReference.Compare(actual, expected, headDim);
        output.WriteLine($"{what}: {c}");
        Assert.True(c.Within(AttentionKernelTests.Tolerance), $"{what} (seed {seed}): {c}; tolerance {AttentionKernelTests.Tolerance:E0} x row norm");
    }

    [Theory]
    [MemberData(nameof(KernelSets))]
    public void SpecializedMatchesReferenceAndGeneric(string name)
    {
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == name);
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        int partition = set.Engine.Tiles.DecodePartitionSize;
        bool big = shape.NumHeads >= 16;
        // A decode spanning two partitions (split-K + combine), a single-partition decode, a prefill chunk whose
        // first keys are already cached and a whole short prompt, in one batch. The big configs (one OS thread per
        // GPU thread on the CPU accelerator) get a smaller batch and only their grouped kernels: the expanded
        // kernels come from the same emitter, checked on every small config here and on all of them by si selftest.
        var seqs = big
            ? new[] { new SeqSpec(partition + 3, 1), new SeqSpec(21, 6) }
            : new[] { new SeqSpec(partition + 44, 1), new SeqSpec(1, 1), new SeqSpec(40, 19), new SeqSpec(5, 5), new SeqSpec(33, 1) };
        var variants = new List<(KvDtype, HeadMapping)> { (set.Engine.KvDtype, HeadMapping.Grouped) };
        if (!big) variants.Add((Other(set.Engine.KvDtype), HeadMapping.Expanded));
        foreach (var (dtype, mapping) in variants)
        {
            var options = new AttentionOptions(dtype, HeadMapping: mapping);
            var specialized = _fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
            Assert.True(specialized.IsSpecialized);
            Assert.Equal(name, specialized.Name);
            var generic = _fx.Generic(shape, options, AttentionKernelTests.SmallTiles);
            int blocks = seqs.Sum(s => (s.Context + shape.BlockSize - 1) / shape.BlockSize) + 2;
            using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, blocks, seed);
            var tables = seqs.Select(s => h.TakeBlocks((s.Context + shape.BlockSize - 1) / shape.BlockSize)).ToArray();
            var r = h.Step(h.Batch(seqs, tables), specialized, generic);
            AssertClose(r.Outputs[0], r.Expected, shape.HeadDim, $"{name} specialized {dtype} {mapping}", seed);
            AssertClose(r.Outputs[1], r.Expected, shape.HeadDim, $"{name} generic {dtype} {mapping}", seed);
            AssertClose(r.Outputs[0], r.Outputs[1].Select(x => (double)x).ToArray(), shape.HeadDim, $"{name} specialized vs generic", seed);
        }
    }

    [Theory]
    [MemberData(nameof(KernelSets))]
    public void SpecializedDecodeCombinesInOneLaunchAndAgainWithTheSamePlan(string name)
    {
        // Decodes of 2 and 4 partitions beside single-partition ones, attended twice with one plan: the partitions
        // are combined by the group that draws the last ticket, and the second launch must find every ticket
        // counter back at 0. The MQA set, one head group, also gets a decode of 34 partitions: more than a warp's
        // lanes and than the combine's loads in flight. The big sets (one OS thread per GPU thread on the CPU
        // accelerator) run one 2-partition decode, grouped only; the expanded variant uses the other KV dtype, as
        // in SpecializedMatchesReferenceAndGeneric (which runs it stream-ordered), and the kernel of a programmatic
        // launch (DecodeLaunch.Programmatic: its marks no-ops here, its K/V loads out before its queries').
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == name);
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        int partition = set.Engine.Tiles.DecodePartitionSize;
        bool big = shape.NumHeads >= 16;
        var shortDecodes = new[] { new SeqSpec(3 * partition + 5, 1), new SeqSpec(partition, 1), new SeqSpec(1, 1), new SeqSpec(partition + 1, 1) };
        var runs = new List<(KvDtype Dtype, HeadMapping Mapping, SeqSpec[] Seqs, DecodeLaunch Launch)>();
        if (big) runs.Add((set.Engine.KvDtype, HeadMapping.Grouped, new[] { new SeqSpec(partition + 1, 1) }, DecodeLaunch.StreamOrdered));
        else
        {
            runs.Add((set.Engine.KvDtype, HeadMapping.Grouped,
                shape.NumKvHeads == 1 ? shortDecodes.Append(new SeqSpec(33 * partition + 7, 1)).ToArray() : shortDecodes, DecodeLaunch.StreamOrdered));
            runs.Add((Other(set.Engine.KvDtype), HeadMapping.Expanded, shortDecodes, DecodeLaunch.Programmatic));
        }
        foreach (var (dtype, mapping, seqs, launch) in runs)
        {
            var options = new AttentionOptions(dtype, HeadMapping: mapping, DecodeLaunch: launch);
            var specialized = _fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
            Assert.Equal(launch == DecodeLaunch.Programmatic, ((AttentionKernelsBase)specialized).DecodeProgrammatic);
            int blocks = seqs.Sum(s => (s.Context + shape.BlockSize - 1) / shape.BlockSize) + 2;
            using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, blocks, seed);
            var batch = h.Batch(seqs, seqs.Select(s => h.TakeBlocks((s.Context + shape.BlockSize - 1) / shape.BlockSize)).ToArray());
            using var plan = specialized.Plan(batch);
            var r = h.Step(batch, specialized, plan, attends: 2);
            AssertClose(r.Outputs[0], r.Expected, shape.HeadDim, $"{name} {dtype} {mapping} {launch} decodes, launch 1", seed);
            AssertClose(r.Outputs[1], r.Expected, shape.HeadDim, $"{name} {dtype} {mapping} {launch} decodes, launch 2 (same plan)", seed);
        }
    }

    private static KvDtype Other(KvDtype d) => d == KvDtype.F16 ? KvDtype.F32 : KvDtype.F16;

    /// <summary>
    /// Prefill alone, around the generated kernel's own tiles (P = query positions per work item, the query tile; KV = keys
    /// per K/V tile): whole prompts of 2, P - 1, P, P + 1, KV - 1, KV and KV + 1 tokens (a last query tile of one position,
    /// a last K/V tile of one key), a chunk that starts one key before a K/V tile boundary and one that starts mid-tile with
    /// two query tiles, both attending to keys already in the cache, and a short chunk at the end of a 300-key context. The big
    /// configs (one OS thread per GPU thread on the CPU accelerator) get the first two only, grouped.
    /// </summary>
    [Theory]
    [MemberData(nameof(KernelSets))]
    public void SpecializedPrefillAcrossItsTileBoundaries(string name)
    {
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == name);
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        bool big = shape.NumHeads >= 16;
        var variants = new List<(KvDtype, HeadMapping)> { (set.Engine.KvDtype, HeadMapping.Grouped) };
        if (!big) variants.Add((Other(set.Engine.KvDtype), HeadMapping.Expanded));
        foreach (var (dtype, mapping) in variants)
        {
            var options = new AttentionOptions(dtype, HeadMapping: mapping);
            var kernels = (AttentionKernelsBase)_fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
            int p = kernels.PrefillPositions, kv = kernels.Tiles.PrefillTileKv;
            var specs = new List<SeqSpec> { new(p + 1, p + 1), new(kv - 1 + p + 2, p + 2) };
            if (!big)
                specs.AddRange(new SeqSpec[] { new(2 * kv + 5, 2 * p + 3), new(2, 2), new(p - 1, p - 1), new(p, p), new(kv - 1, kv - 1), new(kv, kv), new(kv + 1, kv + 1), new(300, 6) });
            // Prompts of one token would be decodes; drop them and any duplicate.
            var seqs = specs.Where(s => s.QueryLen >= 2).Distinct().ToArray();
            int blocks = seqs.Sum(s => (s.Context + shape.BlockSize - 1) / shape.BlockSize) + 2;
            using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, blocks, seed);
            var tables = seqs.Select(s => h.TakeBlocks((s.Context + shape.BlockSize - 1) / shape.BlockSize)).ToArray();
            var r = h.Step(h.Batch(seqs, tables), kernels);
            AssertClose(r.Outputs[0], r.Expected, shape.HeadDim,
                $"{name} prefill {dtype} {mapping} (P {p}, KV {kv}; {string.Join(",", seqs.Select(s => $"{s.QueryLen}@{s.Context}"))})", seed);
        }
    }

    [Fact]
    public void SpecializedWriteKvCacheMatchesReference()
    {
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == "gqa_tiny");
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        foreach (var dtype in new[] { KvDtype.F16, KvDtype.F32 })
        {
            var options = new AttentionOptions(dtype);
            var kernels = _fx.Get($"gqa_tiny {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
            var seqs = new[] { new SeqSpec(20, 20), new SeqSpec(9, 1) };
            using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, 6, seed);
            h.Step(h.Batch(seqs, seqs.Select(s => h.TakeBlocks((s.Context + 15) / 16)).ToArray()), kernels);
            var (keys, values) = h.DeviceCache();
            var (expectedKeys, expectedValues) = h.ExpectedCache();
            Assert.Equal(expectedKeys, keys);
            Assert.Equal(expectedValues, values);
        }
    }

    /// <summary>The non-flash baseline through a generated set runs the set's own scores and P·V kernels (head_dim written
    /// out, P·V a block of keys at a time with the block's tail masked): MHA, GQA of 3 with blocks of 8 and MQA, f16 and
    /// f32; a whole prompt, a prefill chunk after cached keys, decodes of one key, a block, a block plus one and several.</summary>
    [Theory]
    [InlineData("mha_tiny", KvDtype.F16)]
    [InlineData("odd_tiles", KvDtype.F32)]
    [InlineData("split_keys", KvDtype.F16)]
    public void MaterializedThroughASpecializedSet(string name, KvDtype dtype)
    {
        int seed = Random.Shared.Next();
        var set = KernelRegistry.All.Single(s => s.Name == name);
        var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
        var options = new AttentionOptions(dtype, AttentionAlgorithm.Materialized);
        var kernels = (AttentionKernelsBase)_fx.Get($"{name} {options}", () => set.CreateAttentionKernels!(_fx.Accelerator, options));
        Assert.True(kernels.MaterializedIsSpecialized, $"{name} runs the generic materialized kernels");
        int bs = shape.BlockSize;
        var seqs = new[] { new SeqSpec(30, 30), new SeqSpec(40, 6), new SeqSpec(1, 1), new SeqSpec(bs, 1), new SeqSpec(bs + 1, 1), new SeqSpec(70, 1) };
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, seqs.Sum(s => (s.Context + bs - 1) / bs) + 2, seed);
        var r = h.Step(h.Batch(seqs, seqs.Select(s => h.TakeBlocks((s.Context + bs - 1) / bs)).ToArray()), kernels);
        AssertClose(r.Outputs[0], r.Expected, shape.HeadDim, $"{name} materialized {dtype}", seed);
    }

    [Fact]
    public void SelectorPicksTheMatchingSetOrSaysWhyNot()
    {
        var options = new AttentionOptions(KvDtype.F16);
        var llama = KernelRegistry.All.Single(s => s.Name == "gqa_tiny");
        var hit = KernelSelector.Select(llama.Shape, 16, options, _fx.Accelerator, KernelRegistry.All);
        using (hit.Kernels)
        {
            Assert.Same(llama, hit.Set);
            Assert.True(hit.Kernels.IsSpecialized);
            Assert.Null(hit.Notice);
        }

        // Same model, another block size: no set specializes it.
        var miss = KernelSelector.Select(llama.Shape, 32, options, _fx.Accelerator, KernelRegistry.All);
        using (miss.Kernels)
        {
            Assert.Null(miss.Set);
            Assert.IsType<GenericAttentionKernels>(miss.Kernels);
            Assert.False(miss.Kernels.IsSpecialized);
            Assert.NotNull(miss.Notice);
            Assert.Contains("kv_block_size 32", miss.Notice);
            Assert.Contains("configs/", miss.Notice);
            Assert.DoesNotContain('\n', miss.Notice);
        }
    }
}
