using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Sampling;
using SpecializedInference.Model;

namespace SpecializedInference.Runtime;

/// <summary>
/// Runs a Llama decoder on an ILGPU accelerator. Owns the weights (uploaded once, in the options' dtype), the paged
/// KV cache (one <see cref="PagedKvCacheBuffer"/> per layer), the rotary tables and the scratch buffers (allocated
/// once, grown only when a step has more tokens than ever before). Per step the host uploads the token ids,
/// positions and attention metadata, enqueues every kernel, and copies back only the requested logits rows, or for a
/// greedy request's row (<see cref="Run"/>) the argmax keys of its slices.
/// </summary>
public sealed class LlamaModelRunner : IModelRunner
{
    private readonly Accelerator _accelerator;
    private readonly DenseKernels _dense;
    private readonly IAttentionKernels _attention;
    private readonly LayerWeights[] _layers;
    private readonly DeviceMatrix _embedding;          // [vocab, hidden]
    private readonly DeviceMatrix _lmHead;             // [vocab, hidden] (the embedding when tied)
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _finalNorm; // [hidden]
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _ropeCos;   // [max_seq_len, head_dim / 2]
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _ropeSin;   // [max_seq_len, head_dim / 2]
    private readonly PagedKvCacheBuffer[] _kvCache;    // per layer: [num_blocks, kv_heads, block_size, head_dim] K and V
    private readonly bool _greedyOnDevice;
    private readonly int _argMaxSlice;                 // logits per argmax slice
    private readonly List<float[]> _reusedRows = new(); // [vocab] each: the logits rows Run returns, reused every step
    private Scratch _scratch;
    private bool _disposed;
    private long _gridSyncedSteps;                     // steps run with grid-synced layer tails (ModelOptions.DecodeLaunches)
    private DecodeStepGraphs? _stepGraphs;             // the decode steps' CUDA graphs (ModelOptions.CudaGraphs), null when off
    private readonly string? _cudaGraphsNotice;        // why ModelOptions.CudaGraphs asked for graphs and the runner has none
    private int _scratchGeneration;                    // bumped when the scratch buffers are reallocated (graphs hold their addresses)

    /// <summary>Grid-synced steps between checks of their barriers (<see cref="DenseKernels.CheckGridBarriers"/>).</summary>
    private const int GridBarrierCheckInterval = 16;

    private sealed class LayerWeights : IDisposable
    {
        public required MemoryBuffer1D<float, Stride1D.Dense> InputNorm { get; init; }   // [hidden]
        public required DeviceMatrix Qkv { get; init; }                                  // [(heads + 2 kv_heads) * head_dim, hidden]
        public required DeviceMatrix O { get; init; }                                    // [hidden, heads * head_dim]
        public required MemoryBuffer1D<float, Stride1D.Dense> PostNorm { get; init; }    // [hidden]
        public required DeviceMatrix GateUp { get; init; }                               // [2 * intermediate, hidden]
        public required DeviceMatrix Down { get; init; }                                 // [hidden, intermediate]

        public void Dispose()
        {
            InputNorm.Dispose();
            Qkv.Dispose();
            O.Dispose();
            PostNorm.Dispose();
            GateUp.Dispose();
            Down.Dispose();
        }
    }

    /// <summary>Activations of one step, sized for <see cref="Tokens"/> tokens and <see cref="LogitRows"/> logits rows.</summary>
    private sealed class Scratch : IDisposable
    {
        public Scratch(Accelerator a, LlamaConfig c, int tokens, int logitRows, int argMaxSlices)
        {
            Tokens = tokens;
            LogitRows = logitRows;
            X = a.Allocate1D<float>((long)tokens * c.HiddenSize);
            H = a.Allocate1D<float>((long)tokens * c.HiddenSize);
            Qkv = a.Allocate1D<float>((long)tokens * (c.QueryDim + 2 * c.KeyValueDim));
            Q = a.Allocate1D<float>((long)tokens * c.QueryDim);
            Attn = a.Allocate1D<float>((long)tokens * c.QueryDim);
            GateUp = a.Allocate1D<float>((long)tokens * 2 * c.IntermediateSize);
            Act = a.Allocate1D<float>((long)tokens * c.IntermediateSize);
            Final = a.Allocate1D<float>((long)logitRows * c.HiddenSize);
            Logits = a.Allocate1D<float>((long)logitRows * c.VocabSize);
            Ints = a.Allocate1D<int>(2L * tokens + logitRows);
            Identity = a.Allocate1D(Enumerable.Range(0, tokens).ToArray());
            LogitsHost = new float[(long)logitRows * c.VocabSize];
            Keys = a.Allocate1D<ulong>((long)logitRows * argMaxSlices);
            KeysHost = new ulong[(long)logitRows * argMaxSlices];
        }

        public int Tokens { get; }
        public int LogitRows { get; }
        public MemoryBuffer1D<float, Stride1D.Dense> X { get; }       // [tokens, hidden] residual stream
        public MemoryBuffer1D<float, Stride1D.Dense> H { get; }       // [tokens, hidden] normed
        public MemoryBuffer1D<float, Stride1D.Dense> Qkv { get; }     // [tokens, (heads + 2 kv_heads) * head_dim]
        public MemoryBuffer1D<float, Stride1D.Dense> Q { get; }       // [tokens, heads, head_dim]
        public MemoryBuffer1D<float, Stride1D.Dense> Attn { get; }    // [tokens, heads * head_dim]
        public MemoryBuffer1D<float, Stride1D.Dense> GateUp { get; }  // [tokens, 2 * intermediate]
        public MemoryBuffer1D<float, Stride1D.Dense> Act { get; }     // [tokens, intermediate]
        public MemoryBuffer1D<float, Stride1D.Dense> Final { get; }   // [logit_rows, hidden]
        public MemoryBuffer1D<float, Stride1D.Dense> Logits { get; }  // [logit_rows, vocab]
        public MemoryBuffer1D<int, Stride1D.Dense> Ints { get; }      // [tokens] ids | [tokens] positions | [logit_rows] rows
        public MemoryBuffer1D<int, Stride1D.Dense> Identity { get; }  // [tokens] 0, 1, 2, ...: every row normed in place
        public float[] LogitsHost { get; }                            // [logit_rows, vocab]
        public MemoryBuffer1D<ulong, Stride1D.Dense> Keys { get; }    // [logit_rows, slices] argmax keys of greedy rows
        public ulong[] KeysHost { get; }                              // [logit_rows, slices]

        public void Dispose()
        {
            foreach (var b in new MemoryBuffer[] { X, H, Qkv, Q, Attn, GateUp, Act, Final, Logits, Ints, Identity, Keys }) b.Dispose();
        }
    }

    /// <summary>Loads <paramref name="checkpoint"/>'s weights onto <paramref name="accelerator"/>.</summary>
    public LlamaModelRunner(Accelerator accelerator, LlamaCheckpoint checkpoint, ModelOptions? options = null)
        : this(accelerator, new CheckpointWeights(checkpoint ?? throw new ArgumentNullException(nameof(checkpoint))), options)
    {
    }

    /// <summary>Puts <paramref name="weights"/> (a checkpoint, or random weights made on the device) onto <paramref name="accelerator"/>.</summary>
    public LlamaModelRunner(Accelerator accelerator, ILlamaWeights weights, ModelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(weights);
        options ??= ModelOptions.Default;
        _accelerator = accelerator;
        Options = options;
        Config = weights.Config;
        EosTokenIds = weights.EosTokenIds.ToArray();
        var c = Config;
        var configPath = weights.Origin;
        CheckShapeFitsKernels(c, options.WeightDtype, configPath);

        MaxSeqLen = options.MaxSeqLen ?? Math.Min(c.MaxPositionEmbeddings, ModelOptions.DefaultMaxSeqLenCap);
        if (MaxSeqLen <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"MaxSeqLen must be positive, got {MaxSeqLen}");
        var generated = AttentionKernelSelection.FindGenerated(c);
        BlockSize = options.KvBlockSize ?? generated?.Engine.KvBlockSize ?? 16;
        if (BlockSize <= 0) throw new ArgumentOutOfRangeException(nameof(options), $"KvBlockSize must be positive, got {BlockSize}");
        NumBlocks = options.NumKvBlocks > 0 ? options.NumKvBlocks : (MaxSeqLen + BlockSize - 1) / BlockSize;

        _dense = new DenseKernels(accelerator, options.DenseSchedule, options.MatvecDepth, options.TensorCores, options.WeightPrefetch, options.FusedMatvecLaunch,
            options.DecodeLaunches, options.MatvecLoads);
        // Under per-stage-pdl (where the dense kernels run it: the warp schedule, CUDA sm_90 or the CPU accelerator) every
        // launch of a layer is programmatic, the decode attention as well as the matvecs.
        bool programmatic = _dense.DecodeLaunches == DecodeLaunches.PerStageProgrammatic && _dense.Schedule == DenseSchedule.Warp;
        var selection = AttentionKernelSelection.Select(accelerator, c, BlockSize,
            new AttentionOptions(options.KvDtype, options.Algorithm, options.HeadMapping,
                DecodeCores: options.DecodeCores ?? (accelerator is ILGPU.Runtime.CPU.CPUAccelerator ? DecodeCores.Cuda : DecodeCores.Tensor),
                DecodeLaunch: programmatic ? DecodeLaunch.Programmatic : DecodeLaunch.StreamOrdered),
            options.ForceGenericKernels);
        _attention = selection.Kernels;
        KernelNotice = selection.Notice;
        _greedyOnDevice = options.GreedySampling == GreedySampling.Device
            || (options.GreedySampling == GreedySampling.Auto && accelerator is not ILGPU.Runtime.CPU.CPUAccelerator);
        _argMaxSlice = _dense.ArgMaxSliceLength(c.VocabSize);

        var owned = new List<IDisposable> { _attention };
        try
        {
            var w = weights;
            var dtype = options.WeightDtype;
            _embedding = w.Matrix(accelerator, new[] { "model.embed_tokens.weight" }, dtype);
            owned.Add(_embedding);
            _layers = new LayerWeights[c.NumHiddenLayers];
            for (int i = 0; i < c.NumHiddenLayers; i++)
            {
                var p = $"model.layers.{i}.";
                var layer = new LayerWeights
                {
                    InputNorm = w.Vector(accelerator, p + "input_layernorm.weight"),
                    // q | k | v fused into one projection: one pass over the activations, one launch.
                    Qkv = w.Matrix(accelerator, new[] { p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight" }, dtype),
                    O = w.Matrix(accelerator, new[] { p + "self_attn.o_proj.weight" }, dtype),
                    PostNorm = w.Vector(accelerator, p + "post_attention_layernorm.weight"),
                    // gate | up fused likewise.
                    GateUp = w.Matrix(accelerator, new[] { p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight" }, dtype),
                    Down = w.Matrix(accelerator, new[] { p + "mlp.down_proj.weight" }, dtype),
                };
                _layers[i] = layer;
                owned.Add(layer);
            }

            _finalNorm = w.Vector(accelerator, "model.norm.weight");
            owned.Add(_finalNorm);
            if (c.TieWordEmbeddings)
            {
                _lmHead = _embedding;
            }
            else
            {
                _lmHead = w.Matrix(accelerator, new[] { "lm_head.weight" }, dtype);
                owned.Add(_lmHead);
            }

            (_ropeCos, _ropeSin) = UploadRopeTables(accelerator, c, MaxSeqLen, options.RopeFrequencies);
            owned.Add(_ropeCos);
            owned.Add(_ropeSin);

            var layout = new PagedKvCacheLayout(NumBlocks, c.NumKeyValueHeads, BlockSize, c.HeadDim, options.KvDtype);
            _kvCache = new PagedKvCacheBuffer[c.NumHiddenLayers];
            for (int i = 0; i < c.NumHiddenLayers; i++)
            {
                _kvCache[i] = PagedKvCacheBuffer.Allocate(accelerator, layout);
                owned.Add(_kvCache[i]);
            }

            _scratch = new Scratch(accelerator, c, Math.Max(1, options.MaxBatchTokens), 1, ArgMaxSlices);
            accelerator.Synchronize();
            if (options.CudaGraphs)
            {
                _cudaGraphsNotice = CudaGraph.WhyNotCapturable(accelerator)
                    ?? (_dense.DecodeLaunches is DecodeLaunches.PerStage or DecodeLaunches.PerStageProgrammatic || _dense.Schedule != DenseSchedule.Warp
                        ? null
                        : $"CUDA graphs capture the per-stage launches; --decode-launches {DecodeLaunchNames.Name(_dense.DecodeLaunches)} steps are launched one by one");
                if (_cudaGraphsNotice is null) _stepGraphs = new DecodeStepGraphs(enqueue => CudaGraph.Capture(accelerator, enqueue));
            }
        }
        catch
        {
            foreach (var d in owned) d.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Opens the checkpoint folder, uploads it, and closes the files again (the runner keeps no reference to
    /// them once the weights are on the device).
    /// </summary>
    public static LlamaModelRunner Load(Accelerator accelerator, string directory, ModelOptions? options = null)
    {
        using var checkpoint = LlamaCheckpoint.Open(directory);
        return new LlamaModelRunner(accelerator, checkpoint, options);
    }

    public LlamaConfig Config { get; }

    /// <summary>End-of-sequence ids (generation_config.json's, else config.json's).</summary>
    public IReadOnlyList<int> EosTokenIds { get; }

    public ModelOptions Options { get; }

    public int BlockSize { get; }

    public int NumBlocks { get; }

    public int VocabSize => Config.VocabSize;

    public int MaxSeqLen { get; }

    /// <summary>The attention kernel set's name (the config it was generated from, or "generic").</summary>
    public string KernelSetName => _attention.Name;

    public bool IsSpecialized => _attention.IsSpecialized;

    /// <summary>Why the generic kernels run (and how to specialize them); null when a generated set runs.</summary>
    public string? KernelNotice { get; }

    public DenseSchedule DenseSchedule => _dense.Schedule;

    /// <summary>Whether the decode attention runs on tensor cores (<see cref="ModelOptions.DecodeCores"/> and a generated
    /// <c>DecodeMma</c> for this shape).</summary>
    public bool DecodeOnTensorCores => _attention is AttentionKernelsBase { DecodeOnTensorCores: true };

    /// <summary>Whether the decode attention is launched programmatically (<see cref="DecodeLaunches.PerStageProgrammatic"/>
    /// and a generated set: <see cref="DecodeLaunch.Programmatic"/>).</summary>
    public bool DecodeAttentionProgrammatic => _attention is AttentionKernelsBase { DecodeProgrammatic: true };

    /// <summary>Why the decode attention launches stream-ordered where the rest of the layer is programmatic (the generic
    /// kernels have no such decode); null otherwise.</summary>
    public string? DecodeAttentionLaunchNotice => (_attention as AttentionKernelsBase)?.ProgrammaticNotice;

    public Accelerator Accelerator => _accelerator;

    /// <summary>Whether decode steps are captured as CUDA graphs and replayed (<see cref="ModelOptions.CudaGraphs"/>, on a
    /// device that can capture them, until a capture fails).</summary>
    public bool CapturesCudaGraphs => _stepGraphs is { DisabledBecause: null };

    /// <summary>Why <see cref="ModelOptions.CudaGraphs"/> asked for CUDA graphs and the decode steps are launched one by one
    /// (the CPU accelerator, the legacy stream, a grid-synced plan, a capture the driver refused); null otherwise.</summary>
    public string? CudaGraphsNotice => _cudaGraphsNotice ?? _stepGraphs?.DisabledBecause;

    /// <summary>Decode steps captured into CUDA graphs and steps replayed from them so far (<see cref="ModelOptions.CudaGraphs"/>).</summary>
    public StepGraphCounts CudaGraphSteps => _stepGraphs?.Counts ?? default;

    /// <summary>Tests: decode steps go through <see cref="DecodeStepGraphs"/> with <paramref name="capture"/> standing in for
    /// <see cref="CudaGraph.Capture(Accelerator, Action)"/>, on any accelerator (the CPU accelerator has no graphs).</summary>
    internal void CaptureStepsWith(Func<Action, ICapturedLaunches> capture)
    {
        _stepGraphs?.Dispose();
        _stepGraphs = new DecodeStepGraphs(capture);
    }

    /// <summary>Device bytes of the weights.</summary>
    public long WeightBytes =>
        _embedding.Bytes + (_lmHead == _embedding ? 0 : _lmHead.Bytes) + _layers.Sum(l => l.Qkv.Bytes + l.O.Bytes + l.GateUp.Bytes + l.Down.Bytes);

    /// <summary>
    /// Weight bytes one decode step reads: every projection and the LM head (the embedding table only gives one
    /// row per token, unless it is the tied LM head). Divided by the memory bandwidth: the decode floor.
    /// </summary>
    public long DecodeWeightBytes =>
        _lmHead.Bytes + _layers.Sum(l => l.Qkv.Bytes + l.O.Bytes + l.GateUp.Bytes + l.Down.Bytes);

    private static void CheckShapeFitsKernels(LlamaConfig c, WeightDtype dtype, string configPath)
    {
        int e = DeviceMatrix.ElementsPerChunk(dtype);
        foreach (var (name, value) in new[] { ("hidden_size", c.HiddenSize), ("intermediate_size", c.IntermediateSize), ("num_attention_heads * head_dim", c.QueryDim) })
            if (value % e != 0)
                throw new CheckpointException($"{configPath}: {name} ({value}) must be a multiple of {e}: the {dtype.ToString().ToLowerInvariant()} projection kernels read weights in 16-byte chunks");
        if (c.HeadDim % 8 != 0)
            throw new CheckpointException($"{configPath}: head_dim ({c.HeadDim}) must be a multiple of 8 (the KV cache moves 16-byte chunks)");
    }

    private static (MemoryBuffer1D<float, Stride1D.Dense>, MemoryBuffer1D<float, Stride1D.Dense>) UploadRopeTables(Accelerator a, LlamaConfig c, int positions, RopeFrequencyPrecision precision)
    {
        // As Hugging Face computes them: angle = f32(position) * f32(inv_freq) in float32, then cos and sin.
        var inv = c.RopeInverseFrequencies(precision);
        int half = inv.Length;
        var cos = new float[(long)positions * half];
        var sin = new float[(long)positions * half];
        for (int p = 0; p < positions; p++)
            for (int i = 0; i < half; i++)
            {
                float angle = p * inv[i];
                cos[(long)p * half + i] = (float)Math.Cos(angle);
                sin[(long)p * half + i] = (float)Math.Sin(angle);
            }

        var cb = a.Allocate1D(cos);
        try
        {
            return (cb, a.Allocate1D(sin));
        }
        catch
        {
            cb.Dispose();
            throw;
        }
    }

    /// <summary>What the last step enqueued (at batch 1 the launches set the step's floor: on the H200 each costs the
    /// host 3.4–5 µs to enqueue and a small kernel ~11 µs on the device; benchmarks/results, runs 4–7).</summary>
    /// <summary>q and the layer's cache from norm(x) · Wqkv with rotary embeddings: the epilogue writes k and v into
    /// the paged cache in the attention kernels' dtype, where the attention kernels checked it (no separate KV write).</summary>
    private void NormQkvRopeIntoCache(ArrayView<float> x, ArrayView<int> rows, int tokens, LayerWeights layer, float eps,
        ArrayView<float> q, ArrayView<int> positions, KvCacheTarget cache, ArrayView<float> h, ArrayView<float> qkv, DeviceMatrix next)
    {
        if (cache.Dtype == KvDtype.F16)
            _dense.NormQkvRope(x, rows, tokens, layer.InputNorm.View, eps, layer.Qkv, Rope(q, positions, new PagedKvRows<F16Codec>(cache)), h, qkv, next);
        else
            _dense.NormQkvRope(x, rows, tokens, layer.InputNorm.View, eps, layer.Qkv, Rope(q, positions, new PagedKvRows<F32Codec>(cache)), h, qkv, next);
    }

    /// <summary>
    /// Layer <paramref name="l"/> from its attention on: the attention, its o_proj and MLP and, but after the last layer,
    /// the next layer's norm+qkv+rope into its cache. One grid-synced launch where <see cref="DecodeLaunches.GridSyncedLayers"/>
    /// is asked for and the kernel set hands its decode over (<see cref="AttentionKernelsBase.TryHandDecode{TVisitor}"/>),
    /// else the attention's launch and one for the rest (<see cref="DenseKernels.LayerTail{TKv}"/>).
    /// <paramref name="afterLast"/>: what runs after the last layer's (the LM head, when logits are wanted), for the L2 prefetch.
    /// Returns whether the attention ran inside the one launch (the kernel set was not called to attend).
    /// </summary>
    private bool GridSyncedLayer(int l, IAttentionPlan plan, int tokens, float eps, ArrayView<float> x, ArrayView<int> rows, ArrayView<float> attn,
        SwiGluOutput act, ArrayView<float> q, ArrayView<int> positions, DeviceMatrix? afterLast)
    {
        var layer = _layers[l];
        var nextLayer = l + 1 < _layers.Length ? _layers[l + 1] : null;
        var next = nextLayer is null ? (NextLayerWeights?)null : new NextLayerWeights(nextLayer.InputNorm.View, nextLayer.Qkv, nextLayer.O);
        // After the last layer nothing is written there, but the launch takes real views: this layer's cache, then.
        var target = _attention.CacheWriteTarget(plan, _kvCache[nextLayer is null ? l : l + 1].Layer);
        return Options.KvDtype == KvDtype.F16
            ? GridSyncedLayer(new GridSyncedLayerLaunch<PagedKvRows<F16Codec>>(_dense, Timeline, tokens, layer.O, x, rows, layer.PostNorm.View, eps, layer.GateUp, act, layer.Down,
                Rope(q, positions, new PagedKvRows<F16Codec>(target)), next, afterLast), plan, q, _kvCache[l].Layer, attn)
            : GridSyncedLayer(new GridSyncedLayerLaunch<PagedKvRows<F32Codec>>(_dense, Timeline, tokens, layer.O, x, rows, layer.PostNorm.View, eps, layer.GateUp, act, layer.Down,
                Rope(q, positions, new PagedKvRows<F32Codec>(target)), next, afterLast), plan, q, _kvCache[l].Layer, attn);
    }

    private bool GridSyncedLayer<TKv>(GridSyncedLayerLaunch<TKv> launch, IAttentionPlan plan, ArrayView<float> q, PagedKvLayer cache, ArrayView<float> attn)
        where TKv : struct, IKvRowTarget
    {
        if (_dense.RunsWholeLayers(launch.Tokens) && _attention is AttentionKernelsBase set && set.TryHandDecode(plan, q, cache, attn, ref launch)) return true;
        Timeline?.Mark(StepStages.Attention);
        _attention.Attend(plan, q, cache, attn);
        Timeline?.Mark(StepStages.LayerTail);
        launch.Tail(attn);
        return false;
    }

    /// <summary>The qkv epilogue: q to <paramref name="q"/>, k and v to <paramref name="kv"/>, rotated at <paramref name="positions"/>.</summary>
    private RopeSplitOutput<TKv> Rope<TKv>(ArrayView<float> q, ArrayView<int> positions, TKv kv) where TKv : struct, IKvRowTarget
        => new(q, kv, positions, _ropeCos.View, _ropeSin.View, Config.NumAttentionHeads, Config.NumKeyValueHeads, Config.HeadDim);

    internal StepLaunches LastStepLaunches { get; private set; }

    /// <summary>How the last step's kernels went out: launched one by one, or captured into a CUDA graph, or replayed from one.</summary>
    internal StepGraphUse LastStepGraph { get; private set; }

    /// <summary>The decode steps' device time stage by stage since <see cref="StartStageTimeline"/>; null when not timing.</summary>
    public StageTimeline? Timeline { get; private set; }

    /// <summary>Times the stages of the steps from now on (<see cref="StageTimeline"/>), in a fresh timeline.</summary>
    /// <exception cref="InvalidOperationException">The accelerator offers no profiling markers (create it with
    /// <c>AcceleratorOptions.Profiling</c>).</exception>
    public StageTimeline StartStageTimeline() => Timeline = new StageTimeline(_accelerator);

    /// <summary>Stops timing the stages; returns the timeline (null when none was running).</summary>
    public StageTimeline? StopStageTimeline()
    {
        var timeline = Timeline;
        Timeline = null;
        timeline?.BeginStep();   // releases the markers of a step that ended early, if any
        return timeline;
    }

    /// <summary>The weight bytes each stage of a decode step reads (for <see cref="StageTimeline.MeanStep"/>'s GB/s); with
    /// grid-synced layer tails the qkv stage is the first layer's alone, the others' run in the tails.</summary>
    public IReadOnlyDictionary<string, long> StageWeightBytes
    {
        get
        {
            // A grid-synced launch reads a layer's o_proj, MLP and the next layer's qkv, with the attention or without.
            long tails = _layers.Sum(l => l.O.Bytes + l.GateUp.Bytes + l.Down.Bytes) + _layers.Skip(1).Sum(l => l.Qkv.Bytes);
            return new Dictionary<string, long>
            {
                [StepStages.Qkv] = _dense.RunsLayerTail(1) ? _layers[0].Qkv.Bytes : _layers.Sum(l => l.Qkv.Bytes),
                [StepStages.OProj] = _layers.Sum(l => l.O.Bytes),
                [StepStages.GateUp] = _layers.Sum(l => l.GateUp.Bytes),
                [StepStages.Down] = _layers.Sum(l => l.Down.Bytes),
                [StepStages.LayerTail] = tails,
                [StepStages.Layer] = tails,
                [StepStages.LmHead] = _lmHead.Bytes,
            };
        }
    }

    /// <summary>Where the host spent the last step (the benchmarks' decode-step breakdown).</summary>
    internal StepTimes LastStepTimes { get; private set; }

    /// <summary>The KV cache layers (for tests and the block-copy path).</summary>
    internal IReadOnlyList<PagedKvCacheBuffer> KvCache => _kvCache;

    /// <summary>Whether <see cref="Run"/> picks greedy tokens on the device (<see cref="ModelOptions.GreedySampling"/>).</summary>
    public bool PicksGreedyTokensOnDevice => _greedyOnDevice;

    private int ArgMaxSlices => GreedyArgMax.Slices(Config.VocabSize, _argMaxSlice);

    public bool ReturnsAllLogits => true;

    /// <summary>Fresh logits rows, the caller's to keep.</summary>
    public float[]?[] Execute(StepBatch batch) => Run(batch, new RowHandling(PickOnDevice: false, ReuseRows: false)).Logits;

    /// <summary>Greedy tokens picked on the device where <see cref="PicksGreedyTokensOnDevice"/>; the logits rows it
    /// returns are the runner's, reused by the next call (the engine samples from them before its next step).</summary>
    public StepResult Run(StepBatch batch) => Run(batch, new RowHandling(_greedyOnDevice, ReuseRows: true));

    /// <summary>How a step hands back its logits rows: greedy rows picked on the device or copied, and copied rows in
    /// fresh arrays or in the runner's reused ones (a vocabulary-sized array per row per step is a large-object
    /// allocation: 64 × 513 KB a step at Llama 3's vocabulary and batch 64).</summary>
    private readonly record struct RowHandling(bool PickOnDevice, bool ReuseRows);

    /// <summary>
    /// Runs a step like <see cref="Execute"/> but returns the logits of every token of the batch, in batch order: every
    /// chunk as an <see cref="SequenceChunk.AllLogits"/> chunk, the path prompt log-probabilities take. The reference
    /// tests compare these per-position logits.
    /// </summary>
    public float[][] ExecuteAllLogits(StepBatch batch)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var all = batch with { Chunks = batch.Chunks.Select(chunk => chunk with { AllLogits = true }).ToArray() };
        return Run(all, new RowHandling(PickOnDevice: false, ReuseRows: false)).AllLogits!.SelectMany(rows => rows!).ToArray();
    }

    private StepResult Run(StepBatch batch, RowHandling handling)
    {
        ArgumentNullException.ThrowIfNull(batch);
        // A logits row per chunk that wants one (its last token), in batch order: those copied back, then those the
        // device picks (Forward's row order). An AllLogits chunk has a copied row for each of its tokens.
        var chunks = batch.Chunks;
        var copied = new List<(int Token, int Chunk)>(chunks.Count);
        var picked = new List<(int Token, int Chunk)>();
        int end = 0;
        for (int i = 0; i < chunks.Count; i++)
        {
            int start = end;
            end += chunks[i].TokenIds.Length;
            if (chunks[i].AllLogits)
                for (int t = start; t < end; t++) copied.Add((t, i));
            else if (chunks[i].WantLogits) (handling.PickOnDevice && chunks[i].GreedyToken ? picked : copied).Add((end - 1, i));
        }

        var wanted = new LogitRows(copied.Select(r => r.Token).ToArray(), picked.Select(r => r.Token).ToArray());
        var (rowLogits, rowTokens) = Forward(batch, wanted, handling.ReuseRows);

        var logits = new float[]?[chunks.Count];
        var tokens = picked.Count > 0 ? new int[chunks.Count] : null;
        var allLogits = chunks.Any(ch => ch.AllLogits) ? new float[][]?[chunks.Count] : null;
        if (tokens is not null) Array.Fill(tokens, StepResult.NoToken);
        for (int r = 0; r < rowLogits.Length; )
        {
            int chunk = r < copied.Count ? copied[r].Chunk : picked[r - copied.Count].Chunk;
            if (chunks[chunk].AllLogits)
            {
                int n = chunks[chunk].TokenIds.Length;
                allLogits![chunk] = rowLogits[r..(r + n)]!;
                if (chunks[chunk].WantLogits) logits[chunk] = rowLogits[r + n - 1];
                r += n;
                continue;
            }
            logits[chunk] = rowLogits[r];
            if (tokens is not null) tokens[chunk] = rowTokens[r];
            r++;
        }

        return new StepResult(logits, tokens) { AllLogits = allLogits };
    }

    /// <summary>The logits rows a step computes, as token indices of the step: those copied back, then those whose argmax
    /// is picked on the device.</summary>
    private readonly record struct LogitRows(int[] Copied, int[] Picked)
    {
        public int Count => Copied.Length + Picked.Length;
    }

    /// <summary>One forward step. Per logits row (copied, then picked): the row, or the token picked on the device (a
    /// picked row whose logits are all NaN has no token and comes back as its row, for the caller's error).</summary>
    private (float[]?[] Logits, int[] Tokens) Forward(StepBatch batch, LogitRows wanted, bool reuseRows)
    {
        long started = Stopwatch.GetTimestamp();
        int tokens = Validate(batch);
        var c = Config;
        var chunks = batch.Chunks;

        // Copy-on-write blocks before anything writes the cache.
        foreach (var copy in batch.BlockCopies) CopyBlock(copy);
        if (tokens == 0) return (Array.Empty<float[]?>(), Array.Empty<int>());

        // Host-side step description: ids | positions | logits rows, and the attention batch.
        int logitRows = wanted.Count;
        EnsureScratch(tokens, logitRows);
        var s = _scratch;
        var ints = new int[2 * tokens + logitRows];
        var queryLens = new int[chunks.Count];
        var contextLens = new int[chunks.Count];
        var blockTables = new int[chunks.Count][];
        var slots = new int[tokens];
        int t = 0;
        for (int i = 0; i < chunks.Count; i++)
        {
            var ch = chunks[i];
            for (int j = 0; j < ch.TokenIds.Length; j++, t++)
            {
                int pos = ch.StartPosition + j;
                ints[t] = ch.TokenIds[j];
                ints[tokens + t] = pos;
                slots[t] = ch.BlockTable[pos / BlockSize] * BlockSize + pos % BlockSize;
            }

            queryLens[i] = ch.TokenIds.Length;
            contextLens[i] = ch.ContextLength;
            blockTables[i] = ch.BlockTable;
        }

        wanted.Copied.CopyTo(ints, 2 * tokens);
        wanted.Picked.CopyTo(ints, 2 * tokens + wanted.Copied.Length);

        s.Ints.View.SubView(0, ints.Length).CopyFromCPU(ints);
        var ids = s.Ints.View.SubView(0, tokens);               // [tokens]
        var positions = s.Ints.View.SubView(tokens, tokens);    // [tokens]
        var rows = s.Ints.View.SubView(2L * tokens, Math.Max(1, logitRows)); // [logit_rows]
        var identity = s.Identity.View.SubView(0, tokens);

        using var plan = _attention.Plan(new AttentionBatch(queryLens, contextLens, blockTables, slots));
        long hiddenElems = (long)tokens * c.HiddenSize;
        var x = s.X.View.SubView(0, hiddenElems);
        var h = s.H.View.SubView(0, hiddenElems);
        var qkv = s.Qkv.View.SubView(0, (long)tokens * (c.QueryDim + 2 * c.KeyValueDim));
        var q = s.Q.View.SubView(0, (long)tokens * c.QueryDim);
        var attn = s.Attn.View.SubView(0, (long)tokens * c.QueryDim);
        var gateUp = s.GateUp.View.SubView(0, (long)tokens * 2 * c.IntermediateSize);
        var act = s.Act.View.SubView(0, (long)tokens * c.IntermediateSize);
        float eps = (float)c.RmsNormEps;

        var swiGlu = new SwiGluOutput(act, c.IntermediateSize);
        // The logits rows: those copied back, then those whose argmax the device picks.
        int copiedRows = wanted.Copied.Length, pickedRows = wanted.Picked.Length, slices = ArgMaxSlices;
        var final = s.Final.View.SubView(0, (long)Math.Max(1, logitRows) * c.HiddenSize);              // [logit_rows, hidden]
        ArrayView<float> logits = s.Logits.View.SubView(0, (long)Math.Max(1, logitRows) * c.VocabSize); // [logit_rows, vocab]
        // (An empty sub-view past the end is out of bounds to ILGPU.)
        var pickedLogits = pickedRows > 0 ? logits.SubView((long)copiedRows * c.VocabSize, (long)pickedRows * c.VocabSize) : default; // [picked, vocab]
        ArrayView<ulong> keys = s.Keys.View.SubView(0, Math.Max(1, pickedRows * slices));                                                // [picked, slices]

        long prepared = Stopwatch.GetTimestamp();
        var timeline = Timeline;
        timeline?.BeginStep();
        // Few tokens may run each layer's tail (o_proj, MLP, the next layer's qkv) as one grid-synced launch (ModelOptions.DecodeLaunches).
        bool gridSynced = _dense.RunsLayerTail(tokens);

        // Every kernel of the step, from the embedding to the LM head and the argmax; nothing here copies or waits, so
        // that a decode step can be captured as a CUDA graph (ModelOptions.CudaGraphs).
        StepLaunches Enqueue()
        {
            long denseBefore = _dense.Launches;
            int attentionCalls = 0;
            // x = embed(ids)
            timeline?.Mark(StepStages.Embedding);
            _dense.Embedding(_embedding, ids, tokens, x);
            for (int l = 0; l < _layers.Length; l++)
            {
                var layer = _layers[l];
                var cache = _kvCache[l].Layer;
                // Attention block: q, cache ← rope(norm(x) · Wqkv) (k and v go straight into the cache); x += attend(q) · Wo.
                // (Few tokens: norm, projection and rope are one launch; h and qkv serve the unfused many-token path.)
                // (Each projection names the one after it, whose first weights it may pull into L2: ModelOptions.WeightPrefetch.)
                if (!gridSynced || l == 0)
                {
                    timeline?.Mark(StepStages.Qkv);
                    NormQkvRopeIntoCache(x, identity, tokens, layer, eps, q, positions, _attention.CacheWriteTarget(plan, cache), h, qkv, next: layer.O);
                }
                if (gridSynced)
                {
                    // The attention, then the rest of the layer and the next layer's qkv: one launch, or two (ModelOptions.DecodeLaunches).
                    if (!GridSyncedLayer(l, plan, tokens, eps, x, identity, attn, swiGlu, q, positions, afterLast: logitRows > 0 ? _lmHead : null))
                        attentionCalls += 1;
                    continue;
                }
                timeline?.Mark(StepStages.Attention);
                _attention.Attend(plan, q, cache, attn);
                attentionCalls += 1;
                timeline?.Mark(StepStages.OProj);
                _dense.Linear(attn, tokens, layer.O, x, accumulate: true, next: layer.GateUp);
                // MLP block: x += (silu(norm(x) · Wgate) * (norm(x) · Wup)) · Wdown (norm, projection and silu·up fused likewise).
                timeline?.Mark(StepStages.GateUp);
                _dense.NormGateUpSwiGlu(x, identity, tokens, layer.PostNorm.View, eps, layer.GateUp, swiGlu, h, gateUp, next: layer.Down);
                var afterDown = l + 1 < _layers.Length ? _layers[l + 1].Qkv : logitRows > 0 ? _lmHead : null;
                timeline?.Mark(StepStages.Down);
                _dense.Linear(act, tokens, layer.Down, x, accumulate: true, next: afterDown);
            }

            if (logitRows > 0)
            {
                // Only the rows whose logits are wanted: final norm of those rows and the LM head.
                timeline?.Mark(StepStages.LmHead);
                _dense.NormLinear(x, rows, logitRows, _finalNorm.View, eps, _lmHead, logits, final);
                timeline?.Mark(StepStages.ArgMax);
                _dense.ArgMaxSlices(pickedLogits, pickedRows, c.VocabSize, _argMaxSlice, keys);
            }
            return new StepLaunches(_dense.Launches - denseBefore, attentionCalls);
        }

        var graphKey = _stepGraphs is not null && timeline is null && !gridSynced && tokens == chunks.Count && plan is AttentionPlan planned
            ? new StepGraphKey([_scratchGeneration, tokens, copiedRows, pickedRows], planned.LaunchSignature())
            : null;
        (LastStepLaunches, LastStepGraph) = graphKey is null ? (Enqueue(), StepGraphUse.Launched) : _stepGraphs!.Run(graphKey, Enqueue);

        var results = new float[]?[logitRows];
        var picks = new int[logitRows];
        Array.Fill(picks, GreedyArgMax.NoToken);
        long enqueued = Stopwatch.GetTimestamp(), copied = enqueued;
        if (logitRows > 0)
        {
            var host = s.LogitsHost.AsSpan(0, copiedRows * c.VocabSize);
            var hostKeys = s.KeysHost.AsSpan(0, pickedRows * slices);
            timeline?.Mark(StepStages.CopyOut);
            if (copiedRows > 0) logits.SubView(0, host.Length).CopyToCPU(host);
            if (pickedRows > 0) keys.SubView(0, hostKeys.Length).CopyToCPU(hostKeys);
            copied = Stopwatch.GetTimestamp();
            for (int i = 0; i < copiedRows; i++)
            {
                // Every element is overwritten at once: no need to zero a vocabulary-sized array.
                results[i] = reuseRows ? ReusedRow(i) : GC.AllocateUninitializedArray<float>(c.VocabSize);
                host.Slice(i * c.VocabSize, c.VocabSize).CopyTo(results[i]);
            }

            for (int j = 0; j < pickedRows; j++)
            {
                ulong best = 0;
                foreach (var key in hostKeys.Slice(j * slices, slices)) best = Math.Max(best, key);
                picks[copiedRows + j] = GreedyArgMax.TokenOf(best);
                if (picks[copiedRows + j] == GreedyArgMax.NoToken)
                {
                    var row = new float[c.VocabSize];
                    pickedLogits.SubView((long)j * c.VocabSize, c.VocabSize).CopyToCPU(row);
                    results[copiedRows + j] = row;
                }
            }
        }

        timeline?.Mark(StepStages.EndOfStep);
        // The plan's device buffers are released on return: wait for the kernels that read them.
        _accelerator.Synchronize();
        // A grid barrier that gave up (groups not all resident) leaves wrong results, not a hang: checked on the first
        // grid-synced step, where it would show, and every so often after (each check is a small device-to-host copy).
        if (gridSynced && _gridSyncedSteps++ % GridBarrierCheckInterval == 0) _dense.CheckGridBarriers();
        timeline?.EndStep(decode: chunks.All(ch => ch.TokenIds.Length == 1));
        LastStepTimes = new StepTimes(prepared - started, enqueued - prepared, copied - enqueued, Stopwatch.GetTimestamp() - copied);
        return (results, picks);
    }

    /// <summary>The <paramref name="index"/>-th reused logits row (<see cref="Run"/>), allocated on first use.</summary>
    private float[] ReusedRow(int index)
    {
        if (index >= _reusedRows.Count)
            _reusedRows.AddRange(Enumerable.Range(0, index + 1 - _reusedRows.Count).Select(_ => GC.AllocateUninitializedArray<float>(Config.VocabSize)));
        return _reusedRows[index];
    }

    private int Validate(StepBatch batch)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(batch);
        int tokens = 0;
        var seen = new HashSet<long>();
        foreach (var ch in batch.Chunks)
        {
            string who = $"sequence {ch.SequenceId}";
            if (!seen.Add(ch.SequenceId)) throw new ArgumentException($"{who} appears twice in one step");
            if (ch.TokenIds.Length == 0) throw new ArgumentException($"{who}: a chunk needs at least one token");
            if (ch.StartPosition < 0) throw new ArgumentException($"{who}: start position {ch.StartPosition} is negative");
            if (ch.ContextLength > MaxSeqLen)
                throw new ArgumentException($"{who}: context of {ch.ContextLength} tokens exceeds the runner's max sequence length {MaxSeqLen}");
            foreach (var id in ch.TokenIds)
                if ((uint)id >= (uint)Config.VocabSize)
                    throw new ArgumentException($"{who}: token id {id} is outside the vocabulary (0..{Config.VocabSize - 1})");
            int needed = (ch.ContextLength + BlockSize - 1) / BlockSize;
            if (ch.BlockTable.Length < needed)
                throw new ArgumentException($"{who}: block table has {ch.BlockTable.Length} blocks; {ch.ContextLength} positions of block size {BlockSize} need {needed}");
            foreach (var b in ch.BlockTable)
                if ((uint)b >= (uint)NumBlocks)
                    throw new ArgumentException($"{who}: block id {b} is outside the KV cache (0..{NumBlocks - 1})");
            tokens += ch.TokenIds.Length;
        }

        foreach (var copy in batch.BlockCopies)
            if ((uint)copy.Source >= (uint)NumBlocks || (uint)copy.Destination >= (uint)NumBlocks)
                throw new ArgumentException($"block copy {copy.Source} → {copy.Destination} names a block outside the KV cache (0..{NumBlocks - 1})");
        return tokens;
    }

    private void CopyBlock(BlockCopy copy)
    {
        foreach (var layer in _kvCache)
        {
            long blockBytes = layer.Layout.ElementsPerBlock * layer.Layout.BytesPerElement;
            var kv = layer.Layer;
            kv.Keys.SubView(copy.Source * blockBytes, blockBytes).CopyTo(kv.Keys.SubView(copy.Destination * blockBytes, blockBytes));
            kv.Values.SubView(copy.Source * blockBytes, blockBytes).CopyTo(kv.Values.SubView(copy.Destination * blockBytes, blockBytes));
        }
    }

    private void EnsureScratch(int tokens, int logitRows)
    {
        if (tokens <= _scratch.Tokens && logitRows <= _scratch.LogitRows) return;
        // Grow to the next power of two so a slowly growing batch reallocates rarely.
        int newTokens = Math.Max(_scratch.Tokens, (int)Math.Min(int.MaxValue / 2, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)tokens)));
        int newRows = Math.Max(_scratch.LogitRows, (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, logitRows)));
        _accelerator.Synchronize();
        // The graphs hold the old buffers' addresses.
        _stepGraphs?.Clear();
        _scratchGeneration++;
        _scratch.Dispose();
        _scratch = new Scratch(_accelerator, Config, newTokens, newRows, ArgMaxSlices);
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _accelerator.Synchronize();
        _stepGraphs?.Dispose();
        _scratch.Dispose();
        foreach (var kv in _kvCache) kv.Dispose();
        foreach (var l in _layers) l.Dispose();
        _embedding.Dispose();
        if (_lmHead != _embedding) _lmHead.Dispose();
        _finalNorm.Dispose();
        _ropeCos.Dispose();
        _ropeSin.Dispose();
        _attention.Dispose();
    }
}

/// <summary>Kernels one forward step enqueued.</summary>
/// <param name="Dense">Launches of the dense kernels (embedding, norms, projections, rope, SwiGLU, fused or not).</param>
/// <param name="AttentionCalls">Calls into the attention kernel set (attend; the new K/V rows go into the cache with the qkv projection): each is one launch or more, as the set decides. A grid-synced layer that runs the set's decode itself counts among the dense launches instead.</param>
internal readonly record struct StepLaunches(long Dense, int AttentionCalls);

/// <summary>
/// Host time of one step in <see cref="Stopwatch"/> ticks, cut where the host changes what it waits for: preparing
/// (validation, step tables, the attention plan's upload), enqueuing every launch, copying the logits out (which
/// waits for the device to finish what was enqueued), and the rest (row copies, the final synchronize). When
/// enqueuing takes about the whole step, the step is bound by launch overhead rather than by the device.
/// </summary>
internal readonly record struct StepTimes(long Prepare, long Enqueue, long Logits, long Finish);

/// <summary>
/// A layer's grid-synced launch from its attention on (see <c>LlamaModelRunner.GridSyncedLayer</c>): what the tail reads
/// and writes, and the visitor a kernel set hands its decode to, which then launches the whole layer at once.
/// </summary>
internal readonly record struct GridSyncedLayerLaunch<TKv>(DenseKernels Dense, StageTimeline? Timeline, int Tokens, DeviceMatrix O, ArrayView<float> X,
    ArrayView<int> Rows, ArrayView<float> PostNorm, float Eps, DeviceMatrix GateUp, SwiGluOutput Act, DeviceMatrix Down, RopeSplitOutput<TKv> QkvOutput,
    NextLayerWeights? Next, DeviceMatrix? AfterLast) : IDecodeGroupsVisitor
    where TKv : struct, IKvRowTarget
{
    /// <summary>The whole layer, <typeparamref name="TDecode"/> its attention stage (<see cref="DenseKernels.Layer{TKv, TDecode}"/>).</summary>
    public void Visit<TDecode>(DecodeGroupsLaunch launch) where TDecode : struct, IDecodeGroups
    {
        Timeline?.Mark(StepStages.Layer);
        Dense.Layer<TKv, TDecode>(launch, Tokens, O, X, Rows, PostNorm, Eps, GateUp, Act, Down, QkvOutput, Next, AfterLast);
    }

    /// <summary>The layer after its attention (<see cref="DenseKernels.LayerTail{TKv}"/>), <paramref name="attention"/> its output.</summary>
    public void Tail(ArrayView<float> attention) =>
        Dense.LayerTail(attention, Tokens, O, X, Rows, PostNorm, Eps, GateUp, Act, Down, QkvOutput, Next, AfterLast);
}
