using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// The device data of one <see cref="AttentionCase"/>: a paged KV cache whose blocks are scattered (a seeded
/// permutation, as a block pool hands them out), random queries and new K/V rows, and the step's batch.
/// Specialized and generic kernels run on the same workload, so their outputs can be compared.
/// </summary>
public sealed class AttentionWorkload : IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly PagedKvCacheBuffer _cache;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _queries; // [num_tokens, num_heads, head_dim]
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _output; // [num_tokens, num_heads, head_dim]
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _newKeys; // [num_tokens, num_kv_heads, head_dim]
    private readonly MemoryBuffer1D<float, Stride1D.Dense>? _newValues; // [num_tokens, num_kv_heads, head_dim]

    public AttentionWorkload(Accelerator accelerator, DeviceFill fill, AttentionCase c, int seed)
    {
        _accelerator = accelerator;
        Case = c;
        var s = c.Shape;
        int numBlocks = c.Batch * c.BlocksPerSequence;
        Batch = BuildBatch(c, seed);

        _cache = PagedKvCacheBuffer.Allocate(accelerator, new PagedKvCacheLayout(numBlocks, s.NumKeyValueHeads, c.BlockSize, s.HeadDim, c.KvDtype));
        try
        {
            long queryFloats = (long)c.NumTokens * s.NumAttentionHeads * s.HeadDim;
            _queries = accelerator.Allocate1D<float>(queryFloats);
            _output = accelerator.Allocate1D<float>(queryFloats);
            if (c.Op == AttentionOp.KvWrite)
            {
                long rowFloats = (long)c.NumTokens * s.NumKeyValueHeads * s.HeadDim;
                _newKeys = accelerator.Allocate1D<float>(rowFloats);
                _newValues = accelerator.Allocate1D<float>(rowFloats);
                fill.Floats(_newKeys.View, (uint)seed + 3);
                fill.Floats(_newValues.View, (uint)seed + 4);
            }
            else
            {
                fill.Cache(_cache.Layer.Keys, c.KvDtype, (uint)seed + 1);
                fill.Cache(_cache.Layer.Values, c.KvDtype, (uint)seed + 2);
            }
            fill.Floats(_queries.View, (uint)seed + 5);
            accelerator.Synchronize();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public AttentionCase Case { get; }

    public AttentionBatch Batch { get; }

    public long CacheBytes => 2 * _cache.Layout.BytesPerBuffer;

    /// <summary>Runs the case's operation once (asynchronously).</summary>
    public void Run(IAttentionKernels kernels, IAttentionPlan plan)
    {
        if (Case.Op == AttentionOp.KvWrite)
            kernels.WriteKvCache(plan, _newKeys!.View, _newValues!.View, _cache.Layer);
        else
            kernels.Attend(plan, _queries.View, _cache.Layer, _output.View);
    }

    /// <summary>Poisons what the kernel writes (NaN output; a zeroed cache for the KV write), so a kernel that
    /// skips work cannot pass the comparison.</summary>
    public void Poison()
    {
        if (Case.Op == AttentionOp.KvWrite)
        {
            _cache.Layer.Keys.MemSetToZero();
            _cache.Layer.Values.MemSetToZero();
        }
        else
        {
            _output.MemSet(0xFF); // 0xFFFFFFFF is a NaN
        }
        _accelerator.Synchronize();
    }

    /// <summary>What the kernel wrote, as floats: the attention output, or the cache (K then V) for the KV write.</summary>
    public float[] Result()
    {
        _accelerator.Synchronize();
        if (Case.Op != AttentionOp.KvWrite) return _output.GetAsArray1D();
        var layer = _cache.Layer;
        return Case.KvDtype == KvDtype.F16
            ? layer.Keys.Cast<global::ILGPU.Half>().GetAsArray().Concat(layer.Values.Cast<global::ILGPU.Half>().GetAsArray()).Select(h => (float)h).ToArray()
            : layer.Keys.Cast<float>().GetAsArray().Concat(layer.Values.Cast<float>().GetAsArray()).ToArray();
    }

    /// <summary>Every sequence owns <c>BlocksPerSequence</c> blocks drawn from a seeded permutation of the pool.</summary>
    private static AttentionBatch BuildBatch(AttentionCase c, int seed)
    {
        int perSeq = c.BlocksPerSequence;
        var blocks = Enumerable.Range(0, c.Batch * perSeq).ToArray();
        new Random(seed).Shuffle(blocks);
        var tables = new int[c.Batch][];
        for (int b = 0; b < c.Batch; b++) tables[b] = blocks[(b * perSeq)..((b + 1) * perSeq)];

        int queryLen = c.Op == AttentionOp.Decode ? 1 : c.Context;
        var slots = new int[c.NumTokens];
        for (int b = 0, t = 0; b < c.Batch; b++)
            for (int q = 0; q < queryLen; q++, t++)
            {
                int position = c.Context - queryLen + q;
                slots[t] = tables[b][position / c.BlockSize] * c.BlockSize + position % c.BlockSize;
            }
        return new AttentionBatch(
            Enumerable.Repeat(queryLen, c.Batch).ToArray(),
            Enumerable.Repeat(c.Context, c.Batch).ToArray(),
            tables,
            slots);
    }

    public void Dispose()
    {
        _cache?.Dispose();
        _queries?.Dispose();
        _output?.Dispose();
        _newKeys?.Dispose();
        _newValues?.Dispose();
    }
}
