using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Kernels.Reference;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// The generic attention kernels on the CPU accelerator against the float64 reference: KV write, flash
/// prefill, split-K flash decode, materialized and expanded variants, f32 and f16 caches. Shapes are tiny
/// and most groups use one warp, because the CPU accelerator runs one OS thread per GPU thread.
/// </summary>
/// <remarks>
/// The reference reads the cache as the device stores it (f16-rounded), so f16 results meet the f32
/// tolerance (1e-5 × the row's norm). Against the same inputs never rounded to f16, an f16 cache's results stay
/// within <see cref="F16Tolerance"/> (<see cref="AnF16CacheStaysCloseToTheUnroundedInputs"/>).
/// </remarks>
[CiSeconds(35)]
public sealed class AttentionKernelTests : IClassFixture<CpuAcceleratorFixture>
{
    /// <summary>Max abs error over the reference row's L2 norm.</summary>
    public const double Tolerance = 1e-5;

    /// <summary>Max abs error over the row's norm of an f16 cache's results against the same inputs kept in f32.</summary>
    public const double F16Tolerance = 2e-3;

    /// <summary>Small tiles so short contexts cross tile (8), block (16) and partition (64) boundaries.</summary>
    public static readonly AttentionTiles SmallTiles = new(PrefillTileQ: 8, PrefillTileKv: 8, DecodePartitionSize: 64, Warps: 1);

    /// <summary>Context lengths around every boundary of <see cref="SmallTiles"/> with 16-slot blocks, plus a long one.</summary>
    public static readonly int[] BoundaryContexts = { 1, 7, 8, 9, 15, 16, 17, 33, 63, 64, 65, 300 };

    private readonly CpuAcceleratorFixture _fx;
    private readonly ITestOutputHelper _out;

    public AttentionKernelTests(CpuAcceleratorFixture fx, ITestOutputHelper output)
    {
        _fx = fx;
        _out = output;
    }

    private static int NewSeed() => Random.Shared.Next();

    private void AssertClose(float[] actual, double[] expected, int headDim, string what, int seed, double tolerance = Tolerance)
    {
        var c = AttentionReference.Compare(actual, expected, headDim);
        _out.WriteLine($"{what}: {c}");
        Assert.True(c.Within(tolerance), $"{what} (seed {seed}): {c}; tolerance {tolerance:E0} x row norm");
    }

    private static SeqSpec[] Decodes(params int[] contexts) => contexts.Select(c => new SeqSpec(c, 1)).ToArray();

    private static int[][] Tables(AttentionHarness h, SeqSpec[] seqs) => seqs.Select(s => h.TakeBlocks((s.Context + h.Shape.BlockSize - 1) / h.Shape.BlockSize)).ToArray();

    private static int BlocksFor(SeqSpec[] seqs, int blockSize, int spare = 3) => seqs.Sum(s => (s.Context + blockSize - 1) / blockSize) + spare;

    // ---------------------------------------------------------------- KV cache write

    [Theory]
    [InlineData(KvDtype.F32)]
    [InlineData(KvDtype.F16)]
    public void WriteKvCacheStoresEveryRowAtItsSlot(KvDtype dtype)
    {
        int seed = NewSeed();
        var shape = new AttentionShape(4, 2, 24, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        var seqs = new[] { new SeqSpec(5, 5), new SeqSpec(37, 20), new SeqSpec(17, 1) };
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, BlocksFor(seqs, 16), seed);
        var batch = h.Batch(seqs, Tables(h, seqs));
        // A skipped token (-1) must leave the cache alone: the reference skips it too.
        var slots = (int[])batch.SlotMapping.Clone();
        slots[3] = -1;
        batch = batch with { SlotMapping = slots };

        var keys = h.RandomFloats((long)batch.NumTokens * shape.NumKvHeads * shape.HeadDim);
        var values = h.RandomFloats(keys.Length);
        h.Reference.Write(batch.SlotMapping, keys, values);
        using var dKeys = _fx.Accelerator.Allocate1D(keys);
        using var dValues = _fx.Accelerator.Allocate1D(values);
        using (var plan = kernels.Plan(batch)) kernels.WriteKvCache(plan, dKeys.View, dValues.View, h.Layer);
        _fx.Accelerator.Synchronize();

        // Every element: the reference's, or NaN where the harness poisoned rows past the contexts (left alone).
        var (deviceKeys, deviceValues) = h.DeviceCache();
        var (expectedKeys, expectedValues) = h.ExpectedCache();
        for (int i = 0; i < deviceKeys.Length; i++)
        {
            Assert.True(deviceKeys[i].Equals(expectedKeys[i]), $"key element {i}: device {deviceKeys[i]}, expected {expectedKeys[i]} (seed {seed})");
            Assert.True(deviceValues[i].Equals(expectedValues[i]), $"value element {i}: device {deviceValues[i]}, expected {expectedValues[i]} (seed {seed})");
        }
    }

    [Fact]
    public void HalfConversionRoundsToNearestEven()
    {
        var rng = new Random(NewSeed());
        var samples = new List<float> { 0f, -0f, 1f, 65504f, 65519.99f, 65520f, 1e-8f, 2.9802322e-8f, 5.9604645e-8f, 6.1035156e-5f, 6.0e-5f,
            float.PositiveInfinity, float.NegativeInfinity, 1.00048828125f, 1.00146484375f, 3.0517578e-5f };
        for (int i = 0; i < 2000; i++) samples.Add((float)((rng.NextDouble() * 2 - 1) * Math.Pow(2, rng.Next(-26, 17))));
        foreach (float f in samples)
            Assert.Equal(BitConverter.HalfToUInt16Bits((System.Half)f), (ushort)HalfBits.FromFloat(f));
        Assert.True(System.Half.IsNaN(BitConverter.UInt16BitsToHalf((ushort)HalfBits.FromFloat(float.NaN))));
    }

    // ---------------------------------------------------------------- decode

    public static TheoryData<int, int, int, KvDtype> HeadShapes() => new()
    {
        { 16, 4, 4, KvDtype.F32 },   // MHA
        { 32, 4, 2, KvDtype.F16 },   // GQA 2
        { 64, 8, 2, KvDtype.F32 },   // GQA 4
        { 128, 4, 1, KvDtype.F16 },  // MQA
        { 16, 8, 1, KvDtype.F16 },   // MQA, 8 heads on one K/V head
        { 128, 8, 2, KvDtype.F32 },  // GQA 4 at the big head_dim
    };

    [Theory]
    [MemberData(nameof(HeadShapes))]
    public void DecodeMatchesReferenceAcrossBoundaries(int headDim, int heads, int kvHeads, KvDtype dtype)
    {
        int seed = NewSeed();
        var shape = new AttentionShape(heads, kvHeads, headDim, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        var seqs = Decodes(BoundaryContexts);
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, BlocksFor(seqs, 16), seed);
        var r = h.Step(h.Batch(seqs, Tables(h, seqs)), kernels);
        AssertClose(r.Outputs[0], r.Expected, headDim, $"decode hd{headDim} {heads}/{kvHeads} {dtype}", seed);
    }

    public static TheoryData<int, int, int, KvDtype, HeadMapping> TicketShapes() => new()
    {
        { 16, 4, 4, KvDtype.F32, HeadMapping.Grouped },    // MHA: 2 combine slices of partitions per group
        { 32, 8, 2, KvDtype.F16, HeadMapping.Grouped },    // GQA 4: one slice, a column per thread
        { 16, 4, 1, KvDtype.F16, HeadMapping.Expanded },   // a ticket per (decode, head)
        { 128, 4, 1, KvDtype.F32, HeadMapping.Grouped },   // more Float4 columns than threads
    };

    [Theory]
    [MemberData(nameof(TicketShapes))]
    public void MixedDecodesCombineInOneLaunchAndAgainWithTheSamePlan(int headDim, int heads, int kvHeads, KvDtype dtype, HeadMapping mapping)
    {
        // Single-partition decodes (up to 64 keys) beside decodes of 2 and 3 partitions, attended twice with one
        // plan as the model runner does for every layer: each launch must find the ticket counters back at 0
        // (else no group would combine and the output would stay NaN).
        int seed = NewSeed();
        var shape = new AttentionShape(heads, kvHeads, headDim, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype, HeadMapping: mapping), SmallTiles);
        var seqs = Decodes(65, 1, 64, 129);
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, BlocksFor(seqs, 16), seed);
        var batch = h.Batch(seqs, Tables(h, seqs));
        using var plan = kernels.Plan(batch);
        var r = h.Step(batch, kernels, plan, attends: 2);
        for (int a = 0; a < 2; a++)
            AssertClose(r.Outputs[a], r.Expected, headDim, $"decode hd{headDim} {heads}/{kvHeads} {dtype} {mapping}, launch {a + 1}", seed);
    }

    [Fact]
    public void DecodeOfMorePartitionsThanAWarpHasLanes()
    {
        // 34 partitions of 32 keys: the combine's per-head max and sum loop past lane 31.
        int seed = NewSeed();
        var shape = new AttentionShape(2, 1, 16, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F16), SmallTiles with { DecodePartitionSize = 32 });
        var seqs = Decodes(33 * 32 + 5, 40);
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F16, BlocksFor(seqs, 16), seed);
        var batch = h.Batch(seqs, Tables(h, seqs));
        using var plan = kernels.Plan(batch);
        var r = h.Step(batch, kernels, plan, attends: 2);
        AssertClose(r.Outputs[0], r.Expected, 16, "34 partitions, launch 1", seed);
        AssertClose(r.Outputs[1], r.Expected, 16, "34 partitions, launch 2", seed);
    }

    // ---------------------------------------------------------------- prefill

    [Theory]
    [MemberData(nameof(HeadShapes))]
    public void PrefillMatchesReferenceAcrossBoundaries(int headDim, int heads, int kvHeads, KvDtype dtype)
    {
        int seed = NewSeed();
        var shape = new AttentionShape(heads, kvHeads, headDim, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        // Whole prompts of tile-1 / tile / tile+1 / block±1 tokens, and chunks whose earlier keys are
        // already cached (context > query length), in one variable-length launch.
        var seqs = headDim == 128
            ? new[] { new SeqSpec(7, 7), new SeqSpec(8, 8), new SeqSpec(9, 9), new SeqSpec(15, 15), new SeqSpec(17, 17), new SeqSpec(40, 5) }
            : new[] { new SeqSpec(2, 2), new SeqSpec(7, 7), new SeqSpec(8, 8), new SeqSpec(9, 9), new SeqSpec(15, 15), new SeqSpec(17, 17),
                new SeqSpec(33, 11), new SeqSpec(300, 6) };
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, BlocksFor(seqs, 16), seed);
        var r = h.Step(h.Batch(seqs, Tables(h, seqs)), kernels);
        AssertClose(r.Outputs[0], r.Expected, headDim, $"prefill hd{headDim} {heads}/{kvHeads} {dtype}", seed);
    }

    [Theory]
    [InlineData(KvDtype.F32)]
    [InlineData(KvDtype.F16)]
    public void ChunkedPrefillAttendsToEarlierChunksInTheCache(KvDtype dtype)
    {
        int seed = NewSeed();
        var shape = new AttentionShape(8, 2, 32, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, 12, seed);
        // Step 1: the first 21 tokens of a prompt, plus another sequence's whole prompt.
        var tableA = h.TakeBlocks(2);
        var tableB = h.TakeBlocks(1);
        var first = h.Step(h.Batch(new[] { new SeqSpec(21, 21), new SeqSpec(10, 10) }, new[] { tableA, tableB }), kernels);
        AssertClose(first.Outputs[0], first.Expected, 32, $"chunk 1 {dtype}", seed);
        // Step 2: the next 19 tokens attend to all 40 (the first 21 written by step 1); B decodes.
        tableA = h.Cover(tableA, 40);
        tableB = h.Cover(tableB, 11);
        var second = h.Step(h.Batch(new[] { new SeqSpec(40, 19), new SeqSpec(11, 1) }, new[] { tableA, tableB }), kernels);
        AssertClose(second.Outputs[0], second.Expected, 32, $"chunk 2 + decode {dtype}", seed);
    }

    // ---------------------------------------------------------------- mixed batches and variants

    /// <summary>A batch mixing prefill chunks, whole prompts and decodes of many lengths.</summary>
    private static readonly SeqSpec[] MixedBatch =
    {
        new(1, 1), new(12, 12), new(65, 1), new(30, 7), new(17, 1), new(9, 9), new(130, 1),
    };

    [Theory]
    [InlineData(KvDtype.F32)]
    [InlineData(KvDtype.F16)]
    public void FlashMaterializedAndExpandedAgree(KvDtype dtype)
    {
        int seed = NewSeed();
        var shape = new AttentionShape(4, 1, 16, 16);
        var flash = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        var expanded = _fx.Generic(shape, new AttentionOptions(dtype, HeadMapping: HeadMapping.Expanded), SmallTiles);
        var materialized = _fx.Generic(shape, new AttentionOptions(dtype, AttentionAlgorithm.Materialized), SmallTiles);
        Assert.False(((AttentionKernelsBase)materialized).MaterializedIsSpecialized);
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, BlocksFor(MixedBatch, 16), seed);
        var r = h.Step(h.Batch(MixedBatch, Tables(h, MixedBatch)), flash, expanded, materialized);
        AssertClose(r.Outputs[0], r.Expected, 16, $"flash/grouped {dtype}", seed);
        AssertClose(r.Outputs[1], r.Expected, 16, $"flash/expanded {dtype}", seed);
        AssertClose(r.Outputs[2], r.Expected, 16, $"materialized {dtype}", seed);
        var asDouble = r.Outputs[0].Select(x => (double)x).ToArray();
        AssertClose(r.Outputs[1], asDouble, 16, "expanded vs grouped", seed);
        AssertClose(r.Outputs[2], asDouble, 16, "materialized vs flash", seed);
    }

    /// <summary>The cost of an f16 cache: the same seed draws the same cache, keys, values and queries for an f16 and an
    /// f32 harness; the f16 cache's prefill and decode results stay within <see cref="F16Tolerance"/> of the f32 cache's
    /// reference, which never rounds (and the f32 kernels within <see cref="Tolerance"/> of it).</summary>
    [Fact]
    public void AnF16CacheStaysCloseToTheUnroundedInputs()
    {
        int seed = NewSeed();
        var shape = new AttentionShape(8, 2, 32, 16);
        using var h16 = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F16, BlocksFor(MixedBatch, 16), seed);
        using var h32 = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F32, BlocksFor(MixedBatch, 16), seed);
        var r16 = h16.Step(h16.Batch(MixedBatch, Tables(h16, MixedBatch)), _fx.Generic(shape, new AttentionOptions(KvDtype.F16), SmallTiles));
        var r32 = h32.Step(h32.Batch(MixedBatch, Tables(h32, MixedBatch)), _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles));
        AssertClose(r32.Outputs[0], r32.Expected, shape.HeadDim, "f32 cache vs the reference", seed);
        var c = AttentionReference.Compare(r16.Outputs[0], r32.Expected, shape.HeadDim);
        _out.WriteLine($"f16 cache vs the unrounded reference: {c}");
        Assert.True(c.Within(F16Tolerance), $"seed {seed}: {c}; tolerance {F16Tolerance:E0} x row norm");
        Assert.False(c.Within(Tolerance), $"seed {seed}: the f16 cache rounded nothing ({c})");
    }

    /// <summary>What <c>si selftest</c> rests on: <see cref="AttentionSelfTest"/> passes right kernels, flash and non-flash,
    /// and fails an attention that leaves its output unwritten (the NaN poison) or writes one element wrong.</summary>
    [Fact]
    public void TheSelfTestPassesRightKernelsAndFailsWrongOnes()
    {
        int seed = NewSeed();
        var shape = new AttentionShape(8, 2, 16, 16);
        var flash = _fx.Generic(shape, new AttentionOptions(KvDtype.F16), SmallTiles);
        var materialized = _fx.Generic(shape, new AttentionOptions(KvDtype.F16, AttentionAlgorithm.Materialized), SmallTiles);
        var right = AttentionSelfTest.Run(flash, shape, _fx.Accelerator, seed).Concat(AttentionSelfTest.Run(materialized, shape, _fx.Accelerator, seed)).ToList();
        Assert.Equal(["kv-write", "prefill", "decode", "prefill-mat", "decode-mat"], right.Select(r => r.Kernel));
        Assert.All(right, r => Assert.True(r.Passed, $"seed {seed}: {r}"));

        foreach (var (fault, expectNaN) in new[] { (AttentionFault.NoLaunch, true), (AttentionFault.OneElementOff, false) })
        {
            var results = AttentionSelfTest.Run(new FaultyAttention(flash, fault), shape, _fx.Accelerator, seed);
            Assert.True(results.Single(r => r.Kernel == "kv-write").Passed, $"{fault}: the KV write is untouched");
            foreach (var r in results.Where(r => r.Kernel != "kv-write"))
            {
                Assert.False(r.Passed, $"{fault}: {r}");
                Assert.Equal(expectNaN, double.IsNaN(r.Error.MaxAbsError));
            }
        }
    }

    private enum AttentionFault { NoLaunch, OneElementOff }

    /// <summary>Right kernels but for <see cref="Attend"/>: it launches nothing, or adds 1 to the output's first element.</summary>
    private sealed class FaultyAttention(IAttentionKernels inner, AttentionFault fault) : IAttentionKernels
    {
        public string Name => inner.Name;
        public bool IsSpecialized => inner.IsSpecialized;
        public AttentionOptions Options => inner.Options;
        public IAttentionPlan Plan(AttentionBatch batch) => inner.Plan(batch);
        public void WriteKvCache(IAttentionPlan plan, ArrayView<float> keys, ArrayView<float> values, PagedKvLayer cache) => inner.WriteKvCache(plan, keys, values, cache);
        public KvCacheTarget CacheWriteTarget(IAttentionPlan plan, PagedKvLayer cache) => inner.CacheWriteTarget(plan, cache);

        public void Attend(IAttentionPlan plan, ArrayView<float> queries, PagedKvLayer cache, ArrayView<float> output)
        {
            if (fault == AttentionFault.NoLaunch) return;
            inner.Attend(plan, queries, cache, output);
            var first = new float[1];
            output.SubView(0, 1).CopyToCPU(first);
            first[0] += 1f;
            output.SubView(0, 1).CopyFromCPU(first);
        }

        public void Dispose() { }   // the fixture's kernels
    }

    [Fact]
    public void DefaultTilesWithFourWarps()
    {
        // The tiles a real config uses: 4 warps, K/V tiles of 32, partitions of 256, head_dim 128, GQA 4.
        int seed = NewSeed();
        var shape = new AttentionShape(8, 2, 128, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F16), GenericAttentionKernels.DefaultTiles(shape));
        var seqs = new[] { new SeqSpec(300, 1), new SeqSpec(33, 33), new SeqSpec(257, 1) };
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F16, BlocksFor(seqs, 16), seed);
        var r = h.Step(h.Batch(seqs, Tables(h, seqs)), kernels);
        AssertClose(r.Outputs[0], r.Expected, 128, "default tiles hd128 8/2 f16", seed);
    }

    [Fact]
    public void BlockSizeOtherThanSixteen()
    {
        int seed = NewSeed();
        var shape = new AttentionShape(4, 2, 16, 8);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles);
        var seqs = new[] { new SeqSpec(23, 23), new SeqSpec(70, 1), new SeqSpec(8, 1) };
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F32, BlocksFor(seqs, 8), seed);
        var r = h.Step(h.Batch(seqs, Tables(h, seqs)), kernels);
        AssertClose(r.Outputs[0], r.Expected, 16, "block size 8", seed);
    }

    // ---------------------------------------------------------------- plans and their device buffers

    private static int PlanAllocations(IAttentionKernels kernels) => ((AttentionKernelsBase)kernels).PlanDeviceAllocations;

    [Fact]
    public void PlanBuffersAreReusedFromStepToStep()
    {
        int seed = NewSeed();
        var shape = new AttentionShape(4, 2, 16, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles);
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F32, 40, seed);
        var tables = new[] { h.TakeBlocks(10), h.TakeBlocks(3) };
        // Step 1 sizes the pool; steps 2 and 3 (a decode each, the first spanning 3 partitions of 64) and a
        // smaller step 4 fit it: no device allocation.
        var r1 = h.Step(h.Batch(new[] { new SeqSpec(150, 20), new SeqSpec(40, 40) }, tables), kernels);
        AssertClose(r1.Outputs[0], r1.Expected, 16, "step 1 (prefill)", seed);
        int afterFirst = PlanAllocations(kernels);
        for (int step = 2; step <= 3; step++)
        {
            var r = h.Step(h.Batch(new[] { new SeqSpec(150 + step - 1, 1), new SeqSpec(40 + step - 1, 1) }, tables), kernels);
            AssertClose(r.Outputs[0], r.Expected, 16, $"step {step} (decodes)", seed);
        }
        var r4 = h.Step(h.Batch(new[] { new SeqSpec(153, 1) }, new[] { tables[0] }), kernels);
        AssertClose(r4.Outputs[0], r4.Expected, 16, "step 4 (one decode)", seed);
        Assert.Equal(afterFirst, PlanAllocations(kernels));
    }

    [Fact]
    public void TwoLivePlansDoNotShareBuffers()
    {
        int seed = NewSeed();
        var shape = new AttentionShape(4, 2, 16, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles);
        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F32, 40, seed);
        // Two batches of different sequences and sizes (decodes spanning partitions, a prefill chunk).
        var seqsA = new[] { new SeqSpec(200, 1), new SeqSpec(30, 9) };
        var seqsB = new[] { new SeqSpec(70, 1), new SeqSpec(129, 1), new SeqSpec(5, 5) };
        var batchA = h.Batch(seqsA, Tables(h, seqsA));
        var batchB = h.Batch(seqsB, Tables(h, seqsB));
        using (kernels.Plan(batchA)) { }                           // sizes the pool for A
        int before = PlanAllocations(kernels);
        using (var planA = kernels.Plan(batchA))
        {
            // B is planned (and uploaded) while A is alive, then A runs: A must still see its own metadata.
            using var planB = kernels.Plan(batchB);
            Assert.Equal(before + 2, PlanAllocations(kernels));   // B's own ints and floats
            var rB = h.Step(batchB, kernels, planB);
            var rA = h.Step(batchA, kernels, planA);
            AssertClose(rB.Outputs[0], rB.Expected, 16, "plan B", seed);
            AssertClose(rA.Outputs[0], rA.Expected, 16, "plan A, planned before B", seed);
        }
        // Both gone: the next plan takes the pooled pair again.
        using (var again = kernels.Plan(batchB)) Assert.Equal(before + 2, PlanAllocations(kernels));
    }

    /// <summary>
    /// What a CUDA graph of a decode step relies on (<c>ModelOptions.CudaGraphs</c>): the plan of the next step of the same
    /// sequences launches with the same arguments (its <see cref="AttentionPlan.LaunchSignature"/>), only its data differing,
    /// until a sequence needs another partition or its block table's power-of-two row stride doubles.
    /// </summary>
    [Fact]
    public void DecodePlansKeepTheirLaunchArgumentsUntilAPartitionOrTheBlockStrideChanges()
    {
        var shape = new AttentionShape(4, 2, 16, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles);   // partitions of 64 keys
        int[] blocksA = { 5, 2, 7, 0, 3, 6, 1, 4, 9 }, blocksB = { 11, 8, 10, 12, 13, 14, 15, 16, 17 };

        // One decode per context; a sequence holds the blocks its context needs, as the scheduler gives them.
        byte[] Signature(int[] contexts, int[]? firstBlocks = null)
        {
            var tables = contexts.Select((c, s) => (s == 0 ? firstBlocks ?? blocksA : blocksB)[..((c + 15) / 16)]).ToArray();
            var slots = contexts.Select((c, s) => tables[s][(c - 1) / 16] * 16 + (c - 1) % 16).ToArray();
            using var plan = (AttentionPlan)kernels.Plan(new AttentionBatch(contexts.Select(_ => 1).ToArray(), contexts, tables, slots));
            Assert.True(System.Numerics.BitOperations.IsPow2(plan.Meta.MaxBlocksPerSeq), $"block table stride {plan.Meta.MaxBlocksPerSeq}");
            Assert.Equal(0, plan.Meta.MaxContext);   // the materialized path's alone
            return plan.LaunchSignature();
        }

        Assert.Equal(Signature([33]), Signature([48]));                    // 3 blocks (stride 4), 1 partition
        Assert.Equal(Signature([33]), Signature([40], firstBlocks: blocksB)); // other blocks: data, not arguments
        Assert.NotEqual(Signature([32]), Signature([33]));                 // 2 → 3 blocks: stride 2 → 4
        Assert.NotEqual(Signature([64]), Signature([65]));                 // a second partition
        Assert.Equal(Signature([65]), Signature([96]));                    // 5–6 blocks (stride 8), 2 partitions
        Assert.Equal(Signature([40, 70]), Signature([41, 71]));
        Assert.NotEqual(Signature([40, 70]), Signature([40, 129]));        // 3 partitions
        Assert.NotEqual(Signature([40]), Signature([40, 40]));             // another sequence
    }

    /// <summary><c>si attention-bench --cuda-graphs</c>: the timed calls are captured once and run by one launch (here a
    /// stand-in that enqueues them when launched, which is what a replay does on the device), labelled as such.</summary>
    [Fact]
    public void TheAttentionBenchmarkTimesCapturedCallsAsOneLaunch()
    {
        var shape = new AttentionShape(4, 2, 16, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles);
        var graphs = new List<ReplayingGraph>();
        var r = AttentionBenchmark.Decode(kernels, shape, _fx.Accelerator, batch: 1, context: 70, iterations: 3, replay: calls =>
        {
            graphs.Add(new ReplayingGraph(calls));
            return graphs[^1];
        });
        Assert.Equal(2, Assert.Single(graphs).Launches);   // once to upload it, once timed
        Assert.True(graphs[0].Disposed);
        Assert.Contains("decode b1 ctx 70 f32 (a graph of 3 calls)", r.Work);
        Assert.True(r.MicrosecondsPerCall > 0 && r.GigabytesPerSecond > 0, r.ToString());
    }

    /// <summary>A stand-in CUDA graph: launching it enqueues the captured calls again.</summary>
    private sealed class ReplayingGraph(Action calls) : SpecializedInference.Accelerators.ICapturedLaunches
    {
        public int Launches { get; private set; }

        public bool Disposed { get; private set; }

        public void Launch()
        {
            Launches++;
            calls();
        }

        public void Dispose() => Disposed = true;
    }

    // ---------------------------------------------------------------- bad input

    [Fact]
    public void BadBatchesGetClearErrors()
    {
        var shape = new AttentionShape(4, 2, 16, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(KvDtype.F32), SmallTiles);
        var ex = Assert.Throws<ArgumentException>(() => kernels.Plan(new AttentionBatch(new[] { 3 }, new[] { 2 }, new[] { new[] { 0 } }, new[] { 0, 1, 2 })));
        Assert.Contains("ContextLens 2 < QueryLens 3", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => kernels.Plan(new AttentionBatch(new[] { 1 }, new[] { 20 }, new[] { new[] { 0 } }, new[] { 19 })));
        Assert.Contains("needs 2 blocks", ex.Message);
        ex = Assert.Throws<ArgumentException>(() => kernels.Plan(new AttentionBatch(new[] { 2 }, new[] { 2 }, new[] { new[] { 0 } }, new[] { 0 })));
        Assert.Contains("SlotMapping has 1", ex.Message);

        using var h = new AttentionHarness(_fx.Accelerator, shape, KvDtype.F32, 2, 1);
        using var plan = kernels.Plan(new AttentionBatch(new[] { 1 }, new[] { 1 }, new[] { new[] { 5 } }, new[] { 80 }));
        using var q = _fx.Accelerator.Allocate1D<float>(4 * 16);
        ex = Assert.Throws<ArgumentException>(() => kernels.Attend(plan, q.View, h.Layer, q.View));
        Assert.Contains("names block 5 but the KV cache layer has 2 blocks", ex.Message);
    }
}
