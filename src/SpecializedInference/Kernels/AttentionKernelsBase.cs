using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels.Generic;

namespace SpecializedInference.Kernels;

/// <summary>
/// What every attention kernel set shares: planning a step, checking arguments, and routing a batch — decode
/// sequences (query length 1) to the split-K decode kernels, the others to prefill; a batch may mix both.
/// Subclasses (the generic kernels and each generated set) launch their own kernels.
/// </summary>
public abstract class AttentionKernelsBase : IAttentionKernels
{
    private MaterializedKernels? _materialized;
    private readonly PlanBufferPool _planBuffers;

    protected AttentionKernelsBase(Accelerator accelerator, string name, bool isSpecialized, AttentionShape shape,
        AttentionTiles tiles, AttentionOptions options, int headsPerGroup)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(shape);
        ArgumentNullException.ThrowIfNull(tiles);
        ArgumentNullException.ThrowIfNull(options);
        shape.Validate();
        tiles.Validate();
        if (headsPerGroup <= 0 || shape.GroupSize % headsPerGroup != 0)
            throw new ArgumentException($"heads per group ({headsPerGroup}) must divide the group size ({shape.GroupSize}).");
        Accelerator = accelerator;
        _planBuffers = new PlanBufferPool(accelerator);
        Name = name;
        IsSpecialized = isSpecialized;
        Shape = shape;
        Tiles = tiles;
        Options = options;
        HeadsPerGroup = headsPerGroup;
        PrefillPositions = AttentionSharedMemory.PrefillPositions(tiles.PrefillTileQ, headsPerGroup);
        Dims = new AttentionDims
        {
            HeadDim = shape.HeadDim,
            HeadDim4 = shape.HeadDim / 4,
            Units = shape.HeadDim / 8,
            NumHeads = shape.NumHeads,
            NumKvHeads = shape.NumKvHeads,
            GroupSize = shape.GroupSize,
            BlockSize = shape.BlockSize,
            HeadsPerGroup = headsPerGroup,
            HeadGroups = shape.NumHeads / headsPerGroup,
            PrefillPositions = PrefillPositions,
            PrefillRows = PrefillPositions * headsPerGroup,
            TileKv = tiles.PrefillTileKv,
            DecodePartition = tiles.DecodePartitionSize,
            Scale = 1f / MathF.Sqrt(shape.HeadDim),
        };
    }

    public Accelerator Accelerator { get; }

    public string Name { get; }

    public bool IsSpecialized { get; }

    public AttentionOptions Options { get; }

    public AttentionShape Shape { get; }

    public AttentionTiles Tiles { get; }

    /// <summary>Whether the flash decode is launched programmatically (<see cref="DecodeLaunch.Programmatic"/> asked for, a
    /// generated set, and CUDA sm_90 through <see cref="ProgrammaticLauncher"/>, or the CPU accelerator through ILGPU).</summary>
    public bool DecodeProgrammatic { get; private set; }

    /// <summary>Why <see cref="DecodeLaunch.Programmatic"/> was asked for and the decode launches stream-ordered; null otherwise.</summary>
    public string? ProgrammaticNotice => Options.DecodeLaunch == DecodeLaunch.Programmatic && !DecodeProgrammatic
        ? $"programmatic decode launch: {_whyNotProgrammatic ?? $"the {Name} kernels have none"}; the decode launches stream-ordered"
        : null;

    private string? _whyNotProgrammatic;

    /// <summary>
    /// A generated set's decode: <paramref name="streamOrdered"/>, or under <see cref="DecodeLaunch.Programmatic"/>
    /// <paramref name="programmatic"/> (the same kernel with <see cref="ProgrammaticallyDependent"/> marks) through the
    /// launcher on CUDA sm_90 and through ILGPU on the CPU accelerator, where its marks are no-ops. A clocked decode
    /// (<see cref="AttentionOptions.TimeDecodeStages"/>) stays stream-ordered.
    /// </summary>
    protected Action<KernelConfig, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>, ArrayView<float>> LoadDecode(
        Action<AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>, ArrayView<float>> streamOrdered,
        Action<AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>, ArrayView<float>> programmatic, int maxRegisters)
    {
        ArgumentNullException.ThrowIfNull(streamOrdered);
        ArgumentNullException.ThrowIfNull(programmatic);
        if (Options.DecodeLaunch != DecodeLaunch.Programmatic) return Accelerator.LoadStreamKernel(streamOrdered, maxRegisters);
        if (Options.TimeDecodeStages)
        {
            // Overlapping calls would write their marks into the same rows.
            _whyNotProgrammatic = "its stages are clocked (AttentionOptions.TimeDecodeStages)";
            return Accelerator.LoadStreamKernel(streamOrdered, maxRegisters);
        }
        if (Accelerator is CPUAccelerator)
        {
            DecodeProgrammatic = true;
            return Accelerator.LoadStreamKernel(programmatic, maxRegisters);
        }
        // One launcher per set: its kernels are this set's.
        _launcher ??= ProgrammaticLauncher.For(Accelerator, out _whyNotProgrammatic);
        if (_launcher is null) return Accelerator.LoadStreamKernel(streamOrdered, maxRegisters);
        DecodeProgrammatic = true;
        return _launcher.Load(programmatic, maxRegisters);
    }

    private ProgrammaticLauncher? _launcher;

    /// <summary>Whether the flash decode runs its products on tensor cores (<see cref="DecodeCores.Tensor"/> asked for and
    /// a <c>DecodeMma</c> kernel generated for this shape, the mapping grouped and the cache f16).</summary>
    public virtual bool DecodeOnTensorCores => false;

    /// <summary>The layout of the set's large-batch decode (a second tensor-core decode with longer partitions, from the
    /// config's <c>large_batch_decode_*</c> fields) where the decode runs on tensor cores; null where there is none.</summary>
    public virtual DecodeLayout? LargeBatchDecode => null;

    /// <summary>
    /// Under <see cref="LargeBatchDecodePolicy.Auto"/>, a step runs the large-batch decode when its groups' threads would
    /// be at least this share of the device's (<see cref="Accelerator.MaxNumThreads"/>). Measured on the H200 (run 20,
    /// 2026-11-27, L = 4096 unless noted; partitions of 256 on 4 warps against each set's own): Llama-3-8B wins from batch
    /// 4 (a 0.24 share: 28.2 against 29.8 µs; batch 32 144.9 against 159.8) and loses at batch 1 (0.06: 11.3 against 10.8);
    /// TinyLlama wins at batch 64 at L = 256 (0.12: 9.1 against 14.3 µs) and from batch 8 at 4096, and loses at batch 16
    /// at L = 256 (0.03: 7.2 against 6.3) and at batch 1.
    /// </summary>
    public const double LargeBatchMinThreadShare = 0.1;

    /// <summary>Query heads a thread group serves from each K/V load (1 for <see cref="HeadMapping.Expanded"/>).</summary>
    public int HeadsPerGroup { get; }

    /// <summary>Query positions per prefill work item.</summary>
    public int PrefillPositions { get; }

    /// <summary>The run-time sizes (what the generic kernels take as an argument).</summary>
    public AttentionDims Dims { get; }

    protected int GroupThreads => Tiles.Warps * 32;

    /// <summary>The register caps a generated set loads its flash kernels with (see <see cref="AttentionOptions.MaxRegisters"/>).</summary>
    public RegisterLimits MaxRegisters => Options.MaxRegisters ?? RegisterLimits.Generated;

    /// <summary>Device allocations the plans of this kernel set have made (a step that fits the pooled buffers makes none).</summary>
    internal int PlanDeviceAllocations => _planBuffers.DeviceAllocations;

    /// <summary>Plans one step. Its device buffers come from this kernel set's pool: dispose the plan before
    /// planning the next step and the next plan reuses them (a plan made while another is alive gets its own).</summary>
    public IAttentionPlan Plan(AttentionBatch batch)
    {
        var large = ChooseLargeBatchDecode(batch);
        return AttentionPlan.Create(this, _planBuffers, batch, Shape, PrefillPositions, large?.PartitionSize ?? Tiles.DecodePartitionSize,
            large?.HeadGroups ?? Dims.HeadGroups, Options.Algorithm == AttentionAlgorithm.Materialized, large,
            stageTimes: Options.TimeDecodeStages && DecodeOnTensorCores);
    }

    /// <summary>The large-batch layout when this step should run it (see <see cref="LargeBatchDecodePolicy"/>), else null.</summary>
    private DecodeLayout? ChooseLargeBatchDecode(AttentionBatch batch)
    {
        if (LargeBatchDecode is not { } large || Options.Algorithm == AttentionAlgorithm.Materialized) return null;
        switch (Options.LargeBatchDecode)
        {
            case LargeBatchDecodePolicy.Never: return null;
            case LargeBatchDecodePolicy.Always: return large;
        }
        long groups = 0;
        for (int s = 0; s < Math.Min(batch.QueryLens.Length, batch.ContextLens.Length); s++)   // checked when planned
            if (batch.QueryLens[s] == 1)
                groups += (batch.ContextLens[s] + large.PartitionSize - 1) / large.PartitionSize;
        long threads = groups * large.HeadGroups * large.Warps * 32;
        return threads >= LargeBatchMinThreadShare * Accelerator.MaxNumThreads ? large : null;
    }

    public void WriteKvCache(IAttentionPlan plan, ArrayView<float> keys, ArrayView<float> values, PagedKvLayer cache)
    {
        var p = AttentionPlan.Check(plan, this);
        long rows = (long)p.Batch.NumTokens * Shape.NumKvHeads * Shape.HeadDim;
        if (keys.Length < rows || values.Length < rows)
            throw new ArgumentException($"WriteKvCache: keys has {keys.Length} and values {values.Length} floats; " +
                $"{p.Batch.NumTokens} tokens x {Shape.NumKvHeads} kv heads x {Shape.HeadDim} need {rows}.");
        var (keyCache, valueCache) = CheckCache(p, cache, forWrite: true);
        if (p.Batch.NumTokens == 0) return;
        LaunchWriteKv(p, keys, values, keyCache, valueCache);
    }

    public KvCacheTarget CacheWriteTarget(IAttentionPlan plan, PagedKvLayer cache)
    {
        var p = AttentionPlan.Check(plan, this);
        var (keyCache, valueCache) = CheckCache(p, cache, forWrite: true);
        return new KvCacheTarget(p.Meta.SlotMapping, keyCache, valueCache, Options.KvDtype, Shape.NumKvHeads, Shape.HeadDim, Shape.BlockSize);
    }

    public void Attend(IAttentionPlan plan, ArrayView<float> queries, PagedKvLayer cache, ArrayView<float> output)
    {
        var p = AttentionPlan.Check(plan, this);
        CheckQueries(p, queries, output, nameof(Attend));
        var (keyCache, valueCache) = CheckCache(p, cache, forWrite: false);
        if (p.Batch.NumTokens == 0) return;
        if (Options.Algorithm == AttentionAlgorithm.Materialized)
        {
            _materialized ??= CreateMaterialized();
            _materialized.Launch(p, queries, keyCache, valueCache, output);
            return;
        }
        if (p.NumPrefillItems > 0) LaunchPrefill(p, queries, keyCache, valueCache, output);
        if (p.NumDecodeItems > 0) LaunchDecode(p, queries, keyCache, valueCache, output);
    }

    /// <summary>
    /// Hands a decode-only step's decode to <paramref name="visitor"/> as a struct type (<see cref="IDecodeGroups"/>) with
    /// what a launch of it reads and writes, so that another kernel runs it as one of its stages (a grid-synced layer
    /// launch) instead of <see cref="Attend"/> launching it. False, and nothing handed, where this set has no such body
    /// for the step: the generic kernels, expanded heads, the materialized algorithm, a step with prefill items, a step
    /// that runs the large-batch decode. The caller then calls <see cref="Attend"/>.
    /// </summary>
    public bool TryHandDecode<TVisitor>(IAttentionPlan plan, ArrayView<float> queries, PagedKvLayer cache, ArrayView<float> output, ref TVisitor visitor)
        where TVisitor : struct, IDecodeGroupsVisitor
    {
        var p = AttentionPlan.Check(plan, this);
        if (Options.Algorithm == AttentionAlgorithm.Materialized || p.NumPrefillItems > 0 || p.NumDecodeItems == 0 || p.DecodeLayout is not null) return false;
        CheckQueries(p, queries, output, nameof(TryHandDecode));
        var (keyCache, valueCache) = CheckCache(p, cache, forWrite: false);
        return HandDecode(new DecodeGroupsLaunch(p.Meta, queries, keyCache, valueCache, output, p.NumDecodeItems * Dims.HeadGroups, GroupThreads), ref visitor);
    }

    /// <summary>Gives <paramref name="visitor"/> this set's decode body for <paramref name="launch"/> (with its own group
    /// size); false where there is none (the base: the generic kernels).</summary>
    protected virtual bool HandDecode<TVisitor>(DecodeGroupsLaunch launch, ref TVisitor visitor)
        where TVisitor : struct, IDecodeGroupsVisitor => false;

    /// <summary>The non-flash kernels (<see cref="AttentionAlgorithm.Materialized"/>), made at the first such step: the
    /// generic ones here, a generated set's own where its generator emitted them.</summary>
    private protected virtual MaterializedKernels CreateMaterialized() => MaterializedKernels.Generic(Accelerator, Shape, Dims, Options.KvDtype);

    /// <summary>Whether the non-flash kernels this set runs are its own specialized ones (false: the generic ones).</summary>
    internal bool MaterializedIsSpecialized => (_materialized ??= CreateMaterialized()).IsSpecialized;

    /// <summary>Launches the KV-cache append over <c>plan.Batch.NumTokens</c> tokens.</summary>
    protected abstract void LaunchWriteKv(AttentionPlan plan, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache);

    /// <summary>Launches flash prefill over <c>plan.NumPrefillItems</c> work items × head groups.</summary>
    protected abstract void LaunchPrefill(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache,
        ArrayView<Chunk16> valueCache, ArrayView<float> output);

    /// <summary>Launches split-K decode over <c>plan.NumDecodeItems</c> partitions × head groups. One launch:
    /// the last partition of a decode to finish combines them (the plan's ticket counters).</summary>
    protected abstract void LaunchDecode(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache,
        ArrayView<Chunk16> valueCache, ArrayView<float> output);

    /// <summary>Throws unless <paramref name="queries"/> and <paramref name="output"/> hold the step's
    /// [tokens, heads, head_dim] rows.</summary>
    private void CheckQueries(AttentionPlan p, ArrayView<float> queries, ArrayView<float> output, string caller)
    {
        long rows = (long)p.Batch.NumTokens * Shape.NumHeads * Shape.HeadDim;
        if (queries.Length < rows || output.Length < rows)
            throw new ArgumentException($"{caller}: queries has {queries.Length} and output {output.Length} floats; " +
                $"{p.Batch.NumTokens} tokens x {Shape.NumHeads} heads x {Shape.HeadDim} need {rows}.");
    }

    private (ArrayView<Chunk16> Keys, ArrayView<Chunk16> Values) CheckCache(AttentionPlan p, PagedKvLayer cache, bool forWrite)
    {
        int bytesPerElement = Options.KvDtype == KvDtype.F16 ? 2 : 4;
        long blockBytes = (long)Shape.NumKvHeads * Shape.BlockSize * Shape.HeadDim * bytesPerElement;
        long keyBytes = cache.Keys.Length;
        if (keyBytes == 0 || keyBytes % blockBytes != 0 || cache.Values.Length != keyBytes)
            throw new ArgumentException($"KV cache layer: keys have {keyBytes} bytes and values {cache.Values.Length}; both must be the same " +
                $"whole number of {Options.KvDtype.ToString().ToLowerInvariant()} blocks of {blockBytes} bytes " +
                $"([{Shape.NumKvHeads} kv heads, {Shape.BlockSize} slots, {Shape.HeadDim} dims]).");
        long numBlocks = keyBytes / blockBytes;
        if (p.MaxBlockId >= numBlocks)
            throw new ArgumentException($"attention batch: a block table names block {p.MaxBlockId} but the KV cache layer has {numBlocks} blocks.");
        if (forWrite && p.MaxSlot >= numBlocks * Shape.BlockSize)
            throw new ArgumentException($"attention batch: SlotMapping names slot {p.MaxSlot} but the KV cache layer has {numBlocks * Shape.BlockSize} slots.");
        return (cache.Keys.Cast<Chunk16>(), cache.Values.Cast<Chunk16>());
    }

    public virtual void Dispose()
    {
        _planBuffers.Dispose();
        GC.SuppressFinalize(this);
    }
}
