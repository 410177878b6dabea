using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels.Generic;

namespace SpecializedInference.Kernels;

/// <summary>
/// The non-flash baseline of one kernel set (<see cref="AttentionAlgorithm.Materialized"/>): every score into the
/// plan's [num_tokens, num_heads, max_context] matrix, a softmax over each row in place, then P·V. A generated set
/// brings its own scores and P·V kernels (sizes as constants, head_dim written out); the generic set's take the sizes
/// as arguments. The softmax reads no size a config fixes, so every set runs the generic one.
/// </summary>
internal sealed class MaterializedKernels
{
    private readonly Action<Index1D, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>> _scores;
    private readonly Action<KernelConfig, AttentionMeta> _softmax;
    private readonly Action<Index1D, AttentionMeta, ArrayView<Chunk16>, ArrayView<float>> _values;
    private readonly int _numHeads;
    private readonly int _units;

    /// <param name="scores">One thread per (token, head, key of max_context).</param>
    /// <param name="values">One thread per (token, head, 8-dim unit).</param>
    /// <param name="specialized">Whether <paramref name="scores"/> and <paramref name="values"/> are a generated set's.</param>
    public MaterializedKernels(Accelerator accelerator, AttentionShape shape, bool specialized,
        Action<Index1D, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>> scores,
        Action<Index1D, AttentionMeta, ArrayView<Chunk16>, ArrayView<float>> values)
    {
        _scores = scores;
        _values = values;
        _softmax = accelerator.LoadStreamKernel<AttentionMeta>(GenericAttentionBodies.MaterializedSoftmax);
        _numHeads = shape.NumHeads;
        _units = shape.HeadDim / 8;
        IsSpecialized = specialized;
    }

    /// <summary>The generic scores and P·V for <paramref name="dims"/>.</summary>
    public static MaterializedKernels Generic(Accelerator accelerator, AttentionShape shape, AttentionDims dims, KvDtype dtype)
        => dtype == KvDtype.F16 ? Generic<F16Codec>(accelerator, shape, dims) : Generic<F32Codec>(accelerator, shape, dims);

    private static MaterializedKernels Generic<TCodec>(Accelerator accelerator, AttentionShape shape, AttentionDims dims)
        where TCodec : struct, IKvCodec
    {
        var scores = accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionDims, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>>(
            GenericAttentionBodies.MaterializedScores<TCodec>);
        var values = accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionDims, AttentionMeta, ArrayView<Chunk16>, ArrayView<float>>(
            GenericAttentionBodies.MaterializedValues<TCodec>);
        return new MaterializedKernels(accelerator, shape, specialized: false,
            (threads, m, queries, keyCache) => scores(threads, dims, m, queries, keyCache),
            (threads, m, valueCache, output) => values(threads, dims, m, valueCache, output));
    }

    /// <summary>Whether the scores and P·V kernels are a generated set's.</summary>
    public bool IsSpecialized { get; }

    public void Launch(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)
    {
        long rows = (long)plan.Batch.NumTokens * _numHeads;
        long scoreThreads = rows * plan.Meta.MaxContext;
        // One thread per score: past int's range the launch could not address them all. Say so instead of scoring a part.
        if (scoreThreads > int.MaxValue)
            throw new InvalidOperationException($"materialized attention: {plan.Batch.NumTokens} tokens x {_numHeads} heads x a context of " +
                $"{plan.Meta.MaxContext} is {scoreThreads} scores, more than one launch can index ({int.MaxValue}); use flash attention or a smaller chunk.");
        _scores((int)scoreThreads, plan.Meta, queries, keyCache);
        _softmax(new KernelConfig((int)rows, 32), plan.Meta);
        _values((int)(rows * _units), plan.Meta, valueCache, output);
    }
}
