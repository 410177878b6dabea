namespace SpecializedInference.Kernels;

/// <summary>
/// Shared-memory bytes per thread group of the attention kernels. ILGPU 1.5.3 caps a group at 48 KB.
/// The generator's <c>SharedMemoryBudget</c> holds the same formulas for the specialized kernels (it cannot
/// reference this assembly); keep the two in step.
/// </summary>
public static class AttentionSharedMemory
{
    public const int MaxBytesPerGroup = 48 * 1024;

    /// <summary>Floats each K row is padded by in shared memory, so lanes reading different keys hit different banks.</summary>
    public const int KeyRowPad = 4;

    /// <summary>Rows (position × head) of a prefill group: whole positions of <paramref name="headsPerGroup"/> heads.</summary>
    public static int PrefillRows(int tileQ, int headsPerGroup) => PrefillPositions(tileQ, headsPerGroup) * headsPerGroup;

    public static int PrefillPositions(int tileQ, int headsPerGroup) => Math.Max(1, tileQ / headsPerGroup);

    /// <summary>Prefill: Q tile [rows, D], K tile [tile_kv, D + pad], V tile [tile_kv, D], scores [rows, tile_kv],
    /// and (max, sum, rescale) per row; the generic kernel adds its output accumulators [rows, D] (the
    /// specialized kernel keeps them in registers).</summary>
    public static int PrefillBytes(int headDim, int tileKv, int rows, bool accumulatorsInShared)
        => 4 * (rows * headDim + tileKv * (headDim + KeyRowPad) + tileKv * headDim + rows * tileKv + 3 * rows
            + (accumulatorsInShared ? rows * headDim : 0)) + 16;

    /// <summary>Threads of one group that share a V unit column in decode's P·V: threads / (head_dim / 8).</summary>
    public static int DecodeKeySlots(int headDim, int warps) => 32 * warps / (headDim / 8);

    /// <summary>Decode: queries [heads, D], scores [heads, partition], per-key-slot partial outputs
    /// [key_slots, heads, D], (max, sum) per head, and the last-ticket flag.</summary>
    public static int DecodeBytes(int headDim, int headsPerGroup, int warps, int partition)
        => 4 * (headsPerGroup * headDim + headsPerGroup * partition + DecodeKeySlots(headDim, warps) * headsPerGroup * headDim
            + 2 * headsPerGroup + 1) + 16;
}
