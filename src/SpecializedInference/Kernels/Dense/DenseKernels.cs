using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels.Sampling;

namespace SpecializedInference.Kernels.Dense;

/// <summary>Which schedule the reductions (projections, RMSNorm) use; see <see cref="DenseKernelBodies"/>.</summary>
public enum DenseSchedule
{
    /// <summary><see cref="Serial"/> on ILGPU's CPU accelerator, <see cref="Warp"/> elsewhere.</summary>
    Auto,

    /// <summary>Warp-per-row matvec, tiled matmul, group-per-row RMSNorm: the GPU design.</summary>
    Warp,

    /// <summary>A few threads looping over whole rows: for the CPU accelerator.</summary>
    Serial,
}

/// <summary>How a decode step's dense stages between two attention launches are launched (warp schedule, few tokens).</summary>
public enum DecodeLaunches
{
    /// <summary>A launch per stage: o_proj, norm+gate|up+SwiGLU, down_proj, the next layer's norm+qkv+rope.</summary>
    PerStage,

    /// <summary>The four in one launch whose groups meet at a grid barrier between stages (<see cref="LayerTailBodies"/>):
    /// two launches per layer instead of five.</summary>
    GridSyncedTails,

    /// <summary>As <see cref="GridSyncedTails"/>, each warp loading its first rows of the next stage before each grid barrier
    /// (<see cref="CarryFirstStep"/>): in flight while the groups meet, where the per-stage launches and the plain tail
    /// start each stage with a memory round trip.</summary>
    GridSyncedTailsPreloaded,

    /// <summary>A launch per stage, the warp matvecs (o_proj, down_proj, the fused qkv, gate|up and LM head) each launched
    /// with programmatic dependent launch (<see cref="Accelerators.ProgrammaticLauncher"/>, CUDA sm_90): a matvec starts
    /// while the kernel before it finishes, loads its first weights, then waits for that kernel's output
    /// (<see cref="DenseKernelBodies.LinearWarpProgrammatic{TW, TE, TD, TP}"/>). Elsewhere the same kernels through ILGPU
    /// (the CPU accelerator) or the per-stage ones with a notice (CUDA below sm_90).</summary>
    PerStageProgrammatic,

    /// <summary>The layer's decode attention too, before the four (<see cref="LayerTailBodies.Layer{TW, TKv, TDecode, TL, TF, TQ, TP, TC, TK}"/>):
    /// one launch per layer, where the kernel set hands its decode over (<see cref="AttentionKernelsBase.TryHandDecode{TVisitor}"/>);
    /// otherwise as <see cref="GridSyncedTails"/>.</summary>
    GridSyncedLayers,
}

/// <summary>The command-line names of <see cref="DecodeLaunches"/> (<c>si generate --decode-launches</c>, the report's).</summary>
public static class DecodeLaunchNames
{
    public static string Name(DecodeLaunches launches) => launches switch
    {
        DecodeLaunches.GridSyncedTails => "grid-synced-tails",
        DecodeLaunches.GridSyncedLayers => "grid-synced-layers",
        DecodeLaunches.GridSyncedTailsPreloaded => "grid-synced-tails-preloaded",
        DecodeLaunches.PerStageProgrammatic => "per-stage-pdl",
        _ => "per-stage",
    };

    public static DecodeLaunches Parse(string text)
    {
        foreach (var launches in Enum.GetValues<DecodeLaunches>())
            if (Name(launches) == text) return launches;
        throw new ArgumentException($"--decode-launches '{text}': expected per-stage, per-stage-pdl, grid-synced-tails, grid-synced-tails-preloaded or grid-synced-layers");
    }
}

/// <summary>A weight matrix on the device: <c>[Rows, Cols]</c> row-major, f32 or f16, as 16-byte chunks.</summary>
public sealed class DeviceMatrix : IDisposable
{
    public DeviceMatrix(MemoryBuffer1D<Bits128, Stride1D.Dense> buffer, int rows, int cols, WeightDtype dtype)
    {
        Buffer = buffer;
        Rows = rows;
        Cols = cols;
        Dtype = dtype;
    }

    public MemoryBuffer1D<Bits128, Stride1D.Dense> Buffer { get; }

    public int Rows { get; }

    public int Cols { get; }

    public WeightDtype Dtype { get; }

    public ArrayView<Bits128> View => Buffer.View;

    public static int ElementsPerChunk(WeightDtype dtype) => dtype == WeightDtype.F16 ? 8 : 4;

    /// <summary>Chunks that hold <c>rows × cols</c> weights of <paramref name="dtype"/> (cols must be a multiple of the chunk's elements).</summary>
    public static long ChunksFor(long rows, int cols, WeightDtype dtype) => rows * (cols / ElementsPerChunk(dtype));

    public long Bytes => Buffer.LengthInBytes;

    public void Dispose() => Buffer.Dispose();
}

/// <summary>
/// The dense kernels compiled for one accelerator, launched by shape. Variants are compiled on first use.
/// Every method only enqueues work on the accelerator's default stream.
/// </summary>
public sealed class DenseKernels
{
    /// <summary>From this many tokens the warp schedule switches from the matvec to the batched projection.</summary>
    public const int BatchedMinTokens = DenseKernelBodies.WarpTokens + 1;

    /// <summary>
    /// Up to this many tokens the norm → projection → element-wise sequences are one fused launch (two passes of the
    /// matvec's token groups at most: from 5 tokens the fused launch reads the weights twice, which costs about what the
    /// two launches it saves cost; past 8 the batched projection's single weight pass wins).
    /// </summary>
    public const int FusedMaxTokens = 2 * DenseKernelBodies.WarpTokens;

    /// <summary>From this many tokens f16 projections run on tensor cores when <see cref="TensorCores"/> is on: up to 8 the
    /// batched projection reads the weights at HBM speed already (its f32 FMAs bound it from ~13 tokens).</summary>
    public const int TensorCoreMinTokens = 9;

    /// <summary>Up to this many tokens the batched projection runs (see <see cref="BatchedKernelBodies"/>); above, the tiled matmul.</summary>
    public const int BatchedMaxTokens = 64;

    /// <summary>From this many tokens the warp schedule runs the tiled matmul (prefill).</summary>
    public const int TiledMinTokens = BatchedMaxTokens + 1;

    /// <summary>
    /// Warps per group of the warp-per-row kernels. They share nothing but L1 (the token group's activations), so a
    /// small group only keeps the tail of the last wave short.
    /// </summary>
    private const int WarpsPerGroup = 4;

    private readonly Accelerator _accelerator;
    private readonly int _elementwiseThreads;
    private readonly Dictionary<(string, Type, Type?, Type?, Type?), Delegate> _kernels = new();
    private long _launches;

    /// <param name="tensorCores">Run the f16 projections of <see cref="TensorCoreMinTokens"/> tokens or more on tensor cores
    /// (<see cref="TensorCoreBodies"/>) on the warp schedule.</param>
    /// <param name="weightPrefetch">What a warp matvec pulls into L2 ahead of its loads: the next projection's first weights, its own rows, or both (<see cref="L2Prefetch"/>); null: none.</param>
    /// <param name="fusedLaunch">Group size and register cap of the fused decode matvec; null: <see cref="FusedMatvecLaunch.Default"/>.</param>
    /// <param name="decodeLaunches">Whether a decode step's dense stages between attention launches are one grid-synced
    /// launch (<see cref="DecodeLaunches.GridSyncedTails"/>, the warp schedule only) or a launch each.</param>
    /// <param name="loads">How the warp schedule's per-stage decode matvecs bring their weights in (<see cref="MatvecLoads"/>).</param>
    public DenseKernels(Accelerator accelerator, DenseSchedule schedule = DenseSchedule.Auto, MatvecDepth? depth = null, bool tensorCores = false,
        WeightPrefetch? weightPrefetch = null, FusedMatvecLaunch? fusedLaunch = null, DecodeLaunches decodeLaunches = DecodeLaunches.PerStage,
        MatvecLoads loads = MatvecLoads.Registers)
    {
        _accelerator = accelerator;
        DecodeLaunches = decodeLaunches;
        if (decodeLaunches == DecodeLaunches.PerStageProgrammatic && accelerator is not CPUAccelerator)
        {
            // On CUDA the programmatic kernels need the launcher (their griddepcontrol needs the raised PTX target);
            // without it the plain per-stage kernels run, and the notice says why.
            _launcher = ProgrammaticLauncher.For(accelerator, out string? whyNot);
            if (_launcher is null)
            {
                DecodeLaunches = DecodeLaunches.PerStage;
                ProgrammaticNotice = $"--decode-launches per-stage-pdl: {whyNot}; the per-stage launches run instead";
            }
        }
        Loads = loads;
        _gridBarrierSpinLimit = accelerator is CPUAccelerator ? 1 << 28 : 1 << 22;
        WeightPrefetch = weightPrefetch?.Validated();
        FusedLaunch = (fusedLaunch ?? FusedMatvecLaunch.Default).Validated();
        TensorCores = tensorCores;
        Depth = (depth ?? MatvecDepth.Default).Validated();
        Schedule = schedule == DenseSchedule.Auto
            ? accelerator is CPUAccelerator ? DenseSchedule.Serial : DenseSchedule.Warp
            : schedule;
        // Element-wise grid-stride launches: enough threads to fill a GPU; few on the CPU accelerator, where
        // every simulated thread costs an OS thread's scheduling.
        _elementwiseThreads = accelerator is CPUAccelerator
            ? Math.Max(accelerator.WarpSize, 64)
            : accelerator.NumMultiprocessors * accelerator.MaxNumThreadsPerMultiprocessor;
    }

    public DenseSchedule Schedule { get; }

    /// <summary>Whether f16 projections of <see cref="TensorCoreMinTokens"/> tokens or more run on tensor cores.</summary>
    public bool TensorCores { get; }

    /// <summary>Weight chunks per lane per step of the warp schedule's matvecs.</summary>
    public MatvecDepth Depth { get; }

    /// <summary>How the warp schedule's per-stage decode matvecs (o_proj, down_proj, and the fused qkv, gate|up and LM
    /// head) bring their weights in: into registers, <see cref="Depth"/> chunks a step, or through shared memory by
    /// asynchronous copies (<see cref="AsyncCopyBodies"/>; no L2 prefetch there). The grid-synced tails keep registers.</summary>
    public MatvecLoads Loads { get; }

    /// <summary>What a warp matvec pulls into L2 ahead of its loads: the next projection's first weights, its own rows, or both (<see cref="L2Prefetch"/>); null: none.</summary>
    public WeightPrefetch? WeightPrefetch { get; }

    /// <summary>Whether the warp matvecs pull their own rows into L2 (the <see cref="OwnRowPrefetch"/> kernels).</summary>
    private bool PullsOwnRows => WeightPrefetch?.OwnRows == true;

    /// <summary>Warps per group and register cap of the fused decode matvec (<see cref="FusedMatvecLaunch"/>).</summary>
    public FusedMatvecLaunch FusedLaunch { get; }

    /// <summary>How a decode step's dense stages between attention launches are launched (<see cref="LayerTail{TKv}"/>).</summary>
    public DecodeLaunches DecodeLaunches { get; }

    /// <summary>The launcher of the warp matvecs under <see cref="DecodeLaunches.PerStageProgrammatic"/> on CUDA sm_90; null elsewhere.</summary>
    private readonly ProgrammaticLauncher? _launcher;

    /// <summary>Whether the per-stage decode matvecs are launched programmatically (<see cref="LoadDecodeMatvec{T1, T2, T3, T4, T5, T6, T7}"/>).</summary>
    private bool Programmatic => DecodeLaunches == DecodeLaunches.PerStageProgrammatic;

    /// <summary>
    /// A per-stage decode matvec: <paramref name="streamOrdered"/>, or under <see cref="DecodeLaunches.PerStageProgrammatic"/>
    /// <paramref name="programmatic"/> (the same work with <c>griddepcontrol</c> marks): through the launcher on CUDA sm_90,
    /// whose raised PTX target those marks need, and through ILGPU on the CPU accelerator, where they are no-ops.
    /// </summary>
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7> LoadDecodeMatvec<T1, T2, T3, T4, T5, T6, T7>(
        Action<T1, T2, T3, T4, T5, T6, T7> streamOrdered, Action<T1, T2, T3, T4, T5, T6, T7> programmatic)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
        => !Programmatic ? _accelerator.LoadStreamKernel(streamOrdered)
            : _launcher is { } launcher ? launcher.Load(programmatic)
            : _accelerator.LoadStreamKernel(programmatic);

    /// <summary>The nine-parameter <see cref="LoadDecodeMatvec{T1, T2, T3, T4, T5, T6, T7}"/> (the fused matvecs'), with at most
    /// <paramref name="maxRegisters"/> registers a thread (0: the compiler's choice).</summary>
    private Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> LoadDecodeMatvec<T1, T2, T3, T4, T5, T6, T7, T8, T9>(
        Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> streamOrdered, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> programmatic, int maxRegisters)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
        where T8 : struct
        where T9 : struct
        => !Programmatic ? _accelerator.LoadStreamKernel(streamOrdered, maxRegisters)
            : _launcher is { } launcher ? launcher.Load(programmatic, maxRegisters)
            : _accelerator.LoadStreamKernel(programmatic, maxRegisters);

    /// <summary>Why <see cref="DecodeLaunches.PerStageProgrammatic"/> was asked for and the per-stage launches run instead; null otherwise.</summary>
    public string? ProgrammaticNotice { get; }

    /// <summary>Warps per SM that pull the next weights, at the end or the start of a matvec's grid: about one wave (an
    /// H200 SM holds 20 warps of the 96-register fused matvec).</summary>
    public const int PrefetchWarpsPerSm = 16;

    public Accelerator Accelerator => _accelerator;

    /// <summary>Kernels enqueued so far (the runner counts them per step: at batch 1 each launch, not the weights, can set the pace).</summary>
    internal long Launches => _launches;

    /// <summary>
    /// Whether the norm → projection → element-wise sequences run as one fused launch: for the few tokens of a decode
    /// step (up to <see cref="FusedMaxTokens"/>), on either schedule. More tokens keep the unfused sequence (batched
    /// projection or tiled matmul on the warp schedule), where the recomputed norm would no longer be cheap.
    /// </summary>
    public bool FusesFewTokens(int tokens) => tokens <= FusedMaxTokens;

    /// <summary>The kernel <paramref name="name"/> (compiled on first use), counted as one launch: call it right away.
    /// Its type arguments are part of the key (<paramref name="variant"/>: the matvec depth; <paramref name="prefetch"/>:
    /// its <see cref="IRowPrefetch"/>), so a launch builds no string.</summary>
    private TDelegate Get<TDelegate>(string name, Type format, Type? epilogue, Func<TDelegate> load, Type? variant = null, Type? prefetch = null)
        where TDelegate : Delegate
    {
        var key = (name, format, epilogue, variant, prefetch);
        if (!_kernels.TryGetValue(key, out var kernel))
        {
            kernel = load();
            _kernels[key] = kernel;
        }

        _launches++;
        return (TDelegate)kernel;
    }

    private int Threads(long work) => (int)Math.Max(1, Math.Min(work, _elementwiseThreads));

    /// <summary>x[t, :] = table[ids[t], :].</summary>
    /// <param name="ids">[tokens] token ids, each below table.Rows</param>
    /// <param name="x">[tokens, table.Cols] f32</param>
    public void Embedding(DeviceMatrix table, ArrayView<int> ids, int tokens, ArrayView<float> x)
    {
        int chunks = table.Cols / DeviceMatrix.ElementsPerChunk(table.Dtype);
        int threads = Threads((long)tokens * chunks);
        if (table.Dtype == WeightDtype.F16)
            Get("embed", typeof(F16Weights), null, () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<Bits128>, ArrayView<int>, ArrayView<float>, int, int, int>(
                DenseKernelBodies.Embedding<F16Weights>))(threads, table.View, ids, x, tokens, table.Cols, threads);
        else
            Get("embed", typeof(F32Weights), null, () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<Bits128>, ArrayView<int>, ArrayView<float>, int, int, int>(
                DenseKernelBodies.Embedding<F32Weights>))(threads, table.View, ids, x, tokens, table.Cols, threads);
    }

    /// <summary>y[r, :] = RMSNorm(x[rowMap[r], :]) · weight.</summary>
    /// <param name="x">[*, hidden] f32</param>
    /// <param name="rowMap">[rows] input row of each output row</param>
    /// <param name="weight">[hidden] f32</param>
    /// <param name="y">[rows, hidden] f32</param>
    public void RmsNorm(ArrayView<float> x, ArrayView<int> rowMap, int rows, ArrayView<float> weight, float eps, ArrayView<float> y, int hidden)
    {
        if (hidden % 4 != 0) throw new ArgumentException($"RMSNorm needs hidden ({hidden}) to be a multiple of 4");
        if (rows == 0) return;
        if (Schedule == DenseSchedule.Warp)
        {
            var k = Get("norm-group", typeof(float), null, () => _accelerator.LoadStreamKernel<ArrayView<Vec4>, ArrayView<int>, ArrayView<Vec4>, ArrayView<Vec4>, int, float>(
                DenseKernelBodies.RmsNormGroup));
            int threads = Math.Min(DenseKernelBodies.NormThreads, Math.Max(_accelerator.WarpSize, (hidden / 4 + _accelerator.WarpSize - 1) / _accelerator.WarpSize * _accelerator.WarpSize));
            k(new KernelConfig(rows, threads), x.Cast<Vec4>(), rowMap, weight.Cast<Vec4>(), y.Cast<Vec4>(), hidden, eps);
        }
        else
        {
            var k = Get("norm-serial", typeof(float), null, () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<Vec4>, ArrayView<int>, ArrayView<Vec4>, ArrayView<Vec4>, int, int, float, int>(
                DenseKernelBodies.RmsNormSerial));
            int threads = Threads(rows);
            k(threads, x.Cast<Vec4>(), rowMap, weight.Cast<Vec4>(), y.Cast<Vec4>(), rows, hidden, eps, threads);
        }
    }

    /// <summary>y = x · Wᵀ (or y += x · Wᵀ when <paramref name="accumulate"/>).</summary>
    /// <param name="x">[tokens, w.Cols] f32</param>
    /// <param name="y">[tokens, w.Rows] f32</param>
    /// <param name="next">The projection that runs after this one, whose first bytes the matvec pulls into L2
    /// (<see cref="WeightPrefetch"/>, <see cref="L2Prefetch"/>); null, or another schedule than the warp matvec: none.</param>
    public void Linear(ArrayView<float> x, int tokens, DeviceMatrix w, ArrayView<float> y, bool accumulate, DeviceMatrix? next = null)
    {
        if (tokens == 0) return;
        if (w.Dtype == WeightDtype.F16)
        {
            if (accumulate) Linear<F16Weights, AddToOutput>(x, tokens, w, y, next);
            else Linear<F16Weights, StoreOutput>(x, tokens, w, y, next);
        }
        else
        {
            if (accumulate) Linear<F32Weights, AddToOutput>(x, tokens, w, y, next);
            else Linear<F32Weights, StoreOutput>(x, tokens, w, y, next);
        }
    }

    private void Linear<TW, TE>(ArrayView<float> x, int tokens, DeviceMatrix w, ArrayView<float> y, DeviceMatrix? next)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
    {
        var xv = x.Cast<Vec4>();
        if (Schedule == DenseSchedule.Serial)
        {
            var k = Get("linear-serial", typeof(TW), typeof(TE), () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int, int>(
                DenseKernelBodies.LinearSerial<TW, TE>));
            int threads = Threads(w.Rows);
            k(threads, w.View, xv, y, w.Rows, w.Cols, tokens, threads);
            return;
        }

        if (TensorCores && typeof(TW) == typeof(F16Weights) && tokens >= TensorCoreMinTokens && w.Cols % TensorCoreBodies.BlockCols == 0)
        {
            LinearMma<TE>(xv, tokens, w, y);
            return;
        }

        if (tokens >= BatchedMinTokens && (tokens < TiledMinTokens || w.Cols % DenseKernelBodies.TileK != 0))
        {
            LinearBatched<TW, TE>(xv, tokens, w, y, BatchedSplit(w, tokens));
            return;
        }

        if (tokens >= TiledMinTokens)
        {
            var k = Get("linear-tiled", typeof(TW), typeof(TE), () => _accelerator.LoadStreamKernel<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int>(
                DenseKernelBodies.LinearTiled<TW, TE>));
            int tiles = (w.Rows + DenseKernelBodies.TileRows - 1) / DenseKernelBodies.TileRows
                * ((tokens + DenseKernelBodies.TileTokens - 1) / DenseKernelBodies.TileTokens);
            k(new KernelConfig(tiles, DenseKernelBodies.TileThreads), w.View, xv, y, w.Rows, w.Cols, tokens);
            return;
        }

        if (Loads == MatvecLoads.AsyncCopy)
        {
            LinearWarpAsync<TW, TE>(xv, tokens, w, y);
            return;
        }

        switch (Depth.Linear)
        {
            case 2: LinearWarp<TW, TE, TwoChunks>(xv, tokens, w, y, next); break;
            case 4: LinearWarp<TW, TE, FourChunks>(xv, tokens, w, y, next); break;
            default: LinearWarp<TW, TE, EightChunks>(xv, tokens, w, y, next); break;
        }
    }

    private void LinearWarp<TW, TE, TD>(ArrayView<Vec4> xv, int tokens, DeviceMatrix w, ArrayView<float> y, DeviceMatrix? next)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TD : struct, IRowChunks
    {
        if (PullsOwnRows) LinearWarp<TW, TE, TD, OwnRowPrefetch>(xv, tokens, w, y, next);
        else LinearWarp<TW, TE, TD, NoRowPrefetch>(xv, tokens, w, y, next);
    }

    private void LinearWarp<TW, TE, TD, TP>(ArrayView<Vec4> xv, int tokens, DeviceMatrix w, ArrayView<float> y, DeviceMatrix? next)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
    {
        long warps = (long)w.Rows * ((tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens);
        int groups = (int)((warps + WarpsPerGroup - 1) / WarpsPerGroup);
        var config = new KernelConfig(groups, WarpsPerGroup * _accelerator.WarpSize);
        var prefetch = Prefetch(w, next, warps);
        var kernel = Get(Programmatic ? "linear-warp-programmatic" : "linear-warp", typeof(TW), typeof(TE),
            () => LoadDecodeMatvec<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int, L2Prefetch>(
                DenseKernelBodies.LinearWarp<TW, TE, TD, TP>, DenseKernelBodies.LinearWarpProgrammatic<TW, TE, TD, TP>),
            typeof(TD), typeof(TP));
        kernel(config, w.View, xv, y, w.Rows, w.Cols, tokens, prefetch);
    }

    private void LinearWarpAsync<TW, TE>(ArrayView<Vec4> xv, int tokens, DeviceMatrix w, ArrayView<float> y)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
    {
        var kernel = Get(Programmatic ? "linear-warp-async-programmatic" : "linear-warp-async", typeof(TW), typeof(TE),
            () => LoadDecodeMatvec<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int, long>(
                AsyncCopyBodies.LinearWarpAsync<TW, TE, StreamOrdered>, AsyncCopyBodies.LinearWarpAsync<TW, TE, ProgrammaticallyDependent>));
        long warps = (long)w.Rows * ((tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens);
        int groups = (int)((warps + AsyncCopyBodies.WarpsPerGroup - 1) / AsyncCopyBodies.WarpsPerGroup);
        kernel(new KernelConfig(groups, AsyncCopyBodies.WarpsPerGroup * _accelerator.WarpSize), w.View, xv, y, w.Rows, w.Cols, tokens,
            w.Buffer.NativePtr.ToInt64());
    }

    private void LinearMma<TE>(ArrayView<Vec4> xv, int tokens, DeviceMatrix w, ArrayView<float> y, int kSplit = 0)
        where TE : struct, IEpilogue
    {
        if (_accelerator.WarpSize != 32)
            throw new NotSupportedException($"The tensor-core projection needs 32-lane warps; {_accelerator.Name} has {_accelerator.WarpSize}.");
        int tiles = (w.Rows + TensorCoreBodies.TileRows - 1) / TensorCoreBodies.TileRows * ((tokens + TensorCoreBodies.TileTokens - 1) / TensorCoreBodies.TileTokens);
        if (kSplit <= 0) kSplit = MmaSplit(tiles, w.Cols / TensorCoreBodies.BlockCols);
        // Split columns meet in y through atomic adds: a store starts from zero.
        if (kSplit > 1 && typeof(TE) == typeof(StoreOutput)) y.SubView(0, (long)tokens * w.Rows).MemSetToZero();
        var k = Get("linear-mma", typeof(F16Weights), typeof(TE), () => _accelerator.LoadStreamKernel<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int, int>(
            TensorCoreBodies.LinearMma<TE>));
        k(new KernelConfig(tiles * kSplit, TensorCoreBodies.Warps * _accelerator.WarpSize), w.View, xv, y, w.Rows, w.Cols, tokens, kSplit);
    }

    /// <summary>
    /// Groups that split each tile's columns in the tensor-core projection: doubled until the grid has two groups per
    /// SM, keeping at least 8 blocks of 32 columns per group. The 8B shape at batch 64 (4096 columns): o_proj's 64 row
    /// tiles 8 ways, qkv's 96 4 ways, gate/up's 448 and the LM head's 2004 not at all, down_proj (14336 columns) 8 ways.
    /// </summary>
    private int MmaSplit(int tiles, int blocks)
    {
        long target = 2L * _accelerator.NumMultiprocessors;
        int split = 1;
        while ((long)tiles * split < target && blocks / (2 * split) >= 8) split *= 2;
        return split;
    }

    /// <summary>The tensor-core projection with <paramref name="kSplit"/> groups per tile (tests force each split).</summary>
    internal void LinearMma(ArrayView<float> x, int tokens, DeviceMatrix w, ArrayView<float> y, bool accumulate, int kSplit)
    {
        if (w.Dtype != WeightDtype.F16) throw new ArgumentException("the tensor-core projection takes f16 weights");
        if (kSplit < 1 || kSplit > w.Cols / TensorCoreBodies.BlockCols) throw new ArgumentOutOfRangeException(nameof(kSplit), kSplit, "between 1 and the 32-column blocks of a row");
        if (tokens == 0) return;
        if (accumulate) LinearMma<AddToOutput>(x.Cast<Vec4>(), tokens, w, y, kSplit);
        else LinearMma<StoreOutput>(x.Cast<Vec4>(), tokens, w, y, kSplit);
    }

    /// <summary>The batched projection with <paramref name="kSplit"/> warps per row-warp (tests force each split).</summary>
    internal void LinearBatched(ArrayView<float> x, int tokens, DeviceMatrix w, ArrayView<float> y, bool accumulate, int kSplit)
    {
        if (kSplit is not (1 or 2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(kSplit), kSplit, "kSplit must be 1, 2, 4 or 8");
        if (tokens == 0) return;
        var xv = x.Cast<Vec4>();
        if (w.Dtype == WeightDtype.F16)
        {
            if (accumulate) LinearBatched<F16Weights, AddToOutput>(xv, tokens, w, y, kSplit);
            else LinearBatched<F16Weights, StoreOutput>(xv, tokens, w, y, kSplit);
        }
        else
        {
            if (accumulate) LinearBatched<F32Weights, AddToOutput>(xv, tokens, w, y, kSplit);
            else LinearBatched<F32Weights, StoreOutput>(xv, tokens, w, y, kSplit);
        }
    }

    private void LinearBatched<TW, TE>(ArrayView<Vec4> xv, int tokens, DeviceMatrix w, ArrayView<float> y, int kSplit)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
    {
        if (_accelerator.WarpSize != 32)
            throw new NotSupportedException($"The batched projection needs 32-lane warps (8 k-lanes × 4 row-lanes); {_accelerator.Name} has {_accelerator.WarpSize}. Use DenseSchedule.Serial.");
        int groupThreads = BatchedKernelBodies.Warps * _accelerator.WarpSize;
        int rowWarps = (w.Rows + BatchedKernelBodies.WarpRows - 1) / BatchedKernelBodies.WarpRows;
        int rowWarpsPerGroup = BatchedKernelBodies.Warps / kSplit;
        int rowGroups = (rowWarps + rowWarpsPerGroup - 1) / rowWarpsPerGroup;
        if (tokens <= 8)
        {
            var k = Get("linear-batched8", typeof(TW), typeof(TE), () => _accelerator.LoadStreamKernel<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int, int>(
                BatchedKernelBodies.LinearBatched<TW, TE, EightTokens>));
            k(new KernelConfig(rowGroups, groupThreads), w.View, xv, y, w.Rows, w.Cols, tokens, kSplit);
        }
        else
        {
            var k = Get("linear-batched16", typeof(TW), typeof(TE), () => _accelerator.LoadStreamKernel<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<float>, int, int, int, int>(
                BatchedKernelBodies.LinearBatched<TW, TE, SixteenTokens>));
            k(new KernelConfig(rowGroups * ((tokens + 15) / 16), groupThreads), w.View, xv, y, w.Rows, w.Cols, tokens, kSplit);
        }
    }

    /// <summary>
    /// Warps per row-warp of the batched projection: split the columns (1, 2, 4, 8 ways) until the grid has
    /// 16 warps per SM (two 256-thread groups per SM at ≤ 128 registers a thread; at more, one group fits and the
    /// grid is two waves), keeping at least two chunk steps per lane. Splitting more costs a shared-memory reduction
    /// and fewer rows per group (each group reads its tokens' x once, so fewer rows means more x traffic per weight).
    /// The 8B shape at batch 16: gate/up (28672 rows) 2, qkv (6144) 8, o and down (4096) 8; at batch 64: 1, 2, 4, 4.
    /// </summary>
    private int BatchedSplit(DeviceMatrix w, int tokens)
    {
        long rowWarps = (w.Rows + BatchedKernelBodies.WarpRows - 1) / BatchedKernelBodies.WarpRows;
        long tokenGroups = tokens <= 8 ? 1 : (tokens + 15) / 16;
        long target = 16L * _accelerator.NumMultiprocessors;
        int chunks = w.Cols / DeviceMatrix.ElementsPerChunk(w.Dtype);
        int split = 1;
        while (split < BatchedKernelBodies.Warps && rowWarps * tokenGroups * split < target
            && chunks >= 2 * BatchedKernelBodies.KLanes * 2 * split)
            split *= 2;
        return split;
    }

    /// <summary>Splits q | k | v and applies rotary embeddings to q and k.</summary>
    /// <param name="qkv">[tokens, (heads + 2 kv_heads) * head_dim] f32</param>
    public void RopeSplit<TKv>(ArrayView<float> qkv, RopeSplitOutput<TKv> output, int tokens)
        where TKv : struct, IKvRowTarget
    {
        var kernel = Get("rope", typeof(float), typeof(TKv), () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, RopeSplitOutput<TKv>, int, int>(
            DenseKernelBodies.RopeSplit));
        int threads = Threads((long)tokens * (output.Heads + 2 * output.KvHeads) * output.HeadDim / 2);
        kernel(threads, qkv, output, tokens, threads);
    }

    /// <summary>a = silu(gate) · up.</summary>
    /// <param name="gateUp">[tokens, 2 * intermediate] f32: gate | up per token</param>
    public void SwiGlu(ArrayView<float> gateUp, SwiGluOutput output, int tokens)
    {
        var kernel = Get("swiglu", typeof(float), null, () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, SwiGluOutput, int, int>(
            DenseKernelBodies.SwiGlu));
        int threads = Threads((long)tokens * output.Intermediate);
        kernel(threads, gateUp, output, tokens, threads);
    }
    // ---------------------------------------------------------------- norm → projection → element-wise, fused for few tokens

    /// <summary>
    /// q, k, v = rope(split(RMSNorm(x) · g · Wqkvᵀ)): one launch for few tokens (<see cref="FusedKernelBodies"/>),
    /// else RmsNorm, Linear and RopeSplit through the scratch buffers.
    /// </summary>
    /// <param name="x">[*, hidden] f32 residual stream</param>
    /// <param name="xRows">[tokens] row of x of each token</param>
    /// <param name="g">[hidden] f32 RMSNorm weight</param>
    /// <param name="wqkv">[(heads + 2 kv_heads) * head_dim, hidden] q | k | v weights</param>
    /// <param name="output">q ([tokens, heads, head_dim]), where k and v go (f32 rows or the paged cache), positions, rotary tables</param>
    /// <param name="h">[tokens, hidden] f32 scratch of the unfused path</param>
    /// <param name="qkv">[tokens, (heads + 2 kv_heads) * head_dim] f32 scratch of the unfused path</param>
    /// <param name="next">The projection after this one (see <see cref="Linear"/>).</param>
    public void NormQkvRope<TKv>(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix wqkv,
        RopeSplitOutput<TKv> output, ArrayView<float> h, ArrayView<float> qkv, DeviceMatrix? next = null)
        where TKv : struct, IKvRowTarget
    {
        if (wqkv.Rows != output.Rows || output.HeadDim % 2 != 0)
            throw new ArgumentException($"NormQkvRope: the qkv matrix has {wqkv.Rows} rows; {output.Heads} + 2 × {output.KvHeads} heads of (even) head_dim {output.HeadDim} need {output.Rows}");
        if (tokens == 0) return;
        if (FusesFewTokens(tokens))
        {
            NormLinearFused(x, xRows, tokens, g, eps, wqkv, output, next, Depth.QkvPerRow);
            return;
        }

        RmsNorm(x, xRows, tokens, g, eps, h, wqkv.Cols);
        Linear(h, tokens, wqkv, qkv, accumulate: false, next);
        RopeSplit(qkv, output, tokens);
    }

    /// <summary>
    /// a = silu(RMSNorm(x) · g · Wgateᵀ) · (RMSNorm(x) · g · Wupᵀ): one launch for few tokens, else RmsNorm, Linear
    /// and SwiGlu through the scratch buffers.
    /// </summary>
    /// <param name="x">[*, hidden] f32 residual stream</param>
    /// <param name="xRows">[tokens] row of x of each token</param>
    /// <param name="g">[hidden] f32 RMSNorm weight</param>
    /// <param name="wGateUp">[2 * intermediate, hidden] gate | up weights</param>
    /// <param name="output">a: [tokens, intermediate] f32</param>
    /// <param name="h">[tokens, hidden] f32 scratch of the unfused path</param>
    /// <param name="gateUp">[tokens, 2 * intermediate] f32 scratch of the unfused path</param>
    /// <param name="next">The projection after this one (see <see cref="Linear"/>).</param>
    public void NormGateUpSwiGlu(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix wGateUp,
        SwiGluOutput output, ArrayView<float> h, ArrayView<float> gateUp, DeviceMatrix? next = null)
    {
        if (wGateUp.Rows != 2 * output.Intermediate)
            throw new ArgumentException($"NormGateUpSwiGlu: the gate|up matrix has {wGateUp.Rows} rows; intermediate {output.Intermediate} needs {2 * output.Intermediate}");
        if (tokens == 0) return;
        if (FusesFewTokens(tokens))
        {
            NormLinearFused(x, xRows, tokens, g, eps, wGateUp, output, next, Depth.FusedPerRow);
            return;
        }

        RmsNorm(x, xRows, tokens, g, eps, h, wGateUp.Cols);
        Linear(h, tokens, wGateUp, gateUp, accumulate: false, next);
        SwiGlu(gateUp, output, tokens);
    }

    /// <summary>Logits per group of <see cref="ArgMaxSlices"/>: slices spread a few rows over the GPU's SMs; on the CPU
    /// accelerator, where every simulated thread costs, one warp scans a whole row.</summary>
    public int ArgMaxSliceLength(int vocab) => Schedule == DenseSchedule.Warp ? GreedyArgMax.GpuSliceLength : Math.Max(1, vocab);

    /// <summary>keys[r, s] = the largest argmax key of slice s of logits row r (see <see cref="GreedyArgMax"/>): the
    /// host's greedy choice per row is then the largest of its <see cref="GreedyArgMax.Slices"/> keys.</summary>
    /// <param name="logits">[rows, vocab] f32</param>
    /// <param name="keys">[rows, slices]</param>
    public void ArgMaxSlices(ArrayView<float> logits, int rows, int vocab, int sliceLength, ArrayView<ulong> keys)
    {
        if (sliceLength <= 0) throw new ArgumentOutOfRangeException(nameof(sliceLength), sliceLength, "a slice needs at least one logit");
        if (rows == 0) return;
        var k = Get("argmax-slices", typeof(float), null, () => _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<ulong>, int, int>(GreedyArgMax.ArgMaxSlices));
        int threads = Schedule == DenseSchedule.Warp ? GreedyArgMax.GroupThreads : _accelerator.WarpSize;
        k(new KernelConfig(rows * GreedyArgMax.Slices(vocab, sliceLength), threads), logits, keys, vocab, sliceLength);
    }

    /// <summary>
    /// y = RMSNorm(x[xRows]) · g · Wᵀ (the final norm and the LM head): one launch for few tokens, else RmsNorm and
    /// Linear through the scratch buffer.
    /// </summary>
    /// <param name="x">[*, hidden] f32 residual stream</param>
    /// <param name="xRows">[tokens] row of x of each output row</param>
    /// <param name="g">[hidden] f32 RMSNorm weight</param>
    /// <param name="y">[tokens, w.Rows] f32</param>
    /// <param name="h">[tokens, hidden] f32 scratch of the unfused path</param>
    public void NormLinear(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix w,
        ArrayView<float> y, ArrayView<float> h)
    {
        if (tokens == 0) return;
        if (FusesFewTokens(tokens))
        {
            NormLinearFused(x, xRows, tokens, g, eps, w, new RowPairOutput(y, w.Rows), next: null, Depth.FusedPerRow);
            return;
        }

        RmsNorm(x, xRows, tokens, g, eps, h, w.Cols);
        Linear(h, tokens, w, y, accumulate: false);
    }

    /// <param name="depth">Chunks per lane per step of each row on the warp schedule (<see cref="MatvecDepth"/>).</param>
    private void NormLinearFused<TO>(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix w, TO output,
        DeviceMatrix? next, int depth)
        where TO : struct, IProjectionOutput
    {
        if (w.Cols % 4 != 0) throw new ArgumentException($"the fused norm projection needs hidden ({w.Cols}) to be a multiple of 4");
        if (w.Dtype == WeightDtype.F16) NormLinearFused<F16Weights, TO>(x, xRows, tokens, g, eps, w, output, next, depth);
        else NormLinearFused<F32Weights, TO>(x, xRows, tokens, g, eps, w, output, next, depth);
    }

    private void NormLinearFused<TW, TO>(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix w, TO output,
        DeviceMatrix? next, int depth)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
    {
        // Each output type is its own kernel, keyed by (format, output type).
        if (Schedule == DenseSchedule.Serial)
        {
            var serial = Get("norm-linear-serial", typeof(TW), typeof(TO), () => _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<Bits128>, ArrayView<Vec4>,
                ArrayView<int>, ArrayView<Vec4>, TO, int, int, float, int>(FusedKernelBodies.NormLinearSerial<TW, TO>));
            int threads = Threads((long)output.Units * tokens);
            serial(threads, w.View, x.Cast<Vec4>(), xRows, g.Cast<Vec4>(), output, w.Cols, tokens, eps, threads);
            return;
        }

        if (Loads == MatvecLoads.AsyncCopy)
        {
            var kernel = Get(Programmatic ? "norm-linear-warp-async-programmatic" : "norm-linear-warp-async", typeof(TW), typeof(TO),
                () => LoadDecodeMatvec<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<int>, ArrayView<Vec4>, TO, int, int, float, long>(
                    FusedKernelBodies.NormLinearWarpAsync<TW, TO, StreamOrdered>, FusedKernelBodies.NormLinearWarpAsync<TW, TO, ProgrammaticallyDependent>, 0));
            long warps = (long)output.Units * ((tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens);
            int groups = (int)((warps + AsyncCopyBodies.WarpsPerGroup - 1) / AsyncCopyBodies.WarpsPerGroup);
            kernel(new KernelConfig(groups, AsyncCopyBodies.WarpsPerGroup * _accelerator.WarpSize), w.View, x.Cast<Vec4>(), xRows, g.Cast<Vec4>(), output, w.Cols,
                tokens, eps, w.Buffer.NativePtr.ToInt64());
            return;
        }

        switch (depth)
        {
            case 2: NormLinearWarp<TW, TO, TwoChunks>(x, xRows, tokens, g, eps, w, output, next); break;
            case 4: NormLinearWarp<TW, TO, FourChunks>(x, xRows, tokens, g, eps, w, output, next); break;
            default: NormLinearWarp<TW, TO, EightChunks>(x, xRows, tokens, g, eps, w, output, next); break;
        }
    }

    private void NormLinearWarp<TW, TO, TD>(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix w, TO output,
        DeviceMatrix? next)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
    {
        if (PullsOwnRows) NormLinearWarp<TW, TO, TD, OwnRowPrefetch>(x, xRows, tokens, g, eps, w, output, next);
        else NormLinearWarp<TW, TO, TD, NoRowPrefetch>(x, xRows, tokens, g, eps, w, output, next);
    }

    private void NormLinearWarp<TW, TO, TD, TP>(ArrayView<float> x, ArrayView<int> xRows, int tokens, ArrayView<float> g, float eps, DeviceMatrix w, TO output,
        DeviceMatrix? next)
        where TW : struct, IWeightFormat
        where TO : struct, IProjectionOutput
        where TD : struct, IRowChunks
        where TP : struct, IRowPrefetch
    {
        var launch = FusedLaunch;
        long warps = (long)output.Units * ((tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens);
        int groups = (int)((warps + launch.WarpsPerGroup - 1) / launch.WarpsPerGroup);
        var config = new KernelConfig(groups, launch.WarpsPerGroup * _accelerator.WarpSize);
        var prefetch = Prefetch(w, next, warps);
        var kernel = Get(Programmatic ? "norm-linear-warp-programmatic" : "norm-linear-warp", typeof(TW), typeof(TO),
            () => LoadDecodeMatvec<ArrayView<Bits128>, ArrayView<Vec4>, ArrayView<int>, ArrayView<Vec4>, TO, int, int, float, L2Prefetch>(
                FusedKernelBodies.NormLinearWarp<TW, TO, TD, TP>, FusedKernelBodies.NormLinearWarpProgrammatic<TW, TO, TD, TP>, launch.MaxRegisters),
            typeof(TD), typeof(TP));
        kernel(config, w.View, x.Cast<Vec4>(), xRows, g.Cast<Vec4>(), output, w.Cols, tokens, eps, prefetch);
    }

    // ---------------------------------------------------------------- a layer's tail in one grid-synced launch

    /// <summary>
    /// Warps per group of <see cref="LayerTail{TKv}"/>: 16 on a GPU, where one group of 512 threads at the kernel's 100
    /// registers (depths 4,2; ptxas sm_90) fills an SM's register file as four of 128 would, and each barrier then takes one
    /// arrival (an atomic on one word, which L2 serializes) per SM instead of four; 4 on the CPU accelerator, where every
    /// simulated thread is an OS thread woken by every later launch (<see cref="TailQkvPerRow"/> keeps the default depths
    /// there; deeper steps take more registers, and <see cref="LayerTail{TKv}"/> falls back to groups of 4 warps).
    /// </summary>
    private int TailWarpsPerGroup => _accelerator is CPUAccelerator ? WarpsPerGroup : 16;

    /// <summary>
    /// The load depth of the next layer's qkv in a grid-synced launch: the fused pairs' (<see cref="MatvecDepth.FusedPerRow"/>),
    /// not the per-stage qkv's (<see cref="MatvecDepth.Qkv"/>). One kernel runs every stage, so its deepest stage sets
    /// the registers of all of them: at the default qkv depth of 4 the tail takes 168 (ptxas sm_90) and an SM holds 12
    /// of its warps, and runs 24–25 measured it slower than at 2 (TinyLlama 1.50–1.53 ms a step against 1.31–1.32,
    /// Llama-3-8B 6.04–6.07 against 5.52–5.57).
    /// </summary>
    private int TailQkvPerRow => Depth.FusedPerRow;

    /// <summary>Polls of a <see cref="GridBarrier"/> before it gives up: seconds on a GPU (an L2 atomic each), and
    /// more on the CPU accelerator, whose groups are OS threads the scheduler may leave waiting.</summary>
    private readonly int _gridBarrierSpinLimit;

    private MemoryBuffer1D<int, Stride1D.Dense>? _barrierState;   // [GridBarrier.StateLength]
    private readonly Dictionary<(string Kernel, WeightDtype Weights, Type Kv, Type? Decode, int Threads, Type Clock), (Delegate Launch, int Resident)> _gridSynced = new();
    private MemoryBuffer1D<long, Stride1D.Dense>? _stageTimes;    // [groups, StageRow.SlotsPerGroup] when clocked, else [1]
    private int _clockedGroups;

    /// <summary>
    /// Whether the grid-synced launches mark each group's <see cref="TailStage"/>s with the SM's clock (<see cref="SmStageClock"/>:
    /// the benchmarks' <c>layer-tail</c>; the kernels' other instantiation, compiled on first use); off, they mark nothing.
    /// <see cref="ReadTailStageTimes"/> returns the last clocked launch's marks.
    /// </summary>
    public bool ClockTails { get; set; }

    /// <summary>The marks of the last grid-synced launch made with <see cref="ClockTails"/> on ([groups,
    /// StageRow.SlotsPerGroup]; <see cref="Reference.TailStageSummary"/> reads them), empty when none was. Synchronizes.</summary>
    public long[] ReadTailStageTimes()
    {
        if (_clockedGroups == 0 || _stageTimes is null) return [];
        _accelerator.Synchronize();
        return _stageTimes.View.SubView(0, (long)_clockedGroups * StageRow.SlotsPerGroup).GetAsArray1D();
    }

    /// <summary>Where a grid-synced launch of <paramref name="groups"/> groups writes its marks: a row per group when
    /// <see cref="ClockTails"/> is on, else one long nothing writes (a CUDA launch takes no empty view).</summary>
    private ArrayView<long> StageTimes(int groups)
    {
        long length = ClockTails ? (long)groups * StageRow.SlotsPerGroup : 1;
        if (_stageTimes is null || _stageTimes.Length < length)
        {
            _stageTimes?.Dispose();
            _stageTimes = _accelerator.Allocate1D<long>(length);
            _stageTimes.MemSetToZero();
        }
        if (ClockTails) _clockedGroups = groups;
        return _stageTimes.View.SubView(0, length);
    }

    /// <summary>Whether a step of <paramref name="tokens"/> tokens runs each layer's tail as one grid-synced launch
    /// (<see cref="LayerTail{TKv}"/>): asked for, the warp schedule, 32-lane warps, and no more tokens than one warp
    /// carries (<see cref="DenseKernelBodies.WarpTokens"/>), where the per-stage launches run the same warp kernels
    /// (from 5 tokens o_proj and down_proj are the batched projection).</summary>
    public bool RunsLayerTail(int tokens) =>
        DecodeLaunches is DecodeLaunches.GridSyncedTails or DecodeLaunches.GridSyncedTailsPreloaded or DecodeLaunches.GridSyncedLayers
        && Schedule == DenseSchedule.Warp && _accelerator.WarpSize == 32 && tokens is > 0 and <= DenseKernelBodies.WarpTokens;

    /// <summary>Whether a step of <paramref name="tokens"/> tokens should try the whole layer as one launch
    /// (<see cref="Layer{TKv, TDecode}"/>): <see cref="DecodeLaunches.GridSyncedLayers"/> and what
    /// <see cref="RunsLayerTail"/> needs.</summary>
    public bool RunsWholeLayers(int tokens) => DecodeLaunches == DecodeLaunches.GridSyncedLayers && RunsLayerTail(tokens);

    /// <summary>Groups of a grid-synced launch (<see cref="LayerTail{TKv}"/>, <see cref="Layer{TKv, TDecode}"/>) for its widest stage:
    /// every group resident at once (the CUDA occupancy of the compiled kernel on each SM; one per multiprocessor on the
    /// CPU accelerator, which runs a multiprocessor's groups one after another), at most one warp per work item.</summary>
    private int GridSyncedGroups(int residentPerMultiprocessor, long workItems, int warpsPerGroup) =>
        (int)Math.Max(1, Math.Min((long)_accelerator.NumMultiprocessors * residentPerMultiprocessor, (workItems + warpsPerGroup - 1) / warpsPerGroup));

    /// <summary>
    /// A layer's dense work after its attention and the next layer's before its attention, one launch
    /// (<see cref="LayerTailBodies"/>): x += attn · Woᵀ; act = SwiGLU(norm(x) · Wgate|upᵀ); x += act · Wdownᵀ; then, unless
    /// <paramref name="next"/> is null, the next layer's q, k, v = rope(norm(x) · Wqkvᵀ) into <paramref name="qkvOutput"/>. The same per-warp kernels as
    /// <see cref="Linear"/>, <see cref="NormGateUpSwiGlu"/> and <see cref="NormQkvRope{TKv}"/>, so the same results.
    /// </summary>
    /// <param name="attention">[tokens, heads · head_dim] f32</param>
    /// <param name="x">[tokens, hidden] f32 residual stream</param>
    /// <param name="rows">[tokens] 0, 1, 2, …</param>
    /// <param name="postNorm">[hidden] f32</param>
    /// <param name="act">[tokens, intermediate] f32 scratch</param>
    /// <param name="qkvOutput">Where the next layer's q, k and v go. Without a next layer it is not written, but must still
    /// be made of allocated views (any will do): a CUDA launch is given no empty view.</param>
    /// <param name="next">The next layer's input norm and qkv matrix; null after the last layer.</param>
    /// <param name="afterLast">Without a next layer, the matrix that runs after the tail (the LM head), for the L2 prefetch.</param>
    public void LayerTail<TKv>(ArrayView<float> attention, int tokens, DeviceMatrix o, ArrayView<float> x, ArrayView<int> rows, ArrayView<float> postNorm,
        float eps, DeviceMatrix gateUp, SwiGluOutput act, DeviceMatrix down, RopeSplitOutput<TKv> qkvOutput, NextLayerWeights? next, DeviceMatrix? afterLast = null)
        where TKv : struct, IKvRowTarget
    {
        var (args, widest) = TailArgs(attention, tokens, o, x, rows, postNorm, eps, gateUp, act, down, qkvOutput, next, afterLast);
        int warps = TailWarpsPerGroup;
        var (launch, resident) = LoadGridSynced<Action<AcceleratorStream, KernelConfig, LayerTailArgs<TKv>>>(nameof(LayerTailBodies.LayerTail), o.Dtype,
            typeof(TKv), null, warps * _accelerator.WarpSize);
        if (resident == 0)
        {
            // A deep load step's registers leave no room for 16 warps in one group (8 chunks: ~170 a thread): groups of 4.
            warps = WarpsPerGroup;
            (launch, resident) = LoadGridSynced<Action<AcceleratorStream, KernelConfig, LayerTailArgs<TKv>>>(nameof(LayerTailBodies.LayerTail), o.Dtype,
                typeof(TKv), null, warps * _accelerator.WarpSize);
        }
        int groups = GridSyncedGroups(resident, widest, warps);
        args.Barrier.Groups = groups;
        args.StageTimes = StageTimes(groups);
        _launches++;
        launch(_accelerator.DefaultStream, new KernelConfig(groups, warps * _accelerator.WarpSize), args);
    }

    /// <summary>
    /// The whole decoder layer in one launch (<see cref="LayerTailBodies.Layer{TW, TKv, TDecode, TL, TF, TQ, TP, TC, TK}"/>): the
    /// step's decode attention as the kernel set handed it over (<paramref name="decode"/>, body
    /// <typeparamref name="TDecode"/>; its output is <paramref name="decode"/>.Output, which the tail reads), then
    /// <see cref="LayerTail{TKv}"/>'s stages. The launch's groups are the decode's size.
    /// </summary>
    public void Layer<TKv, TDecode>(DecodeGroupsLaunch decode, int tokens, DeviceMatrix o, ArrayView<float> x, ArrayView<int> rows, ArrayView<float> postNorm,
        float eps, DeviceMatrix gateUp, SwiGluOutput act, DeviceMatrix down, RopeSplitOutput<TKv> qkvOutput, NextLayerWeights? next, DeviceMatrix? afterLast = null)
        where TKv : struct, IKvRowTarget
        where TDecode : struct, IDecodeGroups
    {
        if (!RunsWholeLayers(tokens))
            throw new InvalidOperationException($"Layer: {tokens} tokens with {DecodeLaunches} launches on the {Schedule.ToString().ToLowerInvariant()} schedule: check RunsWholeLayers first");
        if (decode.Threads % _accelerator.WarpSize != 0 || decode.Threads <= 0)
            throw new ArgumentException($"Layer: the decode's groups of {decode.Threads} threads are not whole warps");
        var (tail, widest) = TailArgs(decode.Output, tokens, o, x, rows, postNorm, eps, gateUp, act, down, qkvOutput, next, afterLast);
        var (launch, resident) = LoadGridSynced<Action<AcceleratorStream, KernelConfig, LayerArgs<TKv>>>(nameof(LayerTailBodies.Layer), o.Dtype,
            typeof(TKv), typeof(TDecode), decode.Threads);
        if (resident == 0)   // a decode group of at most 256 threads always fits its SM (255 registers, 48 KB shared)
            throw new InvalidOperationException($"Layer: not one group of {decode.Threads} threads of the grid-synced layer kernel fits an SM of {_accelerator.Name}");
        int warps = decode.Threads / _accelerator.WarpSize;
        int groups = Math.Max(GridSyncedGroups(resident, widest, warps), Math.Min(decode.Groups, _accelerator.NumMultiprocessors * resident));
        tail.Barrier.Groups = groups;
        tail.StageTimes = StageTimes(groups);
        var args = new LayerArgs<TKv> { Meta = decode.Meta, Queries = decode.Queries, KeyCache = decode.KeyCache, ValueCache = decode.ValueCache, DecodeGroups = decode.Groups, Tail = tail };
        _launches++;
        launch(_accelerator.DefaultStream, new KernelConfig(groups, decode.Threads), args);
    }

    /// <summary>The tail's arguments (the barrier's group count left to the caller) and its widest stage in work items.</summary>
    private (LayerTailArgs<TKv> Args, long Widest) TailArgs<TKv>(ArrayView<float> attention, int tokens, DeviceMatrix o, ArrayView<float> x, ArrayView<int> rows,
        ArrayView<float> postNorm, float eps, DeviceMatrix gateUp, SwiGluOutput act, DeviceMatrix down, RopeSplitOutput<TKv> qkvOutput, NextLayerWeights? next,
        DeviceMatrix? afterLast)
        where TKv : struct, IKvRowTarget
    {
        if (!RunsLayerTail(tokens))
            throw new InvalidOperationException($"LayerTail: {tokens} tokens on the {Schedule.ToString().ToLowerInvariant()} schedule with {DecodeLaunches} launches: check RunsLayerTail first");
        int hidden = o.Rows;
        if (gateUp.Rows != 2 * act.Intermediate || down.Rows != hidden || down.Cols != act.Intermediate || gateUp.Cols != hidden || o.Dtype != gateUp.Dtype || down.Dtype != o.Dtype)
            throw new ArgumentException($"LayerTail: o [{o.Rows}, {o.Cols}], gate|up [{gateUp.Rows}, {gateUp.Cols}] and down [{down.Rows}, {down.Cols}] do not make a layer of hidden {hidden} and intermediate {act.Intermediate} in one dtype");
        if (next is { } n && (n.Qkv.Rows != qkvOutput.Rows || n.Qkv.Cols != hidden || n.Qkv.Dtype != o.Dtype))
            throw new ArgumentException($"LayerTail: the next qkv matrix [{n.Qkv.Rows}, {n.Qkv.Cols}] does not fit {qkvOutput.Rows} rows of hidden {hidden}");

        int tokenGroups = (tokens + DenseKernelBodies.WarpTokens - 1) / DenseKernelBodies.WarpTokens;
        long oItems = (long)hidden * tokenGroups, mlpItems = (long)act.Units * tokenGroups, qkvItems = next is null ? 0 : (long)qkvOutput.Units * tokenGroups;
        _barrierState ??= _accelerator.Allocate1D(new int[GridBarrier.StateLength]);
        var args = new LayerTailArgs<TKv>
        {
            Attention = attention.Cast<Vec4>(),
            O = o.View,
            X = x,
            Rows = rows,
            PostNorm = postNorm.Cast<Vec4>(),
            GateUp = gateUp.View,
            Act = act,
            Down = down.View,
            NextInputNorm = next is { } a ? a.InputNorm.Cast<Vec4>() : postNorm.Cast<Vec4>(),
            NextQkv = next is { } b ? b.Qkv.View : o.View,
            NextQkvOut = qkvOutput,
            HasNext = next is null ? 0 : 1,
            Hidden = hidden,
            QueryDim = o.Cols,
            Tokens = tokens,
            Eps = eps,
            OPrefetch = Prefetch(o, gateUp, oItems),
            GateUpPrefetch = Prefetch(gateUp, down, mlpItems),
            DownPrefetch = Prefetch(down, next?.Qkv ?? afterLast, oItems),
            QkvPrefetch = next is { } d ? Prefetch(d.Qkv, d.After, qkvItems) : L2Prefetch.None,
            Barrier = new GridBarrier
            {
                State = _barrierState.View, SpinLimit = _gridBarrierSpinLimit,
                WordAddress = _barrierState.NativePtr.ToInt64() + GridBarrier.Word * sizeof(int),
            },
        };
        return (args, Math.Max(Math.Max(oItems, mlpItems), qkvItems));
    }

    /// <summary>Fails when a grid barrier of the launches so far gave up waiting (its groups were not all resident: a
    /// wrong result, not a hang), and clears the state for the next launch. Synchronizes.</summary>
    /// <exception cref="InvalidOperationException">A barrier gave up.</exception>
    public void CheckGridBarriers()
    {
        if (_barrierState is null) return;
        _accelerator.Synchronize();
        var state = _barrierState.GetAsArray1D();
        if (state[GridBarrier.GaveUp] == 0) return;
        _barrierState.MemSetToZero();
        _accelerator.Synchronize();
        throw new InvalidOperationException($"a grid-synced decode launch's barrier gave up waiting on {_accelerator.Name}: its groups were not all " +
            "resident at once (another process on the GPU, or an occupancy estimate this device does not keep), so that step's results are wrong. " +
            "Run with the per-stage launches (ModelOptions.DecodeLaunches = PerStage; si generate --decode-launches per-stage).");
    }

    /// <summary>The grid-synced kernel <paramref name="kernel"/> of <see cref="LayerTailBodies"/> for <paramref name="dtype"/>
    /// weights, the cache rows' target <paramref name="kv"/>, the decode body <paramref name="decode"/> (the whole layer's)
    /// and this instance's depths and prefetch (fixed per instance, so not in the key), compiled on first use; and how many
    /// of its groups of <paramref name="threads"/> an SM holds at once (the CUDA occupancy calculator's, 0 when not one
    /// fits; 1 on the CPU accelerator, whose multiprocessors run their groups one after another). A launch looks it up
    /// with a key of its arguments: nothing allocated per launch.</summary>
    private (TLaunch Launch, int Resident) LoadGridSynced<TLaunch>(string kernel, WeightDtype dtype, Type kv, Type? decode, int threads)
        where TLaunch : Delegate
    {
        var clock = ClockTails ? typeof(SmStageClock) : typeof(NoStageClock);
        var key = (kernel, dtype, kv, decode, threads, clock);
        if (!_gridSynced.TryGetValue(key, out var loaded))
        {
            var weights = dtype == WeightDtype.F16 ? typeof(F16Weights) : typeof(F32Weights);
            Type[] types = decode is null ? [weights, kv] : [weights, kv, decode];
            var body = typeof(LayerTailBodies).GetMethod(kernel)!.MakeGenericMethod(
                [.. types, RowChunksType(Depth.Linear), RowChunksType(Depth.FusedPerRow), RowChunksType(TailQkvPerRow),
                    PullsOwnRows ? typeof(OwnRowPrefetch) : typeof(NoRowPrefetch), clock,
                    DecodeLaunches == DecodeLaunches.GridSyncedTailsPreloaded ? typeof(CarryFirstStep) : typeof(NoCarry)]);
            var compiled = _accelerator.LoadKernel(_accelerator.CompileKernel(ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel(body)));
            int resident = _accelerator is CPUAccelerator ? 1 : _accelerator.EstimateMaxActiveGroupsPerMultiprocessor(compiled, threads, 0);
            loaded = (compiled.CreateLauncherDelegate<TLaunch>(), resident);
            _gridSynced[key] = loaded;
        }

        return ((TLaunch)loaded.Launch, loaded.Resident);
    }

    private static Type RowChunksType(int perLane) => perLane switch { 2 => typeof(TwoChunks), 4 => typeof(FourChunks), _ => typeof(EightChunks) };

    /// <summary>
    /// What a warp matvec of <paramref name="warps"/> warps over <paramref name="w"/> pulls into L2: each warp's own rows
    /// past its first step (<see cref="WeightPrefetch.OwnRows"/>), and <paramref name="next"/>'s first
    /// <see cref="WeightPrefetch.Bytes"/> (whole 128-byte lines), split between <see cref="PrefetchWarpsPerSm"/> warps
    /// per SM at the grid's end or start. None when off; nothing of the next matrix when there is none.
    /// </summary>
    private L2Prefetch Prefetch(DeviceMatrix w, DeviceMatrix? next, long warps)
    {
        if (WeightPrefetch is not { } prefetch) return L2Prefetch.None;
        var pull = L2Prefetch.None;
        if (prefetch.OwnRows) pull.Own = w.Buffer.NativePtr.ToInt64();
        long lines = next is null ? 0 : Math.Min(next.Bytes, prefetch.Bytes) / L2Prefetch.LineBytes;
        if (lines == 0) return pull;
        long sharers = Math.Min(warps, (long)_accelerator.NumMultiprocessors * PrefetchWarpsPerSm);
        long first = prefetch.At == PrefetchPoint.End ? warps - sharers : 0;
        pull.Next = next!.Buffer.NativePtr.ToInt64();
        pull.Lines = lines;
        (pull.FirstWarp, pull.EndWarp) = ((int)first, (int)(first + sharers));
        pull.AtStart = prefetch.At == PrefetchPoint.Start ? 1 : 0;
        return pull;
    }
}

/// <summary>The next layer's weights in a <see cref="DenseKernels.LayerTail{TKv}"/>: its input norm ([hidden] f32), its qkv
/// matrix, and the matrix after it (its o_proj), whose first weights the L2 prefetch may pull.</summary>
public readonly record struct NextLayerWeights(ArrayView<float> InputNorm, DeviceMatrix Qkv, DeviceMatrix? After);
