using ILGPU;

namespace SpecializedInference.Kernels;

/// <summary>
/// Where the qkv projection's epilogue puts a step's new K and V elements (a struct type parameter of
/// <see cref="Dense.RopeSplitOutput{TKv}"/>): f32 rows for the attention kernels' KV write to copy
/// (<see cref="KvRows"/>), or straight into the paged cache (<see cref="PagedKvRows{TCodec}"/>), which saves the
/// write's launch in every layer of every step.
/// </summary>
public interface IKvRowTarget
{
    /// <summary>Stores element <paramref name="dim"/> of token <paramref name="token"/>'s key for KV head
    /// <paramref name="kvHead"/>.</summary>
    void StoreKey(int token, int kvHead, int dim, float value);

    /// <summary>Stores element <paramref name="dim"/> of token <paramref name="token"/>'s value for KV head
    /// <paramref name="kvHead"/>.</summary>
    void StoreValue(int token, int kvHead, int dim, float value);
}

/// <summary>K and V as f32 rows <c>[tokens, kv_heads, head_dim]</c>.</summary>
public struct KvRows : IKvRowTarget
{
    /// <summary>[tokens, kv_heads, head_dim] f32</summary>
    public ArrayView<float> K;
    /// <summary>[tokens, kv_heads, head_dim] f32</summary>
    public ArrayView<float> V;
    public int KvHeads;
    public int HeadDim;

    public KvRows(ArrayView<float> k, ArrayView<float> v, int kvHeads, int headDim)
    {
        K = k;
        V = v;
        KvHeads = kvHeads;
        HeadDim = headDim;
    }

    public readonly void StoreKey(int token, int kvHead, int dim, float value) => K[((long)token * KvHeads + kvHead) * HeadDim + dim] = value;

    public readonly void StoreValue(int token, int kvHead, int dim, float value) => V[((long)token * KvHeads + kvHead) * HeadDim + dim] = value;
}

/// <summary>
/// K and V straight into the paged cache <c>[num_blocks, kv_heads, block_size, head_dim]</c> at each token's slot
/// (block · block_size + offset; a negative slot is skipped), rounded by the codec as the KV-write kernels round.
/// Made from what <see cref="IAttentionKernels.CacheWriteTarget"/> checked and handed out.
/// </summary>
public struct PagedKvRows<TCodec> : IKvRowTarget
    where TCodec : struct, IKvCodec
{
    /// <summary>[tokens] slot of each token</summary>
    public ArrayView<int> SlotMapping;
    /// <summary>[num_blocks, kv_heads, block_size, head_dim] in the codec's dtype</summary>
    public ArrayView<Chunk16> KeyCache;
    /// <summary>[num_blocks, kv_heads, block_size, head_dim] in the codec's dtype</summary>
    public ArrayView<Chunk16> ValueCache;
    public int KvHeads;
    public int HeadDim;
    public int BlockSize;

    public PagedKvRows(KvCacheTarget target)
    {
        SlotMapping = target.SlotMapping;
        KeyCache = target.KeyCache;
        ValueCache = target.ValueCache;
        KvHeads = target.KvHeads;
        HeadDim = target.HeadDim;
        BlockSize = target.BlockSize;
    }

    public readonly void StoreKey(int token, int kvHead, int dim, float value)
    {
        long element = Element(token, kvHead, dim);
        if (element >= 0) default(TCodec).Store1(KeyCache, element, value);
    }

    public readonly void StoreValue(int token, int kvHead, int dim, float value)
    {
        long element = Element(token, kvHead, dim);
        if (element >= 0) default(TCodec).Store1(ValueCache, element, value);
    }

    /// <summary>The cache element [block, kv_head, offset, dim] of the token's slot, or -1 for a negative slot.</summary>
    private readonly long Element(int token, int kvHead, int dim)
    {
        int slot = SlotMapping[token];
        if (slot < 0) return -1;
        return (((long)(slot / BlockSize) * KvHeads + kvHead) * BlockSize + slot % BlockSize) * HeadDim + dim;
    }
}

/// <summary>A layer's paged cache as the attention kernels checked it for one plan's KV write: the plan's slot
/// mapping <c>[tokens]</c>, the key and value caches <c>[num_blocks, kv_heads, block_size, head_dim]</c> as 16-byte
/// chunks, and their dtype and shape.</summary>
public readonly record struct KvCacheTarget(ArrayView<int> SlotMapping, ArrayView<Chunk16> KeyCache, ArrayView<Chunk16> ValueCache,
    KvDtype Dtype, int KvHeads, int HeadDim, int BlockSize);
