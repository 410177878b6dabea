using System.Globalization;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Accelerators;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Reference;
using SpecializedInference.Runtime;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// <c>layer-tail</c>: one decoder layer's dense work at batch 1 (o_proj, gate|up + SwiGLU, down_proj, the next layer's
/// qkv + RoPE), on random f16 weights of a kernel set's shape, timed two ways: the four per-stage launches back to back
/// (the engine's default), one grid-synced launch (<see cref="DenseKernels.LayerTail{TKv}"/>), and one whose warps load
/// each stage's first rows before its barrier (<see cref="DecodeLaunches.GridSyncedTailsPreloaded"/>). Then both
/// grid-synced launches clocked (<see cref="DenseKernels.ClockTails"/>), which says where their time goes: each stage's
/// own rows, the groups' lateness at each barrier, and the barrier itself (<see cref="TailStageSummary"/>).
/// <para>Why: at batch 1 TinyLlama's tail took 50 µs a layer for 84 MiB of weights (run 23, 1748 GB/s), where the copy
/// bandwidth would read them in 22. Which of the three loses the rest decides what to build next: deeper loads, work
/// spread, or a cheaper barrier.</para>
/// </summary>
public static class LayerTailBench
{
    /// <summary>Clocked launches per model; the one with the median span is printed.</summary>
    private const int ClockedLaunches = 5;

    /// <param name="args"><c>[--device cuda|cpu|auto] [--sets Llama3_8B,TinyLlama_1_1B] [--quick]</c></param>
    /// <returns>0; 2 on a bad argument, a set that is not generated or no usable device (said on <paramref name="output"/>).</returns>
    public static int Run(string[] args, TextWriter output)
    {
        var kind = DeviceKind.Auto;
        string[] names = ["Llama3_8B", "TinyLlama_1_1B"];
        var timing = TimingOptions.Full;
        for (int i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--device" when i + 1 < args.Length: kind = BenchDevice.Parse(args[++i]); break;
                case "--sets" when i + 1 < args.Length: names = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries); break;
                case "--quick": timing = TimingOptions.Quick; break;
                default:
                    output.WriteLine($"layer-tail: unexpected argument '{args[i]}'; expected [--device cuda|cpu|auto] [--sets <kernel sets>] [--quick]");
                    return 2;
            }
        }
        var sets = new List<KernelSetInfo>();
        foreach (var name in names)
        {
            if (KernelRegistry.All.FirstOrDefault(s => s.Name == name) is not { } set)
            {
                output.WriteLine($"layer-tail: no kernel set '{name}'; generated: {string.Join(", ", KernelRegistry.All.Select(s => s.Name))}");
                return 2;
            }
            sets.Add(set);
        }

        using var device = BenchDevice.TryCreate(kind, out string noDevice);
        if (device is null)
        {
            output.WriteLine($"layer-tail: {noDevice}");
            return 2;
        }
        var accelerator = device.Accelerator;
        var copy = CopyBandwidth.Measure(accelerator, device.IsCuda ? 1L << 30 : 16L << 20, timing);   // the report's 1 GiB; a smoke test's 16 MiB on the CPU
        output.WriteLine($"layer-tail on {device.Description}: a layer's dense work at batch 1, f16 weights, matvec depths {MatvecDepth.Default}; " +
            $"copy {copy.GBps:F0} GB/s (read + write). Times are medians of back-to-back calls.");
        output.WriteLine("| model | weights | floor at copy bandwidth | 4 per-stage launches | GB/s | one grid-synced launch | GB/s | the same, first rows preloaded | GB/s |");
        output.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        var clocks = new List<string>();
        // One instance per schedule for all the models: each compiles its kernels once (same weight and row types).
        var perStage = new DenseKernels(accelerator, DenseSchedule.Warp);
        var gridSynced = new[] { DecodeLaunches.GridSyncedTails, DecodeLaunches.GridSyncedTailsPreloaded }
            .Select(launches => new DenseKernels(accelerator, DenseSchedule.Warp, decodeLaunches: launches)).ToList();
        foreach (var set in sets)
        {
            using var layer = new RandomLayer(accelerator, set.Shape);
            var chain = KernelTimer.Measure(accelerator, () => layer.PerStage(perStage), timing);
            var row = string.Create(CultureInfo.InvariantCulture,
                $"| {set.Name} | {Format.Bytes((long)layer.StageBytes.Sum())} | {Format.Seconds(layer.StageBytes.Sum() / (copy.GBps * 1e9 / 2))} | {Cells(chain.MedianSeconds)} |");
            foreach (var kernels in gridSynced)
            {
                var tail = KernelTimer.Measure(accelerator, () => layer.Tail(kernels), timing);
                kernels.CheckGridBarriers();
                row += $" {Cells(tail.MedianSeconds)} |";
                clocks.Add($"{set.Name}, {DecodeLaunchNames.Name(kernels.DecodeLaunches)}: {Clocked(kernels, layer)}");
            }
            output.WriteLine(row);

            string Cells(double seconds) => string.Create(CultureInfo.InvariantCulture, $"{Format.Seconds(seconds)} | {layer.StageBytes.Sum() / seconds / 1e9:F0}");
        }
        output.WriteLine();
        foreach (var text in clocks) output.WriteLine(text);
        return 0;
    }

    /// <summary>The tail's stages as <see cref="ClockedLaunches"/> clocked launches recorded them: the launch of median span.</summary>
    private static string Clocked(DenseKernels gridSynced, RandomLayer layer)
    {
        gridSynced.ClockTails = true;
        layer.Tail(gridSynced);   // compiles the clocked kernel
        var summaries = new List<TailStageSummary>();
        for (int i = 0; i < ClockedLaunches; i++)
        {
            layer.Tail(gridSynced);
            if (TailStageSummary.From(gridSynced.ReadTailStageTimes(), layer.StageBytes) is { } summary) summaries.Add(summary);
        }
        gridSynced.CheckGridBarriers();
        gridSynced.ClockTails = false;
        return summaries.Count == 0
            ? "the clocked tail recorded nothing (ILGPU's CPU accelerator has no clock)"
            : $"clocked, of {ClockedLaunches} launches the one of median span:{Environment.NewLine}{summaries.OrderBy(s => s.SpanNs).ElementAt(summaries.Count / 2)}";
    }

    /// <summary>
    /// A layer's dense weights and activations at batch 1, random, on the device: o [hidden, q dim], gate|up
    /// [2 · intermediate, hidden], down [hidden, intermediate], and the next layer's norm and qkv [q + 2 kv dims, hidden]
    /// with its q, k and v outputs (k and v as plain rows: no cache).
    /// </summary>
    private sealed class RandomLayer : IDisposable
    {
        private const float Eps = 1e-5f;
        private const int Positions = 16;
        private readonly List<IDisposable> _owned = [];
        private readonly DeviceMatrix _o, _gateUp, _down, _qkv;
        private readonly ArrayView<float> _attn, _x, _postNorm, _inputNorm, _h, _qkvScratch, _gateUpScratch;
        private readonly ArrayView<int> _rows;
        private readonly SwiGluOutput _act;
        private readonly RopeSplitOutput<KvRows> _rope;
        private readonly NextLayerWeights _next;

        public RandomLayer(Accelerator a, KernelShape shape)
        {
            var random = DeviceRandom.For(a);
            uint seed = 1;
            int hidden = shape.HiddenSize, inter = shape.IntermediateSize, headDim = shape.HeadDim;
            int qDim = shape.NumAttentionHeads * headDim, kvDim = shape.NumKeyValueHeads * headDim, qkvRows = qDim + 2 * kvDim;
            DeviceMatrix Matrix(int rows, int cols)
            {
                var buffer = a.Allocate1D<Bits128>(DeviceMatrix.ChunksFor(rows, cols, WeightDtype.F16));
                random.Halves(((ArrayView<Bits128>)buffer.View).Cast<global::ILGPU.Half>(), seed++, 0.05f);
                var m = new DeviceMatrix(buffer, rows, cols, WeightDtype.F16);
                _owned.Add(m);
                return m;
            }
            ArrayView<float> Floats(long length, float amplitude = 1)
            {
                var buffer = a.Allocate1D<float>(length);
                _owned.Add(buffer);
                random.Floats(buffer.View, seed++, amplitude);
                return buffer.View;
            }
            ArrayView<int> Ints(int[] values)
            {
                var buffer = a.Allocate1D(values);
                _owned.Add(buffer);
                return buffer.View;
            }

            _o = Matrix(hidden, qDim);                  // [hidden, heads · head_dim] f16
            _gateUp = Matrix(2 * inter, hidden);        // [2 · intermediate, hidden] f16: gate | up
            _down = Matrix(hidden, inter);              // [hidden, intermediate] f16
            _qkv = Matrix(qkvRows, hidden);             // [q | k | v rows, hidden] f16
            _attn = Floats(qDim);                       // [1, q dim]
            _x = Floats(hidden);                        // [1, hidden] residual stream
            _postNorm = Floats(hidden);                 // [hidden]
            _inputNorm = Floats(hidden);                // [hidden]
            _h = Floats(hidden);                        // [1, hidden] (the many-token path's scratch)
            _qkvScratch = Floats(qkvRows);              // [1, qkv rows] (likewise)
            _gateUpScratch = Floats(2L * inter);        // [1, 2 · intermediate] (likewise)
            _rows = Ints([0]);                          // [1] the token's row of x
            _act = new SwiGluOutput(Floats(inter), inter);   // [1, intermediate]
            // q [1, heads, head_dim], k and v [1, kv_heads, head_dim], at position Positions / 2 of cos/sin [Positions, head_dim / 2].
            _rope = new RopeSplitOutput<KvRows>(Floats(qDim), new KvRows(Floats(kvDim), Floats(kvDim), shape.NumKeyValueHeads, headDim), Ints([Positions / 2]),
                Floats((long)Positions * headDim / 2), Floats((long)Positions * headDim / 2), shape.NumAttentionHeads, shape.NumKeyValueHeads, headDim);
            _next = new NextLayerWeights(_inputNorm, _qkv, After: _o);
            StageBytes = [_o.Bytes, _gateUp.Bytes, _down.Bytes, _qkv.Bytes];
        }

        /// <summary>Each stage's weight bytes: o_proj, gate|up, down_proj, the next qkv (<see cref="TailStageSummary.Names"/>).</summary>
        public double[] StageBytes { get; }

        /// <summary>The four stages as the per-stage schedule launches them (each naming the next matrix, as the runner does).</summary>
        public void PerStage(DenseKernels k)
        {
            k.Linear(_attn, 1, _o, _x, accumulate: true, next: _gateUp);
            k.NormGateUpSwiGlu(_x, _rows, 1, _postNorm, Eps, _gateUp, _act, _h, _gateUpScratch, next: _down);
            k.Linear(_act.A, 1, _down, _x, accumulate: true, next: _qkv);
            k.NormQkvRope(_x, _rows, 1, _inputNorm, Eps, _qkv, _rope, _h, _qkvScratch, next: _o);
        }

        /// <summary>The four stages in one grid-synced launch.</summary>
        public void Tail(DenseKernels k) =>
            k.LayerTail(_attn, 1, _o, _x, _rows, _postNorm, Eps, _gateUp, _act, _down, _rope, _next);

        public void Dispose()
        {
            foreach (var owned in _owned) owned.Dispose();
        }
    }
}
