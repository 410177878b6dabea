using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Runtime;

namespace SpecializedInference.Kernels.Reference;

/// <summary>
/// What <c>si selftest --set dense</c> runs: the warp schedule's decode-step kernels on the device against float64, each
/// launch variant the engine can be told to pick. The matvec (<c>LinearWarp</c>) at 2, 4 and 8 chunks per lane per
/// step; the fused norm → projection (<c>NormLinearWarp</c>) with the LM head's epilogue in groups of 4, 2 and 1
/// warps (the last two capped at 88 registers, <see cref="FusedMatvecLaunch"/>) and with SwiGLU's while it pulls the
/// next matrix into L2 at its end and at its start, or its own rows and the next matrix (<see cref="WeightPrefetch"/>);
/// the matvec pulling its own rows, and streaming its rows through shared memory by asynchronous copies
/// (<see cref="MatvecLoads.AsyncCopy"/>), and both launched with programmatic dependent launch (their first weights loaded before they wait for the kernel before them); a layer's tail as one grid-synced launch, plain, with each stage's first rows loaded before its barrier, and clocked; the batched projection for 2–16
/// tokens with its columns split 1, 2 and 4 ways. 67 rows (an odd last row pair, a partial group) of 1320 columns
/// (165 f16 chunks: whole load steps and a partial one at every depth), 1 to 12 tokens (partial token groups), the
/// inputs' rows read in reverse, outputs poisoned with NaN or holding what they add to. Until this, these kernels were
/// checked on a GPU only through a whole model's text.
/// </summary>
public static class DenseSelfTest
{
    public const int Rows = 67;
    public const int Cols = 1320;
    private const float Eps = 1e-5f;

    public static IReadOnlyList<SelfTestResult> Run(Accelerator accelerator, int seed)
    {
        var rng = new Random(seed);
        var results = new List<SelfTestResult>();
        var warp = new DenseKernels(accelerator, DenseSchedule.Warp);
        foreach (int depth in new[] { 2, 4, 8 })
        {
            var kernels = new DenseKernels(accelerator, DenseSchedule.Warp, new MatvecDepth(Linear: depth));
            results.Add(Check("matvec", $"f16, {depth} chunks/lane, 3 tok, y +=", () => Linear(kernels, rng, WeightDtype.F16, 3, accumulate: true)));
        }
        results.Add(Check("matvec", "f32, 1 tok, y =", () => Linear(warp, rng, WeightDtype.F32, 1, accumulate: false)));
        foreach (var launch in new[] { FusedMatvecLaunch.Default, new FusedMatvecLaunch(2, 88), new FusedMatvecLaunch(1, 88) })
        {
            var kernels = new DenseKernels(accelerator, DenseSchedule.Warp, fusedLaunch: launch);
            results.Add(Check("norm-linear", $"f16, 5 tok, groups of {launch.WarpsPerGroup} warps{(launch.MaxRegisters > 0 ? $", {launch.MaxRegisters} regs" : "")}",
                () => NormLinear(kernels, rng, 5)));
        }
        foreach (var prefetch in new[] { new WeightPrefetch(1 << 20, PrefetchPoint.End), new WeightPrefetch(1 << 20, PrefetchPoint.Start),
                     new WeightPrefetch(1 << 20, PrefetchPoint.End, OwnRows: true) })
        {
            var kernels = new DenseKernels(accelerator, DenseSchedule.Warp, weightPrefetch: prefetch);
            results.Add(Check("norm-swiglu", $"f16, 2 tok, L2 prefetch: {prefetch}", () => NormGateUpSwiGlu(kernels, rng, 2)));
        }
        var ownRows = new DenseKernels(accelerator, DenseSchedule.Warp, weightPrefetch: WeightPrefetch.Rows);
        results.Add(Check("matvec", "f16, 4 chunks/lane, 1 tok, y +=, L2 prefetch: own rows", () => Linear(ownRows, rng, WeightDtype.F16, 1, accumulate: true)));
        var asyncCopies = new DenseKernels(accelerator, DenseSchedule.Warp, loads: MatvecLoads.AsyncCopy);
        foreach (var (dtype, tokens) in new[] { (WeightDtype.F16, 1), (WeightDtype.F32, 3) })
            results.Add(Check("matvec", $"{dtype.ToString().ToLowerInvariant()}, {tokens} tok, y +=, weights through shared memory by async copies",
                () => Linear(asyncCopies, rng, dtype, tokens, accumulate: true)));
        results.Add(Check("norm-linear", "f16, 5 tok, row pairs through shared memory by async copies", () => NormLinear(asyncCopies, rng, 5)));
        var programmatic = new DenseKernels(accelerator, DenseSchedule.Warp, decodeLaunches: DecodeLaunches.PerStageProgrammatic);
        string how = programmatic.ProgrammaticNotice is null && accelerator.AcceleratorType == AcceleratorType.Cuda ? "programmatic dependent launch" : "PDL kernel, ILGPU's launch";
        results.Add(Check("matvec", $"f16, 4 chunks/lane, 3 tok, y +=, {how}", () => Linear(programmatic, rng, WeightDtype.F16, 3, accumulate: true)));
        results.Add(Check("norm-linear", $"f16, 5 tok, {how}", () => NormLinear(programmatic, rng, 5)));
        // Both at once: the rings fill with the first weights before the wait.
        var programmaticCopies = new DenseKernels(accelerator, DenseSchedule.Warp, decodeLaunches: DecodeLaunches.PerStageProgrammatic, loads: MatvecLoads.AsyncCopy);
        results.Add(Check("matvec", $"f16, 1 tok, y +=, async copies, {how}", () => Linear(programmaticCopies, rng, WeightDtype.F16, 1, accumulate: true)));
        results.Add(Check("norm-linear", $"f16, 5 tok, row pairs by async copies, {how}", () => NormLinear(programmaticCopies, rng, 5)));
        var gridSynced = new DenseKernels(accelerator, DenseSchedule.Warp, decodeLaunches: DecodeLaunches.GridSyncedTails);
        foreach (int tokens in new[] { 1, 3 })
            results.Add(Check("layer-tail", $"f16, {tokens} tok, one grid-synced launch", () => LayerTail(gridSynced, rng, tokens)));
        // Rows of at least one whole load step (the first step is what a preloaded stage carries over its barrier): at 2 chunks
        // per lane for every stage a step is 64 f16 chunks, so hidden and intermediate 520 (65 chunks: a step and one more).
        var twoChunks = new MatvecDepth(Linear: 2, FusedPerRow: 2);
        var preloaded = new DenseKernels(accelerator, DenseSchedule.Warp, twoChunks, decodeLaunches: DecodeLaunches.GridSyncedTailsPreloaded);
        var plain = new DenseKernels(accelerator, DenseSchedule.Warp, twoChunks, decodeLaunches: DecodeLaunches.GridSyncedTails);
        results.Add(Check("layer-tail", "f16, 3 tok, hidden 520, each stage's first rows loaded before its barrier, bits as the plain tail's",
            () => LayerTail(preloaded, rng, 3, hidden: 520, intermediate: 520, sameAs: plain)));
        var clocked = new DenseKernels(accelerator, DenseSchedule.Warp, decodeLaunches: DecodeLaunches.GridSyncedTails) { ClockTails = true };
        results.Add(Check("layer-tail", "f16, 1 tok, clocked (each group's stage marks)", () => ClockedLayerTail(clocked, rng)));
        foreach (var (dtype, tokens, split) in new[] { (WeightDtype.F16, 5, 2), (WeightDtype.F16, 12, 4), (WeightDtype.F32, 8, 1) })
            results.Add(Check("batched", $"{dtype.ToString().ToLowerInvariant()}, {tokens} tok, columns split {split}, y +=",
                () => Batched(warp, rng, dtype, tokens, split)));
        return results;
    }

    /// <summary>y (+)= x · Wᵀ through <see cref="DenseKernels.Linear"/> (the matvec for up to 8 tokens).</summary>
    private static double Linear(DenseKernels kernels, Random rng, WeightDtype dtype, int tokens, bool accumulate)
    {
        var w = Values(rng, Rows * Cols);
        var x = Values(rng, tokens * Cols);
        var y0 = accumulate ? Values(rng, tokens * Rows) : null;
        var a = kernels.Accelerator;
        using var matrix = WeightUpload.Matrix(a, w, Rows, Cols, dtype);   // [Rows, Cols]
        using var dx = a.Allocate1D(x);                                     // [tokens, Cols]
        using var dy = a.Allocate1D(y0 ?? Poison(tokens * Rows));           // [tokens, Rows]
        kernels.Linear(dx.View, tokens, matrix, dy.View, accumulate);
        return DenseReference.RelativeError(DenseReference.Linear(w, x, y0, tokens, Rows, Cols, dtype), dy.GetAsArray1D());
    }

    /// <summary>y = RMSNorm(x[rows reversed]) ∘ g · Wᵀ through <see cref="DenseKernels.NormLinear"/> (fused: the LM head's kernel).</summary>
    private static double NormLinear(DenseKernels kernels, Random rng, int tokens)
    {
        var (x, xRows, g, w) = NormInputs(rng, tokens, Rows);
        var a = kernels.Accelerator;
        using var matrix = WeightUpload.Matrix(a, w, Rows, Cols, WeightDtype.F16);   // [Rows, Cols]
        using var dx = a.Allocate1D(x);                         // [tokens, Cols]
        using var dRows = a.Allocate1D(xRows);                  // [tokens]
        using var dg = a.Allocate1D(g);                         // [Cols]
        using var dy = a.Allocate1D(Poison(tokens * Rows));     // [tokens, Rows]
        using var h = a.Allocate1D(Poison(tokens * Cols));      // [tokens, Cols] the unfused path's scratch
        kernels.NormLinear(dx.View, dRows.View, tokens, dg.View, Eps, matrix, dy.View, h.View);
        var expected = DenseReference.Linear(DenseReference.AsStored(w, WeightDtype.F16), DenseReference.RmsNorm(x, xRows, g, Cols, Eps), null, tokens, Rows, Cols);
        return DenseReference.RelativeError(expected, dy.GetAsArray1D());
    }

    /// <summary>a = silu(gate) · up of RMSNorm(x) ∘ g through <see cref="DenseKernels.NormGateUpSwiGlu"/>, with the
    /// matvec's matrix as the next projection (what the prefetch pulls into L2).</summary>
    private static double NormGateUpSwiGlu(DenseKernels kernels, Random rng, int tokens)
    {
        const int intermediate = Rows;
        var (x, xRows, g, w) = NormInputs(rng, tokens, 2 * intermediate);
        var a = kernels.Accelerator;
        using var gateUp = WeightUpload.Matrix(a, w, 2 * intermediate, Cols, WeightDtype.F16);           // [2 * intermediate, Cols] gate | up
        using var next = WeightUpload.Matrix(a, Values(rng, Rows * Cols), Rows, Cols, WeightDtype.F16);   // [Rows, Cols]
        using var dx = a.Allocate1D(x);                                        // [tokens, Cols]
        using var dRows = a.Allocate1D(xRows);                                 // [tokens]
        using var dg = a.Allocate1D(g);                                        // [Cols]
        using var act = a.Allocate1D(Poison(tokens * intermediate));           // [tokens, intermediate]
        using var h = a.Allocate1D(Poison(tokens * Cols));                     // [tokens, Cols] the unfused path's scratch
        using var scratch = a.Allocate1D(Poison(tokens * 2 * intermediate));   // [tokens, 2 * intermediate] the unfused path's scratch
        kernels.NormGateUpSwiGlu(dx.View, dRows.View, tokens, dg.View, Eps, gateUp, new SwiGluOutput(act.View, intermediate), h.View, scratch.View, next);
        var projected = DenseReference.Linear(DenseReference.AsStored(w, WeightDtype.F16), DenseReference.RmsNorm(x, xRows, g, Cols, Eps), null, tokens,
            2 * intermediate, Cols);
        return DenseReference.RelativeError(DenseReference.SwiGlu(projected, tokens, intermediate), act.GetAsArray1D());
    }

    /// <summary>
    /// A layer's tail (o_proj, gate|up + SwiGLU, down_proj, the next layer's qkv + rope) as one grid-synced launch
    /// (<see cref="DenseKernels.LayerTail{TKv}"/>, its groups meeting at grid barriers) against float64 stage by stage: the
    /// residual stream, the activation, q, k and v. Hidden 264 (33 f16 chunks: a partial load step), 4/2 heads of 32,
    /// intermediate 72; positions 5, 9, 2. On a GPU its widest stage (264 rows) spreads over 17 groups of 16 warps.
    /// With <paramref name="sameAs"/>, that tail runs again on the same inputs and must give the same bits.
    /// </summary>
    private static double LayerTail(DenseKernels gridSynced, Random rng, int tokens, int hidden = 264, int intermediate = 72, DenseKernels? sameAs = null)
    {
        const int heads = 4, kvHeads = 2, headDim = 32, maxPositions = 16;
        const int queryDim = heads * headDim, kvDim = kvHeads * headDim, qkvRows = queryDim + 2 * kvDim;
        if (!gridSynced.RunsLayerTail(tokens)) throw new InvalidOperationException($"{tokens} tokens do not run the grid-synced tail here");
        float[] wo = Values(rng, hidden * queryDim), wgu = Values(rng, 2 * intermediate * hidden), wdown = Values(rng, hidden * intermediate),
            wqkv = Values(rng, qkvRows * hidden), attn = Values(rng, tokens * queryDim), postNorm = Values(rng, hidden, 1, offset: 1),
            inputNorm = Values(rng, hidden, 1, offset: 1), cos = Values(rng, maxPositions * headDim / 2), sin = Values(rng, maxPositions * headDim / 2),
            x0 = Values(rng, tokens * hidden, 3);
        int[] xRows = Enumerable.Range(0, tokens).ToArray(), positions = new[] { 5, 9, 2 }[..tokens];

        // Reference: x += attn · Woᵀ; act = silu(norm(x) · Wgateᵀ) · (norm(x) · Wupᵀ); x += act · Wdownᵀ; q, k, v = rope(norm(x) · Wqkvᵀ).
        var x1 = DenseReference.Linear(wo, attn, x0, tokens, hidden, queryDim, WeightDtype.F16);
        var act = DenseReference.SwiGlu(DenseReference.Linear(DenseReference.AsStored(wgu, WeightDtype.F16),
            DenseReference.RmsNorm(x1, xRows, postNorm, hidden, Eps), null, tokens, 2 * intermediate, hidden), tokens, intermediate);
        var x2 = DenseReference.Linear(DenseReference.AsStored(wdown, WeightDtype.F16), act, null, tokens, hidden, intermediate);
        for (int e = 0; e < x2.Length; e++) x2[e] += x1[e];
        var (eq, ek, ev) = DenseReference.RopeSplit(DenseReference.Linear(DenseReference.AsStored(wqkv, WeightDtype.F16),
            DenseReference.RmsNorm(x2, xRows, inputNorm, hidden, Eps), null, tokens, qkvRows, hidden), positions, cos, sin, heads, kvHeads, headDim);

        var a = gridSynced.Accelerator;
        using var o = WeightUpload.Matrix(a, wo, hidden, queryDim, WeightDtype.F16);                       // [hidden, heads · head_dim]
        using var gateUp = WeightUpload.Matrix(a, wgu, 2 * intermediate, hidden, WeightDtype.F16);         // [2 · intermediate, hidden]
        using var down = WeightUpload.Matrix(a, wdown, hidden, intermediate, WeightDtype.F16);             // [hidden, intermediate]
        using var qkv = WeightUpload.Matrix(a, wqkv, qkvRows, hidden, WeightDtype.F16);                    // [q | k | v rows, hidden]
        using var dAttn = a.Allocate1D(attn);                        // [tokens, heads · head_dim]
        using var dPostNorm = a.Allocate1D(postNorm);                // [hidden]
        using var dInputNorm = a.Allocate1D(inputNorm);              // [hidden]
        using var dRows = a.Allocate1D(xRows);                       // [tokens]
        using var dPositions = a.Allocate1D(positions);              // [tokens]
        using var dCos = a.Allocate1D(cos);                          // [max_positions, head_dim / 2]
        using var dSin = a.Allocate1D(sin);                          // [max_positions, head_dim / 2]
        using var x = a.Allocate1D(x0);                              // [tokens, hidden] residual stream
        using var dAct = a.Allocate1D(Poison(tokens * intermediate)); // [tokens, intermediate]
        using var q = a.Allocate1D(Poison(tokens * queryDim));       // [tokens, heads, head_dim]
        using var k = a.Allocate1D(Poison(tokens * kvDim));          // [tokens, kv_heads, head_dim]
        using var v = a.Allocate1D(Poison(tokens * kvDim));          // [tokens, kv_heads, head_dim]
        var rope = new RopeSplitOutput<KvRows>(q.View, new KvRows(k.View, v.View, kvHeads, headDim), dPositions.View, dCos.View, dSin.View, heads, kvHeads, headDim);
        float[] Run(DenseKernels kernels)
        {
            x.CopyFromCPU(x0);
            foreach (var output in new[] { dAct, q, k, v }) output.CopyFromCPU(Poison((int)output.Length));
            kernels.LayerTail(dAttn.View, tokens, o, x.View, dRows.View, dPostNorm.View, Eps, gateUp, new SwiGluOutput(dAct.View, intermediate), down, rope,
                new NextLayerWeights(dInputNorm.View, qkv, After: o));
            kernels.CheckGridBarriers();
            return [.. x.GetAsArray1D(), .. dAct.GetAsArray1D(), .. q.GetAsArray1D(), .. k.GetAsArray1D(), .. v.GetAsArray1D()];
        }
        var actual = Run(gridSynced);
        if (sameAs is not null && !actual.AsSpan().SequenceEqual(Run(sameAs)))
            throw new InvalidOperationException($"the tail differs from the {sameAs.DecodeLaunches} one's bits on the same inputs");
        return DenseReference.RelativeError([.. x2, .. act, .. eq, .. ek, .. ev], actual);
    }

    /// <summary><see cref="LayerTail"/> with <see cref="DenseKernels.ClockTails"/> on (the benchmarks' <c>layer-tail</c>): the
    /// same results, and where the device has a clock (CUDA), every group's four stages marked in order.</summary>
    private static double ClockedLayerTail(DenseKernels clocked, Random rng)
    {
        double error = LayerTail(clocked, rng, 1);
        var times = clocked.ReadTailStageTimes();
        if (clocked.Accelerator.AcceleratorType != AcceleratorType.Cuda) return error;   // no clock to read
        var summary = TailStageSummary.From(times)
            ?? throw new InvalidOperationException($"the clocked tail's {times.Length / StageRow.SlotsPerGroup} groups recorded no entry and exit");
        if (summary.Groups != times.Length / StageRow.SlotsPerGroup || summary.Stages.Count != TailStageSummary.Names.Length
            || summary.Stages.Any(s => s.Groups != summary.Groups || !(s.MeanWorkNs >= 0) || !(s.MinWaitNs >= 0)))
            throw new InvalidOperationException($"the clocked tail's marks are incomplete or out of order:{Environment.NewLine}{summary}");
        return error;
    }

    /// <summary>y += x · Wᵀ through the batched projection with <paramref name="split"/> warps per row-warp.</summary>
    private static double Batched(DenseKernels kernels, Random rng, WeightDtype dtype, int tokens, int split)
    {
        var w = Values(rng, Rows * Cols);
        var x = Values(rng, tokens * Cols);
        var y0 = Values(rng, tokens * Rows);
        var a = kernels.Accelerator;
        using var matrix = WeightUpload.Matrix(a, w, Rows, Cols, dtype);   // [Rows, Cols]
        using var dx = a.Allocate1D(x);                                     // [tokens, Cols]
        using var dy = a.Allocate1D(y0);                                    // [tokens, Rows]
        kernels.LinearBatched(dx.View, tokens, matrix, dy.View, accumulate: true, split);
        return DenseReference.RelativeError(DenseReference.Linear(w, x, y0, tokens, Rows, Cols, dtype), dy.GetAsArray1D());
    }

    /// <summary>The residual rows (x, [tokens, Cols]), which row each token normalizes (reversed), the norm weight and
    /// the projection's weights ([rows, Cols]).</summary>
    private static (float[] X, int[] XRows, float[] G, float[] W) NormInputs(Random rng, int tokens, int rows) =>
        (Values(rng, tokens * Cols, 3), Enumerable.Range(0, tokens).Reverse().ToArray(), Values(rng, Cols, 1, offset: 1), Values(rng, rows * Cols));

    private static float[] Values(Random rng, int n, float scale = 1, float offset = 0) =>
        Enumerable.Range(0, n).Select(_ => offset + (float)(rng.NextDouble() * 2 - 1) * scale).ToArray();

    private static float[] Poison(int n) => Enumerable.Repeat(float.NaN, n).ToArray();

    /// <summary>One line: the error over the largest |expected|, or the exception a launch threw.</summary>
    private static SelfTestResult Check(string kernel, string detail, Func<double> run)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            double error = run();
            return new SelfTestResult("dense", kernel, detail, new Comparison(error, error, -1), error <= TensorCoreSelfTest.Tolerance, clock.Elapsed,
                $"max err {error:E2} x largest |expected|");
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return new SelfTestResult("dense", kernel, detail, new Comparison(double.NaN, double.NaN, -1), false, clock.Elapsed, $"{ex.GetType().Name}: {ex.Message}");
        }
    }
}
