namespace SpecializedInference.Kernels;

/// <summary>The sizes attention kernels depend on: query heads, K/V heads, head_dim, and the KV block size.</summary>
public sealed record AttentionShape(int NumHeads, int NumKvHeads, int HeadDim, int BlockSize)
{
    public int GroupSize => NumHeads / NumKvHeads;

    public static AttentionShape From(KernelShape shape, int blockSize)
        => new(shape.NumAttentionHeads, shape.NumKeyValueHeads, shape.HeadDim, blockSize);

    /// <summary>Throws a clear error when the kernels cannot run this shape.</summary>
    public void Validate()
    {
        if (NumHeads <= 0 || NumKvHeads <= 0 || NumHeads % NumKvHeads != 0)
            throw new ArgumentException($"num_attention_heads ({NumHeads}) must be a positive multiple of num_key_value_heads ({NumKvHeads}).");
        if (HeadDim <= 0 || HeadDim % 8 != 0 || HeadDim > 256)
            throw new ArgumentException($"head_dim ({HeadDim}) must be a multiple of 8 no larger than 256 (K/V move in 16-byte chunks of 8 halves).");
        if (BlockSize <= 0)
            throw new ArgumentException($"kv block size ({BlockSize}) must be positive.");
    }
}

/// <summary>
/// Tiles of the attention kernels.
/// </summary>
/// <param name="PrefillTileQ">Query rows (position × query head of the group) per prefill thread group: a group
/// covers max(1, PrefillTileQ / heads_per_group) positions of one sequence for every head of its K/V group.</param>
/// <param name="PrefillTileKv">Keys per K/V tile held in shared memory (at most 32).</param>
/// <param name="DecodePartitionSize">Keys per split-K decode partition (one thread group each).</param>
/// <param name="Warps">Warps per prefill and decode thread group.</param>
public sealed record AttentionTiles(int PrefillTileQ, int PrefillTileKv, int DecodePartitionSize, int Warps)
{
    public void Validate()
    {
        if (PrefillTileQ <= 0 || PrefillTileQ > 64) throw new ArgumentException($"prefill tile q ({PrefillTileQ}) must be in 1..64.");
        if (PrefillTileKv <= 0 || PrefillTileKv > 32) throw new ArgumentException($"prefill tile kv ({PrefillTileKv}) must be in 1..32.");
        if (DecodePartitionSize <= 0 || DecodePartitionSize % 32 != 0)
            throw new ArgumentException($"decode partition size ({DecodePartitionSize}) must be a positive multiple of 32.");
        if (Warps is not (1 or 2 or 4 or 8)) throw new ArgumentException($"attention warps ({Warps}) must be 1, 2, 4 or 8.");
    }
}

/// <summary>
/// Every size a generic kernel takes at run time, derived once on the host. The specialized kernels have
/// these as constants instead.
/// </summary>
public struct AttentionDims
{
    public int HeadDim;
    /// <summary>HeadDim / 4: Float4s per row.</summary>
    public int HeadDim4;
    /// <summary>HeadDim / 8: 8-element units (16-byte f16 chunks) per row.</summary>
    public int Units;
    public int NumHeads;
    public int NumKvHeads;
    public int GroupSize;
    public int BlockSize;
    /// <summary>Query heads one thread group serves from each K/V load (the group size, a divisor of it,
    /// or 1 for the expanded mapping).</summary>
    public int HeadsPerGroup;
    /// <summary>NumHeads / HeadsPerGroup: thread groups per work item.</summary>
    public int HeadGroups;
    public int PrefillPositions;
    /// <summary>PrefillPositions * HeadsPerGroup.</summary>
    public int PrefillRows;
    public int TileKv;
    public int DecodePartition;
    /// <summary>1 / sqrt(head_dim).</summary>
    public float Scale;
}
