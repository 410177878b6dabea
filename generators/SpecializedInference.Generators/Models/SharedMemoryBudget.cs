using System;

namespace SpecializedInference.Generators.Models;

/// <summary>
/// Shared-memory footprint of the generated attention kernels, per thread group. ILGPU 1.5.3 caps a
/// group at 48 KB, so the parser rejects tiles that would not fit and the emitter sizes tiles with the
/// same formulas. The runtime's <c>AttentionSharedMemory</c> holds the same formulas (for the generic
/// kernels); keep the two in step.
/// </summary>
internal static class SharedMemoryBudget
{
    public const int MaxBytesPerGroup = 48 * 1024;

    /// <summary>Padding (in floats) added to each K row in shared memory so that lanes reading
    /// different keys hit different banks.</summary>
    public const int KeyRowPad = 4;

    /// <summary>Query rows (position × head) of a prefill group: whole positions of <paramref name="heads"/> heads.</summary>
    public static int PrefillRows(int tileQ, int heads) => PrefillPositions(tileQ, heads) * heads;

    /// <summary>Query positions per prefill group: prefill_tile_q counts rows, so a group covers
    /// max(1, prefill_tile_q / heads) positions of every head it serves.</summary>
    public static int PrefillPositions(int tileQ, int heads) => Math.Max(1, tileQ / heads);

    /// <summary>Prefill: Q tile [rows, D], K tile [tile_kv, D + pad], V tile [tile_kv, D], scores
    /// [rows, tile_kv] and (max, sum, rescale) per row, all f32. Output accumulators stay in registers.</summary>
    public static int PrefillBytes(int headDim, int tileKv, int rows)
        => 4 * (rows * headDim + tileKv * (headDim + KeyRowPad) + tileKv * headDim + rows * tileKv + 3 * rows) + 16;

    /// <summary>Decode P·V: threads sharing one 8-dim column of V = threads / (head_dim / 8).</summary>
    public static int DecodeKeySlots(int headDim, int warps) => 32 * warps / (headDim / 8);

    /// <summary>Decode: queries [heads, D], scores [heads, partition], each key slot's partial output
    /// [key_slots, heads, D], (max, sum) per head, and the last-ticket flag.</summary>
    public static int DecodeBytes(int headDim, int heads, int warps, int partition)
        => 4 * (heads * headDim + heads * partition + DecodeKeySlots(headDim, warps) * heads * headDim + 2 * heads + 1) + 16;

    public static bool Fits(int headDim, int heads, TileSizes tiles)
        => PrefillBytes(headDim, tiles.PrefillTileKv, PrefillRows(tiles.PrefillTileQ, heads)) <= MaxBytesPerGroup
            && DecodeBytes(headDim, heads, tiles.Warps, tiles.DecodePartitionSize) <= MaxBytesPerGroup;

    /// <summary>Query heads one generated thread group serves from each K/V load: the whole group when it
    /// fits, else the largest divisor of the group size that does (1 is the expanded mapping's size, which
    /// the parser requires to fit).</summary>
    public static int HeadsPerGroup(ModelShape model, TileSizes tiles)
    {
        for (int h = model.GroupSize; h > 1; h--)
            if (model.GroupSize % h == 0 && Fits(model.HeadDim, h, tiles)) return h;
        return 1;
    }
}
