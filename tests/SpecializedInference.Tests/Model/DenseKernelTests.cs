using ILGPU;
using Half = System.Half;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Runtime;
using SpecializedInference.Tests.Ordering;
using SpecializedInference.Kernels.Reference;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// Each dense kernel, in both schedules, against float64 C# references on fresh seeded inputs, with outputs
/// poisoned (NaN) before the kernel writes them.
/// </summary>
[CiSeconds(20)]
public sealed class DenseKernelTests(AcceleratorFixture fixture) : IClassFixture<AcceleratorFixture>
{
    private Accelerator Acc => fixture.Accelerator;

    private static float[] Random(Random rng, int n, float scale = 1f) =>
        Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    private MemoryBuffer1D<float, Stride1D.Dense> Upload(float[] values) => Acc.Allocate1D(values);

    private MemoryBuffer1D<float, Stride1D.Dense> Poisoned(int n) => Acc.Allocate1D(Enumerable.Repeat(float.NaN, n).ToArray());

    private static void AssertClose(double[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        double scale = Math.Max(1, expected.Max(Math.Abs));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance * scale,
                $"{what}: element {i}: expected {expected[i]}, got {actual[i]} (tolerance {tolerance * scale})");
    }

    public static TheoryData<DenseSchedule, WeightDtype, int, int, int, bool> LinearCases()
    {
        var data = new TheoryData<DenseSchedule, WeightDtype, int, int, int, bool>();
        foreach (var dtype in new[] { WeightDtype.F32, WeightDtype.F16 })
        {
            // Serial: one token, a decode batch, a prefill past one tile.
            data.Add(DenseSchedule.Serial, dtype, 37, 64, 1, false);
            data.Add(DenseSchedule.Serial, dtype, 37, 40, 5, true);
            data.Add(DenseSchedule.Serial, dtype, 70, 64, 65, false);
            // Warp: matvec for 1 and 4 tokens (its largest batch), the batched projection from 5 tokens (more in
            // BatchedLinearTests), the tiled matmul at its threshold and past a token tile (129 = 2 × 64 + 1) with
            // rows past a row tile (70), and the batched fallback past the threshold when cols is not a multiple of
            // the tile's k (40).
            data.Add(DenseSchedule.Warp, dtype, 37, 64, 1, false);
            data.Add(DenseSchedule.Warp, dtype, 37, 64, DenseKernelBodies.WarpTokens, true);
            data.Add(DenseSchedule.Warp, dtype, 37, 64, DenseKernels.BatchedMinTokens, true);
            data.Add(DenseSchedule.Warp, dtype, 70, 64, DenseKernels.TiledMinTokens, true);
            data.Add(DenseSchedule.Warp, dtype, 70, 64, 129, false);
            data.Add(DenseSchedule.Warp, dtype, 37, 40, DenseKernels.TiledMinTokens, false);
            // Long rows whose chunks do not divide among the 32 lanes: 1320 columns are 165 f16 chunks
            // (5 × 32 + 5) or 330 f32 chunks (10 × 32 + 10), for the matvec and the batched projection. The matvec
            // takes them 4 per lane per step, then a last step that some lanes overrun: one token and its largest batch.
            data.Add(DenseSchedule.Warp, dtype, 5, 1320, 1, false);
            data.Add(DenseSchedule.Warp, dtype, 5, 1320, DenseKernelBodies.WarpTokens, true);
            data.Add(DenseSchedule.Warp, dtype, 5, 1320, DenseKernels.BatchedMinTokens, true);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(LinearCases))]
    public void LinearMatchesFloat64(DenseSchedule schedule, WeightDtype dtype, int rows, int cols, int tokens, bool accumulate)
    {
        int seed = HashCode.Combine(schedule, dtype, rows, cols, tokens, accumulate) & 0xFFFF;
        var rng = new Random(seed);
        var w = Random(rng, rows * cols);
        var x = Random(rng, tokens * cols);
        var y0 = accumulate ? Random(rng, tokens * rows) : Enumerable.Repeat(float.NaN, tokens * rows).ToArray();
        var expected = DenseReference.Linear(w, x, accumulate ? y0 : null, tokens, rows, cols, dtype);

        var kernels = new DenseKernels(Acc, schedule);
        using var matrix = WeightUpload.Matrix(Acc, w, rows, cols, dtype);
        using var xb = Upload(x);
        using var yb = Upload(y0);
        kernels.Linear(xb.View, tokens, matrix, yb.View, accumulate);
        AssertClose(expected, yb.GetAsArray1D(), 1e-5, $"seed {seed}");
    }

    public static TheoryData<int, WeightDtype, int, int> MatvecDepthCases()
    {
        // chunks per lane per step (MatvecDepth.Linear), dtype, cols, tokens. 72 columns: 9 f16 / 18 f32 chunks, one
        // step with most lanes past the row's end; 2312: 289 f16 / 578 f32 chunks, whole steps and then a last one
        // (at depth 8 f16: one whole step of 256 and 33 chunks); 2048 f16: exactly one step of 8 chunks per lane.
        var data = new TheoryData<int, WeightDtype, int, int>();
        foreach (int depth in new[] { 2, 8 })
        {
            data.Add(depth, WeightDtype.F16, 72, 1);
            data.Add(depth, WeightDtype.F32, 2312, 1);
            data.Add(depth, WeightDtype.F16, 2312, DenseKernelBodies.WarpTokens);
        }
        data.Add(8, WeightDtype.F16, 2048, 3);
        data.Add(4, WeightDtype.F32, 2312, 2);
        return data;
    }

    /// <summary>The warp matvec at each load depth, against float64: whole steps, the last step's overrunning lanes
    /// (which load in-bounds chunks whose products must be dropped) and idle lanes.</summary>
    [Theory]
    [MemberData(nameof(MatvecDepthCases))]
    public void WarpMatvecMatchesFloat64AtEachDepth(int depth, WeightDtype dtype, int cols, int tokens)
    {
        const int rows = 5;
        int seed = HashCode.Combine(depth, dtype, cols, tokens) & 0xFFFF;
        var rng = new Random(seed);
        var w = Random(rng, rows * cols);
        var x = Random(rng, tokens * cols);
        var y0 = Random(rng, tokens * rows);
        var expected = DenseReference.Linear(w, x, y0, tokens, rows, cols, dtype);

        var kernels = new DenseKernels(Acc, DenseSchedule.Warp, new MatvecDepth(Linear: depth));
        using var matrix = WeightUpload.Matrix(Acc, w, rows, cols, dtype);
        using var xb = Upload(x);
        using var yb = Upload(y0);
        kernels.Linear(xb.View, tokens, matrix, yb.View, accumulate: true);
        AssertClose(expected, yb.GetAsArray1D(), 1e-5, $"seed {seed}");
    }

    /// <summary>
    /// The matvec streaming its rows through shared memory (<see cref="MatvecLoads.AsyncCopy"/>) against float64: a row
    /// shorter than one step (72 columns: 9 f16 chunks, most lanes past its end), rows of 10 and 19 steps (2312 columns:
    /// 289 f16 / 578 f32 chunks; the ring refilled, then its last groups empty, the last step overrun), a row of exactly the
    /// ring (2048 f16: 8 steps); 1 to 4 tokens; y stored (poisoned with NaN first) or added to; 9 rows, so the last
    /// group of 4 warps has idle warps. On the CPU accelerator each lane stores its chunk into its slot itself (no
    /// <c>cp.async</c>): the ring's slots, steps and edges are what this checks; the PTX compile tests check the copies.
    /// </summary>
    [Theory]
    [InlineData(WeightDtype.F16, 72, 1, true)]
    [InlineData(WeightDtype.F32, 2312, 1, false)]
    [InlineData(WeightDtype.F16, 2312, DenseKernelBodies.WarpTokens, true)]
    [InlineData(WeightDtype.F16, 2048, 3, false)]
    [InlineData(WeightDtype.F32, 2312, 2, true)]
    public void AsyncCopyMatvecMatchesFloat64(WeightDtype dtype, int cols, int tokens, bool accumulate)
    {
        const int rows = 9;
        int seed = System.Random.Shared.Next();
        var rng = new Random(seed);
        var w = Random(rng, rows * cols);
        var x = Random(rng, tokens * cols);
        var y0 = accumulate ? Random(rng, tokens * rows) : Enumerable.Repeat(float.NaN, tokens * rows).ToArray();
        var expected = DenseReference.Linear(w, x, accumulate ? y0 : null, tokens, rows, cols, dtype);

        var kernels = new DenseKernels(Acc, DenseSchedule.Warp, loads: MatvecLoads.AsyncCopy);
        using var matrix = WeightUpload.Matrix(Acc, w, rows, cols, dtype);
        using var xb = Upload(x);
        using var yb = Upload(y0);
        kernels.Linear(xb.View, tokens, matrix, yb.View, accumulate);
        AssertClose(expected, yb.GetAsArray1D(), 1e-5, $"seed {seed}");
    }

    [Fact]
    public void MatvecLoadsParseByName()
    {
        Assert.Equal(MatvecLoads.AsyncCopy, MatvecLoadNames.Parse("async-copy"));
        Assert.Equal(MatvecLoads.Registers, MatvecLoadNames.Parse("registers"));
        Assert.Equal("async-copy", MatvecLoadNames.Name(MatvecLoads.AsyncCopy));
        Assert.Contains("expected registers or async-copy", Assert.Throws<ArgumentException>(() => MatvecLoadNames.Parse("async")).Message);
    }

    /// <summary>The warp matvec given the next projection to pull into L2 (<see cref="L2Prefetch"/>): the prefetch
    /// argument reaches the kernel and leaves its results alone (on the CPU accelerator the prefetch itself does nothing;
    /// PtxCompilationTests checks that the CUDA kernels issue it).</summary>
    [Theory]
    [InlineData(WeightDtype.F16, 1, PrefetchPoint.End, false)]
    [InlineData(WeightDtype.F32, DenseKernelBodies.WarpTokens, PrefetchPoint.Start, true)]
    public void WarpMatvecWithL2PrefetchMatchesFloat64(WeightDtype dtype, int tokens, PrefetchPoint at, bool ownRows)
    {
        const int rows = 7, cols = 72;
        int seed = HashCode.Combine(dtype, tokens, at, ownRows) & 0xFFFF;
        var rng = new Random(seed);
        var w = Random(rng, rows * cols);
        var x = Random(rng, tokens * cols);
        var y0 = Random(rng, tokens * rows);
        var expected = DenseReference.Linear(w, x, y0, tokens, rows, cols, dtype);

        var kernels = new DenseKernels(Acc, DenseSchedule.Warp, weightPrefetch: new WeightPrefetch(1 << 20, at, ownRows));
        using var matrix = WeightUpload.Matrix(Acc, w, rows, cols, dtype);
        using var next = WeightUpload.Matrix(Acc, Random(rng, 64 * cols), 64, cols, dtype);
        using var xb = Upload(x);
        using var yb = Upload(y0);
        kernels.Linear(xb.View, tokens, matrix, yb.View, accumulate: true, next);
        AssertClose(expected, yb.GetAsArray1D(), 1e-5, $"seed {seed}");
    }

    [Fact]
    public void MatvecDepthParsesAQkvDepth()
    {
        Assert.Equal(new MatvecDepth(4, 2, 4), MatvecDepth.Parse("4,2,4"));
        Assert.Equal((4, 2), (MatvecDepth.Parse("4,2,4").QkvPerRow, MatvecDepth.Parse("4,2").QkvPerRow));
        Assert.Equal("4,2,4", MatvecDepth.Parse("4,2,4").ToString());
        Assert.Equal("8,4", MatvecDepth.Parse("8,4").ToString());
        Assert.Contains("Qkv must be 2, 4 or 8", Assert.Throws<ArgumentOutOfRangeException>(() => MatvecDepth.Parse("4,2,3")).Message);
        Assert.Contains("expected <linear chunks>", Assert.Throws<ArgumentException>(() => MatvecDepth.Parse("4,2,4,4")).Message);
    }

    [Fact]
    public void FusedMatvecLaunchParsesAndRejectsBadValues()
    {
        Assert.Equal(new FusedMatvecLaunch(2, 88), FusedMatvecLaunch.Parse("2:88"));
        Assert.Equal(FusedMatvecLaunch.Default, FusedMatvecLaunch.Parse("4:0"));
        Assert.Equal("2:88", FusedMatvecLaunch.Parse("2:88").ToString());
        Assert.Contains("expected <warps per group>:<max registers>", Assert.Throws<ArgumentException>(() => FusedMatvecLaunch.Parse("2")).Message);
        Assert.Contains("WarpsPerGroup must be 1, 2, 4 or 8", Assert.Throws<ArgumentOutOfRangeException>(() => FusedMatvecLaunch.Parse("3:88")).Message);
        Assert.Contains("MaxRegisters must be 0", Assert.Throws<ArgumentOutOfRangeException>(() => FusedMatvecLaunch.Parse("2:8")).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DenseKernels(Acc, DenseSchedule.Warp, fusedLaunch: new FusedMatvecLaunch(16, 0)));
    }

    [Fact]
    public void WeightPrefetchParsesAndRejectsBadSizes()
    {
        Assert.Equal(new WeightPrefetch(8 << 20), WeightPrefetch.Parse("8"));
        Assert.Equal(new WeightPrefetch(16 << 20, PrefetchPoint.Start), WeightPrefetch.Parse("start:16"));
        Assert.Equal(new WeightPrefetch(4 << 20), WeightPrefetch.Parse("end:4"));
        Assert.Equal("16 MiB at start", WeightPrefetch.Parse("start:16").ToString());
        Assert.Equal(new WeightPrefetch(0, OwnRows: true), WeightPrefetch.Parse("rows"));
        Assert.Equal(new WeightPrefetch(8 << 20, PrefetchPoint.Start, OwnRows: true), WeightPrefetch.Parse("rows+start:8"));
        Assert.Equal(new WeightPrefetch(8 << 20, OwnRows: true), WeightPrefetch.Parse("8+rows"));
        Assert.Equal("own rows", WeightPrefetch.Parse("rows").ToString());
        Assert.Equal("own rows + 8 MiB at end", WeightPrefetch.Parse("rows+8").ToString());
        foreach (string bad in new[] { "0", "-3", "start:", "8MiB", "later:8", "rows+rows", "8+16", "rows+", "rows+8+start:8" })
            Assert.Contains("expected a positive number of MiB", Assert.Throws<ArgumentException>(() => WeightPrefetch.Parse(bad)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DenseKernels(Acc, DenseSchedule.Warp, weightPrefetch: new WeightPrefetch(0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DenseKernels(Acc, DenseSchedule.Warp, weightPrefetch: new WeightPrefetch(-1, OwnRows: true)));
    }

    /// <summary>The lines a warp pulls for its own row (<see cref="L2Prefetch.RowLines"/>): from the 128-byte line that
    /// holds the first chunk past the first load step to the row's end, on rows that start mid-line; nothing when the
    /// first step is the whole row.</summary>
    [Theory]
    [InlineData(0, 256, 64, 1024, 4096)]          // a 4 KB row at 0, first step 1 KB: lines 1024 .. 4095
    [InlineData(3, 256, 64, 1024, 4144)]          // the next row starts 48 bytes into a line: (3 + 64) × 16 = 1072 → line 1024
    [InlineData(10, 165, 64, 1152, 2800)]         // 165 chunks (a partial last step): (10 + 64) × 16 = 1184 → 1152
    [InlineData(0, 64, 64, 1024, 1024)]           // the first step is the row: empty
    [InlineData(0, 40, 64, 640, 640)]             // a row shorter than one step: empty
    public void OwnRowLinesStartAtTheLineOfTheSecondStep(long rowChunk, int chunks, int firstStep, long first, long end)
    {
        const long matrix = 1L << 40; // line-aligned, as device allocations are
        var (from, to) = L2Prefetch.RowLines(matrix, rowChunk, firstStep, chunks);
        Assert.Equal((matrix + first, matrix + end), (from, to));
        Assert.True(from >= to || (from % L2Prefetch.LineBytes == 0 && from <= matrix + (rowChunk + firstStep) * 16));
    }

    [Theory]
    [InlineData(DenseSchedule.Serial)]
    [InlineData(DenseSchedule.Warp)]
    public void RmsNormMatchesFloat64(DenseSchedule schedule)
    {
        const int hidden = 72, inputs = 4;
        int seed = 11 + (int)schedule;
        var rng = new Random(seed);
        var x = Random(rng, inputs * hidden, 3f);
        var weight = Random(rng, hidden);
        int[] rowMap = { 2, 0, 3, 2 }; // gathered rows, one twice (the final norm picks rows like this)
        const float eps = 1e-5f;
        var expected = DenseReference.RmsNorm(x, rowMap, weight, hidden, eps);

        var kernels = new DenseKernels(Acc, schedule);
        using var xb = Upload(x);
        using var wb = Upload(weight);
        using var map = Acc.Allocate1D(rowMap);
        using var y = Poisoned(rowMap.Length * hidden);
        kernels.RmsNorm(xb.View, map.View, rowMap.Length, wb.View, eps, y.View, hidden);
        AssertClose(expected, y.GetAsArray1D(), 1e-5, $"seed {seed}");
    }

    [Theory]
    [InlineData(WeightDtype.F32)]
    [InlineData(WeightDtype.F16)]
    public void EmbeddingGathersRows(WeightDtype dtype)
    {
        const int vocab = 13, hidden = 24;
        var rng = new Random(5);
        var table = Random(rng, vocab * hidden);
        int[] ids = { 12, 0, 7, 7, 3 };
        var expected = ids.SelectMany(id => table.Skip(id * hidden).Take(hidden))
            .Select(v => dtype == WeightDtype.F16 ? (double)(float)(Half)v : v).ToArray();
        var kernels = new DenseKernels(Acc);
        using var matrix = WeightUpload.Matrix(Acc, table, vocab, hidden, dtype);
        using var idb = Acc.Allocate1D(ids);
        using var x = Poisoned(ids.Length * hidden);
        kernels.Embedding(matrix, idb.View, ids.Length, x.View);
        AssertClose(expected, x.GetAsArray1D(), 0, "embedding");
    }

    [Fact]
    public void RopeSplitRotatesHalvesAndCopiesValues()
    {
        const int tokens = 3, heads = 4, kvHeads = 2, headDim = 8, maxPos = 40;
        var rng = new Random(17);
        int width = (heads + 2 * kvHeads) * headDim;
        var qkv = Random(rng, tokens * width);
        int[] positions = { 0, 5, 39 };
        var inv = new double[headDim / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = Math.Pow(10000, -2.0 * i / headDim);
        var cos = new float[maxPos * headDim / 2];
        var sin = new float[maxPos * headDim / 2];
        for (int p = 0; p < maxPos; p++)
            for (int i = 0; i < headDim / 2; i++)
            {
                cos[p * headDim / 2 + i] = (float)Math.Cos(p * inv[i]);
                sin[p * headDim / 2 + i] = (float)Math.Sin(p * inv[i]);
            }

        // Reference: HF's q * cos + rotate_half(q) * sin, with rotate_half(x) = cat(-x2, x1).
        double[] Rotated(int t, int h)
        {
            var x = qkv.Skip(t * width + h * headDim).Take(headDim).Select(v => (double)v).ToArray();
            var o = new double[headDim];
            for (int i = 0; i < headDim; i++)
            {
                int f = i % (headDim / 2);
                double c = Math.Cos(positions[t] * inv[f]), s = Math.Sin(positions[t] * inv[f]);
                double rot = i < headDim / 2 ? -x[i + headDim / 2] : x[i - headDim / 2];
                o[i] = x[i] * c + rot * s;
            }

            return o;
        }

        var eq = new List<double>();
        var ek = new List<double>();
        var ev = new List<double>();
        for (int t = 0; t < tokens; t++)
        {
            for (int h = 0; h < heads; h++) eq.AddRange(Rotated(t, h));
            for (int h = 0; h < kvHeads; h++) ek.AddRange(Rotated(t, heads + h));
            for (int h = 0; h < kvHeads; h++) ev.AddRange(qkv.Skip(t * width + (heads + kvHeads + h) * headDim).Take(headDim).Select(v => (double)v));
        }

        var kernels = new DenseKernels(Acc);
        using var qkvb = Upload(qkv);
        using var pos = Acc.Allocate1D(positions);
        using var cb = Upload(cos);
        using var sb = Upload(sin);
        using var q = Poisoned(tokens * heads * headDim);
        using var k = Poisoned(tokens * kvHeads * headDim);
        using var v = Poisoned(tokens * kvHeads * headDim);
        kernels.RopeSplit(qkvb.View, new RopeSplitOutput<KvRows>(q.View, new KvRows(k.View, v.View, kvHeads, headDim), pos.View, cb.View, sb.View, heads, kvHeads, headDim), tokens);
        AssertClose(eq.ToArray(), q.GetAsArray1D(), 1e-6, "q");
        AssertClose(ek.ToArray(), k.GetAsArray1D(), 1e-6, "k");
        AssertClose(ev.ToArray(), v.GetAsArray1D(), 0, "v");
    }

    [Fact]
    public void SwiGluIsSiluOfGateTimesUp()
    {
        const int tokens = 3, inter = 20;
        var rng = new Random(23);
        var gu = Random(rng, tokens * 2 * inter, 6f);
        var expected = new double[tokens * inter];
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < inter; j++)
            {
                double g = gu[t * 2 * inter + j], u = gu[t * 2 * inter + inter + j];
                expected[t * inter + j] = g / (1 + Math.Exp(-g)) * u;
            }

        var kernels = new DenseKernels(Acc);
        using var gub = Upload(gu);
        using var a = Poisoned(tokens * inter);
        kernels.SwiGlu(gub.View, new SwiGluOutput(a.View, inter), tokens);
        AssertClose(expected, a.GetAsArray1D(), 1e-6, "swiglu");
    }

    /// <summary>What <c>si selftest --set dense</c> runs on a new device, here on the CPU accelerator: every line passes,
    /// with each launch variant's kernel (depths, fused launches, L2 prefetch, column splits) run once.</summary>
    [Fact]
    public void TheDenseSelfTestPassesOnTheCpuAccelerator()
    {
        int seed = System.Random.Shared.Next();
        var results = DenseSelfTest.Run(Acc, seed);
        Assert.Equal(25, results.Count);
        Assert.All(results, r => Assert.True(r.Passed, $"seed {seed}: {r}"));
    }

    /// <summary>The programmatic launches (<see cref="DecodeLaunches.PerStageProgrammatic"/>) are the per-stage ones, each
    /// matvec in its programmatic form: never a grid-synced tail or layer. On the CPU accelerator ILGPU launches them (no
    /// notice: the stream orders them, and the self-test checks them against float64).</summary>
    [Fact]
    public void ProgrammaticLaunchesAreThePerStageOnes()
    {
        var kernels = new DenseKernels(Acc, DenseSchedule.Warp, decodeLaunches: DecodeLaunches.PerStageProgrammatic);
        Assert.Equal(DecodeLaunches.PerStageProgrammatic, kernels.DecodeLaunches);
        Assert.False(kernels.RunsLayerTail(1));
        Assert.False(kernels.RunsWholeLayers(1));
        Assert.Null(kernels.ProgrammaticNotice);
        Assert.Equal(DecodeLaunches.PerStageProgrammatic, DecodeLaunchNames.Parse("per-stage-pdl"));
    }

    /// <summary>A self-test's error is NaN when any output is (a poisoned element the kernel left unwritten), and NaN
    /// fails every bound.</summary>
    [Fact]
    public void AnUnwrittenOutputFailsTheSelfTestBound()
    {
        double error = DenseReference.RelativeError([1.0, -2.0, 3.0], [1f, float.NaN, 3f]);
        Assert.True(double.IsNaN(error));
        Assert.False(error <= TensorCoreSelfTest.Tolerance);
        Assert.Equal(0.5 / 3, DenseReference.RelativeError([1.0, -2.0, 3.0], [1f, -2.5f, 3f]), 12);
    }
}
