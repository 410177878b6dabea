using ILGPU;
using Half = System.Half;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Runtime;
using SpecializedInference.Tests.Ordering;
using SpecializedInference.Kernels.Reference;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The fused norm → projection → element-wise kernels (<see cref="FusedKernelBodies"/>) against float64 references
/// computed step by step (norm, then projection, then rope / SwiGLU), on fresh seeded inputs with every output and
/// scratch buffer poisoned (NaN). Up to 2 × WarpTokens tokens each schedule runs its fused kernel (one launch,
/// asserted: the warp-per-unit kernel, or the serial one of the CPU accelerator); more tokens run the unfused
/// sequence, which must agree too.
/// </summary>
[CiSeconds(20)]
public sealed class FusedKernelTests(AcceleratorFixture fixture) : IClassFixture<AcceleratorFixture>
{
    private const float Eps = 1e-5f;
    private const int MaxPositions = 50;

    private Accelerator Acc => fixture.Accelerator;

    private static float[] Random(Random rng, int n, float scale = 1f) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    private MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] values) => Acc.Allocate1D(values);

    private MemoryBuffer1D<float, Stride1D.Dense> Poisoned(long n) => Acc.Allocate1D(Enumerable.Repeat(float.NaN, (int)n).ToArray());

    private static void AssertClose(double[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = Math.Max(1, expected.Max(Math.Abs));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * scale,
                $"{what}: element {i}: expected {expected[i]}, got {actual[i]} (tolerance {tolerance * scale})");
    }

    /// <summary>The weights as the device holds them (f16-rounded for f16), as float64.</summary>
    /// <summary>Reference: y[t, n] = RMSNorm(x[xRows[t]]) ∘ g · W[n], W as the device holds it.</summary>
    private static double[] NormThenProject(float[] x, int[] xRows, float[] g, float[] w, WeightDtype dtype, int rows, int cols)
        => DenseReference.Linear(DenseReference.AsStored(w, dtype), DenseReference.RmsNorm(x, xRows, g, cols, Eps), null, xRows.Length, rows, cols);

    /// <summary>Runs <paramref name="launch"/> and returns how many kernels it enqueued.</summary>
    private static long Launches(DenseKernels kernels, Action launch)
    {
        long before = kernels.Launches;
        launch();
        return kernels.Launches - before;
    }

    public static TheoryData<DenseSchedule, WeightDtype, int, int, int, int, int> QkvCases()
    {
        // schedule, dtype, tokens, heads, kv_heads, head_dim, hidden. hidden 72: 9 f16 / 18 f32 chunks (lanes idle);
        // 264: 33 f16 / 66 f32 chunks (a lane takes a second and third step, unevenly).
        return new()
        {
            { DenseSchedule.Warp, WeightDtype.F32, 1, 4, 1, 16, 72 },                                   // MQA, one token
            { DenseSchedule.Warp, WeightDtype.F16, DenseKernelBodies.WarpTokens + 1, 4, 1, 16, 264 },   // a second, partial token group
            { DenseSchedule.Warp, WeightDtype.F32, DenseKernelBodies.WarpTokens + 1, 2, 2, 32, 72 },    // MHA
            { DenseSchedule.Warp, WeightDtype.F16, 2 * DenseKernelBodies.WarpTokens, 4, 2, 16, 72 },    // GQA, the most tokens fused
            { DenseSchedule.Warp, WeightDtype.F16, 1, 2, 1, 128, 264 },                                 // head_dim 128
            { DenseSchedule.Warp, WeightDtype.F32, 2, 1, 1, 128, 72 },
            { DenseSchedule.Warp, WeightDtype.F32, DenseKernels.FusedMaxTokens + 1, 4, 2, 16, 64 },     // unfused: batched projection
            { DenseSchedule.Serial, WeightDtype.F16, 1, 4, 1, 16, 72 },                                 // serial, MQA
            { DenseSchedule.Serial, WeightDtype.F32, DenseKernelBodies.WarpTokens + 1, 2, 2, 32, 72 },  // serial, MHA
            { DenseSchedule.Serial, WeightDtype.F16, DenseKernels.FusedMaxTokens, 2, 1, 128, 264 },     // serial, head_dim 128
            { DenseSchedule.Serial, WeightDtype.F32, DenseKernels.FusedMaxTokens + 1, 4, 2, 16, 72 },   // unfused: serial
        };
    }

    [Theory]
    [MemberData(nameof(QkvCases))]
    public void NormQkvRopeMatchesFloat64(DenseSchedule schedule, WeightDtype dtype, int tokens, int heads, int kvHeads, int headDim, int hidden)
    {
        int seed = HashCode.Combine(schedule, dtype, tokens, heads, kvHeads, headDim, hidden) & 0xFFFF;
        var rng = new Random(seed);
        int half = headDim / 2;
        int rows = (heads + 2 * kvHeads) * headDim;
        var w = Random(rng, rows * hidden);
        var x = Random(rng, tokens * hidden, 3f);
        var g = Random(rng, hidden);
        var positions = Enumerable.Range(0, tokens).Select(_ => rng.Next(MaxPositions)).ToArray();
        var xRows = Enumerable.Range(0, tokens).ToArray();

        // Rotary tables as the runner uploads them (f32), and the reference's own float64 angles.
        var inv = Enumerable.Range(0, half).Select(i => Math.Pow(10000, -2.0 * i / headDim)).ToArray();
        var cos = new float[MaxPositions * half];
        var sin = new float[MaxPositions * half];
        for (int p = 0; p < MaxPositions; p++)
            for (int i = 0; i < half; i++)
            {
                cos[p * half + i] = (float)Math.Cos(p * inv[i]);
                sin[p * half + i] = (float)Math.Sin(p * inv[i]);
            }

        // Reference: qkv = norm(x) · Wᵀ, then HF's q * cos + rotate_half(q) * sin per q and k head (the tables above); v as is.
        var (eq, ek, ev) = DenseReference.RopeSplit(NormThenProject(x, xRows, g, w, dtype, rows, hidden), positions, cos, sin, heads, kvHeads, headDim);

        // Odd token counts run the qkv matvec at its own depth of 4 chunks per row (MatvecDepth.Qkv), even ones at the fused pairs' 2 (MatvecDepth.FusedPerRow).
        var kernels = new DenseKernels(Acc, schedule, new MatvecDepth(Qkv: tokens % 2 == 1 ? 4 : null));
        using var matrix = WeightUpload.Matrix(Acc, w, rows, hidden, dtype);
        using var xb = Upload(x);
        using var gb = Upload(g);
        using var rowsb = Acc.Allocate1D(xRows);
        using var pos = Acc.Allocate1D(positions);
        using var cb = Upload(cos);
        using var sb = Upload(sin);
        using var q = Poisoned(eq.Length);
        using var k = Poisoned(ek.Length);
        using var v = Poisoned(ev.Length);
        using var hScratch = Poisoned(tokens * hidden);
        using var qkvScratch = Poisoned(tokens * rows);
        var output = new RopeSplitOutput<KvRows>(q.View, new KvRows(k.View, v.View, kvHeads, headDim), pos.View, cb.View, sb.View, heads, kvHeads, headDim);
        long launches = Launches(kernels, () =>
            kernels.NormQkvRope(xb.View, rowsb.View, tokens, gb.View, Eps, matrix, output, hScratch.View, qkvScratch.View));
        string what = $"seed {seed}, {(kernels.FusesFewTokens(tokens) ? "fused" : "unfused")}";
        AssertClose(eq, q.GetAsArray1D(), 1e-5, $"{what}: q");
        AssertClose(ek, k.GetAsArray1D(), 1e-5, $"{what}: k");
        AssertClose(ev, v.GetAsArray1D(), 1e-5, $"{what}: v");
        Assert.Equal(tokens <= DenseKernels.FusedMaxTokens ? 1 : 3, launches);

        // Straight into the paged cache (the runner's path): byte for byte what the attention kernels' KV write makes
        // of the rows just checked, with the same launches and the same q. The cache dtype follows the weights' (the
        // cases hold both on each schedule; a case runs one, as the suite's time on the CPU simulator is counted).
        {
            var kvDtype = dtype == WeightDtype.F16 ? KvDtype.F16 : KvDtype.F32;
            const int blockSize = 8;
            int blocks = (tokens + blockSize - 1) / blockSize;
            var table = Enumerable.Range(0, blocks + 2).OrderBy(_ => rng.Next()).Take(blocks).ToArray();   // scattered blocks
            var slots = Enumerable.Range(0, tokens).Select(t => table[t / blockSize] * blockSize + t % blockSize).ToArray();
            using var attention = new GenericAttentionKernels(Acc, new AttentionShape(heads, kvHeads, headDim, blockSize), new AttentionOptions(kvDtype));
            using var plan = attention.Plan(new AttentionBatch([tokens], [tokens], [table], slots));
            var layout = new PagedKvCacheLayout(blocks + 2, kvHeads, blockSize, headDim, kvDtype);
            using var written = PagedKvCacheBuffer.Allocate(Acc, layout);
            using var direct = PagedKvCacheBuffer.Allocate(Acc, layout);
            attention.WriteKvCache(plan, k.View, v.View, written.Layer);
            using var q2 = Poisoned(eq.Length);
            var target = attention.CacheWriteTarget(plan, direct.Layer);
            long directLaunches = Launches(kernels, () =>
            {
                if (kvDtype == KvDtype.F16)
                    kernels.NormQkvRope(xb.View, rowsb.View, tokens, gb.View, Eps, matrix, new RopeSplitOutput<PagedKvRows<F16Codec>>(q2.View, new(target), pos.View, cb.View, sb.View, heads, kvHeads, headDim),
                        hScratch.View, qkvScratch.View);
                else
                    kernels.NormQkvRope(xb.View, rowsb.View, tokens, gb.View, Eps, matrix, new RopeSplitOutput<PagedKvRows<F32Codec>>(q2.View, new(target), pos.View, cb.View, sb.View, heads, kvHeads, headDim),
                        hScratch.View, qkvScratch.View);
            });
            Assert.Equal(launches, directLaunches);
            Assert.Equal(q.GetAsArray1D(), q2.GetAsArray1D());
            foreach (var (name, a, b) in new[] { ("keys", written.Layer.Keys, direct.Layer.Keys), ("values", written.Layer.Values, direct.Layer.Values) })
            {
                var expected = new byte[a.Length];
                var actual = new byte[b.Length];
                a.CopyToCPU(expected);
                b.CopyToCPU(actual);
                Assert.True(expected.AsSpan().SequenceEqual(actual), $"{what}, {kvDtype} cache: the {name} written by the qkv epilogue differ from the KV write's");
            }
        }
    }

    public static TheoryData<DenseSchedule, WeightDtype, int, int, int> SwiGluCases() => new()
    {
        // schedule, dtype, tokens, hidden, intermediate (odd: units do not fill the last group of warps)
        { DenseSchedule.Warp, WeightDtype.F32, 1, 72, 37 },
        { DenseSchedule.Warp, WeightDtype.F16, 1, 264, 37 },
        { DenseSchedule.Warp, WeightDtype.F16, DenseKernelBodies.WarpTokens + 1, 72, 37 },
        { DenseSchedule.Warp, WeightDtype.F32, 2 * DenseKernelBodies.WarpTokens, 264, 21 },
        { DenseSchedule.Warp, WeightDtype.F16, DenseKernels.FusedMaxTokens + 1, 64, 37 },
        { DenseSchedule.Serial, WeightDtype.F32, DenseKernelBodies.WarpTokens + 1, 72, 37 },
        { DenseSchedule.Serial, WeightDtype.F16, 1, 264, 21 },
        { DenseSchedule.Serial, WeightDtype.F16, DenseKernels.FusedMaxTokens + 1, 72, 37 },
    };

    [Theory]
    [MemberData(nameof(SwiGluCases))]
    public void NormGateUpSwiGluMatchesFloat64(DenseSchedule schedule, WeightDtype dtype, int tokens, int hidden, int intermediate)
    {
        int seed = HashCode.Combine(schedule, dtype, tokens, hidden, intermediate) & 0xFFFF;
        var rng = new Random(seed);
        var w = Random(rng, 2 * intermediate * hidden);
        var x = Random(rng, tokens * hidden, 3f);
        var g = Random(rng, hidden, 2f);
        var xRows = Enumerable.Range(0, tokens).ToArray();

        // Reference: gate | up = norm(x) · Wᵀ; a = silu(gate) · up.
        var expected = DenseReference.SwiGlu(NormThenProject(x, xRows, g, w, dtype, 2 * intermediate, hidden), tokens, intermediate);

        var kernels = new DenseKernels(Acc, schedule);
        using var matrix = WeightUpload.Matrix(Acc, w, 2 * intermediate, hidden, dtype);
        using var xb = Upload(x);
        using var gb = Upload(g);
        using var rowsb = Acc.Allocate1D(xRows);
        using var a = Poisoned(tokens * intermediate);
        using var hScratch = Poisoned(tokens * hidden);
        using var guScratch = Poisoned(tokens * 2 * intermediate);
        long launches = Launches(kernels, () =>
            kernels.NormGateUpSwiGlu(xb.View, rowsb.View, tokens, gb.View, Eps, matrix, new SwiGluOutput(a.View, intermediate), hScratch.View, guScratch.View));
        AssertClose(expected, a.GetAsArray1D(), 1e-5, $"seed {seed}, {(kernels.FusesFewTokens(tokens) ? "fused" : "unfused")}");
        Assert.Equal(tokens <= DenseKernels.FusedMaxTokens ? 1 : 3, launches);

    }

    public static TheoryData<DenseSchedule, WeightDtype, int, int[], int, int> HeadCases() => new()
    {
        // schedule, dtype, vocab (odd: the last row pair is one row), rows of x to project (gathered, one twice,
        // as the logits rows of a step), hidden, chunks per lane per row of the warp kernel (MatvecDepth.FusedPerRow).
        // hidden 264 is 33 f16 / 66 f32 chunks: one step, some lanes past the row's end; 2312 is 289 f16 / 578 f32
        // chunks: whole steps, then a last step that 32 or 66 chunks reach (2 × 32 + 1 f16 chunks per lane at depth 8).
        { DenseSchedule.Warp, WeightDtype.F32, 37, new[] { 3 }, 264, 2 },
        { DenseSchedule.Warp, WeightDtype.F16, 38, new[] { 2, 0, 5, 2, 4 }, 264, 2 },
        { DenseSchedule.Warp, WeightDtype.F32, 37, new[] { 1, 0, 5, 2, 4, 3, 3, 2 }, 264, 2 },
        { DenseSchedule.Warp, WeightDtype.F32, 37, new[] { 3 }, 2312, 2 },
        { DenseSchedule.Warp, WeightDtype.F32, 38, new[] { 2, 0, 5, 2, 4 }, 2312, 4 },
        { DenseSchedule.Warp, WeightDtype.F16, 37, new[] { 1, 0, 5, 2 }, 264, 8 },
        { DenseSchedule.Warp, WeightDtype.F16, 37, new[] { 3 }, 2312, 8 },
        { DenseSchedule.Serial, WeightDtype.F16, 37, new[] { 2, 0, 5, 2, 4 }, 264, 2 },
        { DenseSchedule.Serial, WeightDtype.F32, 38, new[] { 1, 0, 5, 2, 4, 3, 3, 2, 0 }, 264, 2 },
    };

    [Theory]
    [MemberData(nameof(HeadCases))]
    public void NormLinearMatchesFloat64(DenseSchedule schedule, WeightDtype dtype, int vocab, int[] xRows, int hidden, int depth)
    {
        const int inputs = 6;
        int seed = HashCode.Combine(schedule, dtype, vocab, xRows.Length, hidden, depth) & 0xFFFF;
        var rng = new Random(seed);
        var w = Random(rng, vocab * hidden);
        var x = Random(rng, inputs * hidden, 3f);
        var g = Random(rng, hidden);
        var expected = NormThenProject(x, xRows, g, w, dtype, vocab, hidden);

        // Groups of 2 warps where the depth is 4 (FusedMatvecLaunch: the grid's warp numbering does not depend on it).
        var launch = depth == 4 ? new FusedMatvecLaunch(WarpsPerGroup: 2, MaxRegisters: 88) : null;
        var kernels = new DenseKernels(Acc, schedule, new MatvecDepth(FusedPerRow: depth), fusedLaunch: launch);
        var (y, launches) = RunNormLinear(kernels, dtype, w, x, g, xRows, vocab, hidden);
        AssertClose(expected, y, 1e-5, $"seed {seed}");
        Assert.Equal(xRows.Length <= DenseKernels.FusedMaxTokens ? 1 : 2, launches);
    }

    /// <summary>The LM head's <see cref="DenseKernels.NormLinear"/> of <paramref name="x"/>'s rows <paramref name="xRows"/>
    /// into a poisoned [rows, vocab]: what it wrote, and its launches.</summary>
    private (float[] Y, long Launches) RunNormLinear(DenseKernels kernels, WeightDtype dtype, float[] w, float[] x, float[] g, int[] xRows, int vocab, int hidden)
    {
        using var matrix = WeightUpload.Matrix(Acc, w, vocab, hidden, dtype);
        using var xb = Upload(x);
        using var gb = Upload(g);
        using var rowsb = Acc.Allocate1D(xRows);
        using var y = Poisoned(xRows.Length * vocab);
        using var hScratch = Poisoned(xRows.Length * hidden);
        long launches = Launches(kernels, () => kernels.NormLinear(xb.View, rowsb.View, xRows.Length, gb.View, Eps, matrix, y.View, hScratch.View));
        return (y.GetAsArray1D(), launches);
    }

    /// <summary>
    /// The fused norm projection streaming its row pairs through shared memory (<see cref="MatvecLoads.AsyncCopy"/>)
    /// against float64, as the LM head (odd vocab: the last pair is one row; gathered x rows, one twice) and as gate|up
    /// with SwiGLU: rows of 2 steps (hidden 264: 33 f16 chunks, most lanes past the end of the second), 10 and 19 steps
    /// (2312: 289 f16 / 578 f32 chunks, the ring refilled), 1 to 8 tokens (two token groups). On the CPU accelerator each
    /// lane stores its chunks into its slots itself: the ring's slots, steps and edges are what this checks.
    /// </summary>
    [Theory]
    [InlineData(WeightDtype.F16, 264, new[] { 3 })]
    [InlineData(WeightDtype.F32, 2312, new[] { 2, 0, 5, 2, 4 })]
    [InlineData(WeightDtype.F16, 2312, new[] { 1, 0, 5, 2, 4, 3, 3, 2 })]
    public void NormLinearWithAsyncCopiesMatchesFloat64(WeightDtype dtype, int hidden, int[] xRows)
    {
        const int inputs = 6, vocab = 37, intermediate = 21;
        int seed = System.Random.Shared.Next();
        var rng = new Random(seed);
        var w = Random(rng, vocab * hidden);
        var x = Random(rng, inputs * hidden, 3f);
        var g = Random(rng, hidden);
        var kernels = new DenseKernels(Acc, DenseSchedule.Warp, loads: MatvecLoads.AsyncCopy);
        AssertClose(NormThenProject(x, xRows, g, w, dtype, vocab, hidden), RunNormLinear(kernels, dtype, w, x, g, xRows, vocab, hidden).Y, 1e-5,
            $"seed {seed}, LM head");

        // gate|up + SwiGLU over the first x rows.
        int tokens = Math.Min(xRows.Length, inputs);
        using var xb = Upload(x);
        using var gb = Upload(g);
        using var hScratch = Poisoned(tokens * hidden);
        var identity = Enumerable.Range(0, tokens).ToArray();
        var wGateUp = Random(rng, 2 * intermediate * hidden);
        var expected = DenseReference.SwiGlu(NormThenProject(x, identity, g, wGateUp, dtype, 2 * intermediate, hidden), tokens, intermediate);
        using var gateUp = WeightUpload.Matrix(Acc, wGateUp, 2 * intermediate, hidden, dtype);
        using var identityb = Acc.Allocate1D(identity);
        using var a = Poisoned(tokens * intermediate);
        using var guScratch = Poisoned(tokens * 2 * intermediate);
        kernels.NormGateUpSwiGlu(xb.View, identityb.View, tokens, gb.View, Eps, gateUp, new SwiGluOutput(a.View, intermediate), hScratch.View, guScratch.View);
        AssertClose(expected, a.GetAsArray1D(), 1e-5, $"seed {seed}, gate|up");
    }
}
