using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Kernels.Reference;

namespace SpecializedInference.Tests.Kernels;

/// <summary>One CPU accelerator (GPU-shaped) for every kernel test, and the kernel sets compiled on it so far.</summary>
public sealed class CpuAcceleratorFixture : IDisposable
{
    private readonly Dictionary<string, IAttentionKernels> _kernels = new();

    public AcceleratorHandle Handle { get; } = AcceleratorFactory.CreateCpu();

    public Accelerator Accelerator => Handle.Accelerator;

    /// <summary>Generic kernels for a shape, options and tiles, compiled once per test run.</summary>
    public IAttentionKernels Generic(AttentionShape shape, AttentionOptions options, AttentionTiles tiles)
    {
        string key = $"generic {shape} {options} {tiles}";
        lock (_kernels)
        {
            if (!_kernels.TryGetValue(key, out var k)) _kernels[key] = k = new GenericAttentionKernels(Accelerator, shape, options, tiles);
            return k;
        }
    }

    /// <summary>Any kernel set, compiled once per test run under <paramref name="key"/>.</summary>
    public IAttentionKernels Get(string key, Func<IAttentionKernels> create)
    {
        lock (_kernels)
        {
            if (!_kernels.TryGetValue(key, out var k)) _kernels[key] = k = create();
            return k;
        }
    }

    public void Dispose()
    {
        foreach (var k in _kernels.Values) k.Dispose();
        Handle.Dispose();
    }
}

/// <summary>A sequence of a step: how many keys it attends to, and how many of them are new this step.</summary>
public readonly record struct SeqSpec(int Context, int QueryLen);

/// <summary>
/// Runs attention steps on the device and on the float64 reference side by side: a paged cache with
/// shuffled, non-contiguous block tables, pre-filled with random values (so earlier positions are "already
/// cached"), fresh random K/V/Q per step, outputs poisoned with NaN before each launch.
/// </summary>
public sealed class AttentionHarness : IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly PagedKvCacheBuffer _cache;
    private readonly List<int> _freeBlocks;

    public AttentionHarness(Accelerator accelerator, AttentionShape shape, KvDtype dtype, int numBlocks, int seed)
    {
        _accelerator = accelerator;
        Shape = shape;
        Seed = seed;
        Rng = new Random(seed);
        Reference = new ReferencePagedCache(numBlocks, shape.NumKvHeads, shape.BlockSize, shape.HeadDim, dtype);
        Reference.FillRandom(Rng);
        _cache = AcceleratorFactory.AllocateKvLayer(accelerator, new PagedKvCacheLayout(numBlocks, shape.NumKvHeads, shape.BlockSize, shape.HeadDim, dtype));
        _cache.Layer.Keys.CopyFromCPU(Reference.KeyBytes());
        _cache.Layer.Values.CopyFromCPU(Reference.ValueBytes());
        _freeBlocks = Enumerable.Range(0, numBlocks).OrderBy(_ => Rng.Next()).ToList();
    }

    public AttentionShape Shape { get; }

    public int Seed { get; }

    public Random Rng { get; }

    public ReferencePagedCache Reference { get; }

    public PagedKvLayer Layer => _cache.Layer;

    /// <summary>A block table of <paramref name="blocks"/> blocks taken from a shuffled free list.</summary>
    public int[] TakeBlocks(int blocks)
    {
        if (blocks > _freeBlocks.Count) throw new InvalidOperationException("test cache too small");
        var table = _freeBlocks.Take(blocks).ToArray();
        _freeBlocks.RemoveRange(0, blocks);
        return table;
    }

    /// <summary>Grows a block table to cover <paramref name="context"/> keys.</summary>
    public int[] Cover(int[] table, int context)
    {
        int needed = (context + Shape.BlockSize - 1) / Shape.BlockSize;
        return needed <= table.Length ? table : table.Concat(TakeBlocks(needed - table.Length)).ToArray();
    }

    /// <summary>The batch for <paramref name="seqs"/>: new tokens at positions context - query_len .. context - 1.
    /// The device cache is laid out for it as the reference holds it, except that every row of the batch's blocks
    /// past what any of its sequences attends to is NaN, as uninitialized memory may be: a kernel that reads such
    /// a row must not let it reach its output.</summary>
    public AttentionBatch Batch(SeqSpec[] seqs, int[][] tables)
    {
        PoisonPastContext(seqs.Select(s => s.Context).ToArray(), tables);
        var slots = new List<int>();
        for (int s = 0; s < seqs.Length; s++)
            for (int p = seqs[s].Context - seqs[s].QueryLen; p < seqs[s].Context; p++)
                slots.Add(tables[s][p / Shape.BlockSize] * Shape.BlockSize + p % Shape.BlockSize);
        return new AttentionBatch(seqs.Select(s => s.QueryLen).ToArray(), seqs.Select(s => s.Context).ToArray(), tables, slots.ToArray());
    }

    /// <summary>Block id -> rows of it that some sequence of the last <see cref="Batch"/> attends to; the rest are NaN.</summary>
    private readonly Dictionary<int, int> _rowsUsed = new();

    /// <summary>Whether cache element <paramref name="element"/> ([block, kv_head, slot, head_dim] order) was set to NaN
    /// by the last <see cref="Batch"/>, being past every context that reads its block.</summary>
    public bool PastContext(long element)
    {
        long blockElements = (long)Shape.NumKvHeads * Shape.BlockSize * Shape.HeadDim;
        return _rowsUsed.TryGetValue((int)(element / blockElements), out int rows) && element / Shape.HeadDim % Shape.BlockSize >= rows;
    }

    private void PoisonPastContext(int[] contexts, int[][] tables)
    {
        int bs = Shape.BlockSize;
        var rowsUsed = _rowsUsed;   // block id -> rows some sequence attends to
        rowsUsed.Clear();
        for (int s = 0; s < tables.Length; s++)
            for (int b = 0; b < tables[s].Length; b++)
                rowsUsed[tables[s][b]] = Math.Max(rowsUsed.GetValueOrDefault(tables[s][b]), Math.Clamp(contexts[s] - b * bs, 0, bs));
        bool f16 = Reference.Dtype == KvDtype.F16;
        int size = f16 ? 2 : 4;
        long blockElements = (long)Shape.NumKvHeads * bs * Shape.HeadDim;
        var bytes = new byte[blockElements * size];
        foreach (var (block, rows) in rowsUsed)
        {
            long first = Reference.Offset(block, 0, 0);
            foreach (var (source, target) in new[] { (Reference.Keys, Layer.Keys), (Reference.Values, Layer.Values) })
            {
                for (long e = 0; e < blockElements; e++)
                {
                    bool past = e / Shape.HeadDim % bs >= rows;   // [kv_head, slot, head_dim] within the block
                    double v = past ? double.NaN : source[first + e];
                    if (f16) BitConverter.TryWriteBytes(bytes.AsSpan((int)(e * 2)), (System.Half)v);
                    else BitConverter.TryWriteBytes(bytes.AsSpan((int)(e * 4)), (float)v);
                }
                target.SubView(first * size, bytes.LongLength).CopyFromCPU(bytes);
            }
        }
    }

    public float[] RandomFloats(long n)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)(Rng.NextDouble() * 2 - 1);
        return a;
    }

    /// <summary>One step on every kernel set: each writes the same new K/V, then attends. Returns each
    /// set's output, and checks the cache the first one wrote against the reference's.</summary>
    public StepResult Step(AttentionBatch batch, params IAttentionKernels[] kernelSets)
        => Run(batch, kernelSets.Select(k => (k, (IAttentionPlan?)null)).ToArray(), attends: 1);

    /// <summary>One step on one kernel set with a plan the caller made and keeps: writes the new K/V, then
    /// attends <paramref name="attends"/> times with that plan (the output poisoned before each, as a model
    /// runner reuses a step's plan for every layer). Returns each attend's output.</summary>
    public StepResult Step(AttentionBatch batch, IAttentionKernels kernels, IAttentionPlan plan, int attends = 1)
        => Run(batch, new[] { (kernels, (IAttentionPlan?)plan) }, attends);

    private StepResult Run(AttentionBatch batch, (IAttentionKernels Kernels, IAttentionPlan? Plan)[] runs, int attends)
    {
        int tokens = batch.NumTokens;
        var keys = RandomFloats((long)tokens * Shape.NumKvHeads * Shape.HeadDim);
        var values = RandomFloats(keys.Length);
        var queries = RandomFloats((long)tokens * Shape.NumHeads * Shape.HeadDim);

        Reference.Write(batch.SlotMapping, keys, values);
        var expected = AttentionReference.Attend(batch, queries, Shape.NumHeads, Reference);

        using var dKeys = _accelerator.Allocate1D(keys);
        using var dValues = _accelerator.Allocate1D(values);
        using var dQueries = _accelerator.Allocate1D(queries);
        using var dOut = _accelerator.Allocate1D<float>(Math.Max(1, queries.Length));
        var outputs = new List<float[]>();
        foreach (var (kernels, given) in runs)
        {
            var plan = given ?? kernels.Plan(batch);
            try
            {
                kernels.WriteKvCache(plan, dKeys.View, dValues.View, Layer);
                for (int a = 0; a < attends; a++)
                {
                    dOut.CopyFromCPU(Enumerable.Repeat(float.NaN, (int)dOut.Length).ToArray());
                    kernels.Attend(plan, dQueries.View, Layer, dOut.View);
                    _accelerator.Synchronize();
                    outputs.Add(dOut.GetAsArray1D().Take(queries.Length).ToArray());
                }
            }
            finally
            {
                if (given is null) plan.Dispose();
            }
        }
        return new StepResult(expected, outputs);
    }

    /// <summary>What the device cache should hold: the reference's keys and values, NaN where the last
    /// <see cref="Batch"/> poisoned rows past the contexts (no kernel may write there).</summary>
    public (double[] Keys, double[] Values) ExpectedCache()
    {
        var keys = (double[])Reference.Keys.Clone();
        var values = (double[])Reference.Values.Clone();
        for (long i = 0; i < keys.LongLength; i++)
            if (PastContext(i)) keys[i] = values[i] = double.NaN;
        return (keys, values);
    }

    /// <summary>The device cache, read back as float64 keys and values.</summary>
    public (double[] Keys, double[] Values) DeviceCache()
        => (Reference.FromBytes(ReadBytes(Layer.Keys)), Reference.FromBytes(ReadBytes(Layer.Values)));

    private static byte[] ReadBytes(ArrayView<byte> view)
    {
        var bytes = new byte[view.Length];
        view.CopyToCPU(bytes);
        return bytes;
    }

    public void Dispose() => _cache.Dispose();
}

public sealed record StepResult(double[] Expected, List<float[]> Outputs);
