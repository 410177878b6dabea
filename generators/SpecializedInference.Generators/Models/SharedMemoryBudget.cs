using System;

namespace SpecializedInference.Generators.Models;

/// <summary>
/// Shared-memory footprint of the generated attention kernels, per thread group. ILGPU 1.5.3 caps a
/// group at 48 KB, so the parser rejects tiles that would not fit and the emitter sizes tiles with the
/// same formulas. The runtime's <c>AttentionSharedMemory</c> holds the decode formula too (for the generic
/// kernels); keep the two in step.
/// </summary>
internal static class SharedMemoryBudget
{
    public const int MaxBytesPerGroup = 48 * 1024;

    /// <summary>Query rows (position × head) of a prefill group: whole positions of <paramref name="heads"/> heads.</summary>
    public static int PrefillRows(int tileQ, int heads) => PrefillPositions(tileQ, heads) * heads;

    /// <summary>Query positions per prefill group: prefill_tile_q counts rows, so a group covers
    /// max(1, prefill_tile_q / heads) positions of every head it serves.</summary>
    public static int PrefillPositions(int tileQ, int heads) => Math.Max(1, tileQ / heads);

    /// <summary>Prefill (the register-tiled layout of <see cref="PrefillTiling"/>): Q [head_dim/4, rows] and K
    /// [head_dim/4, tile_kv] dims-major, V [tile_kv, head_dim + 4] (in K's buffer when both do not fit) and
    /// probabilities [rows, tile_kv + pad], all f32. Output accumulators and softmax state stay in registers.
    /// (The generic kernel's layout differs: the runtime's <c>AttentionSharedMemory</c>.)</summary>
    public static int PrefillBytes(int headDim, int tileKv, int rows) => PrefillTiling.For(headDim, tileKv, rows).SharedBytes;

    /// <summary>Decode P·V: threads sharing one 8-dim column of V = threads / (head_dim / 8).</summary>
    public static int DecodeKeySlots(int headDim, int warps) => 32 * warps / (headDim / 8);

    /// <summary>Threads that sum one Float4 column of a decode group's key slots after P·V: as many as the group has
    /// to spare (threads / (heads × D / 4)), a power of two dividing the key slots.</summary>
    public static int DecodeSlotSumThreads(int headDim, int heads, int warps)
    {
        int spare = 32 * warps / (heads * headDim / 4), slots = DecodeKeySlots(headDim, warps), n = 1;
        while (n * 2 <= spare && slots % (n * 2) == 0) n *= 2;
        return n;
    }

    /// <summary>Decode: queries [heads, D], scores [heads, partition], each key slot's partial output
    /// [key_slots, heads, D], the slot-sum threads' partial sums [slot-sum threads - 1, heads, D], (max, sum) per head, the last-ticket flag, and the combine's (max, sum) per slice and
    /// head.</summary>
    public static int DecodeBytes(int headDim, int heads, int warps, int partition)
        => 4 * (heads * headDim + heads * partition + DecodeKeySlots(headDim, warps) * heads * headDim + 2 * heads + 1
                + (DecodeSlotSumThreads(headDim, heads, warps) - 1) * heads * headDim
                + 2 * DecodeCombineSlices(headDim, heads, warps) * heads) + 16;

    /// <summary>Slices of partitions the combining threads of a decode group split: threads / (heads × D / 4).</summary>
    public static int DecodeCombineSlices(int headDim, int heads, int warps) => Math.Max(1, 32 * warps / (heads * headDim / 4));

    /// <summary>Threads of a decode group that share one key's row when the group has more threads than the
    /// partition has keys: threads / partition, else 1. Each takes head_dim / that many dims of the row.</summary>
    public static int DecodeThreadsPerKey(int warps, int partition) => 32 * warps > partition ? 32 * warps / partition : 1;

    public static bool Fits(int headDim, int heads, TileSizes tiles)
        => PrefillBytes(headDim, tiles.PrefillTileKv, PrefillRows(tiles.PrefillTileQ, heads)) <= MaxBytesPerGroup
            && DecodeBytes(headDim, heads, tiles.DecodeWarps, tiles.DecodePartitionSize) <= MaxBytesPerGroup;

    /// <summary>The tensor-core decode (<c>DecodeMma</c>): queries, scores, one partial output per warp and head,
    /// (max, sum) per head, the partition's blocks, the last-ticket flag and the combine's slices.</summary>
    public static int DecodeMmaBytes(int headDim, int heads, int warps, int partition, int blockSize)
    {
        int blocks = partition % blockSize == 0 ? partition / blockSize : partition / blockSize + 2;
        return 4 * (heads * headDim + heads * partition + warps * heads * headDim + 2 * heads + 1 + blocks
            + 2 * DecodeCombineSlices(headDim, heads, warps) * heads) + 16;
    }

    /// <summary>Whether the tensor-core decode can take a group of <paramref name="heads"/> query heads: one mma n-tile
    /// (2 to 8 heads; MHA streams on CUDA cores already), head_dim a multiple of 64 (the P·V loads give 8 lanes a chunk
    /// each), whole 16-key tiles per warp, within a group's shared memory.</summary>
    public static bool FitsDecodeMma(int headDim, int heads, int warps, int partition, int blockSize)
        => heads is >= 2 and <= 8 && headDim % 64 == 0 && partition % (16 * warps) == 0
            && DecodeMmaBytes(headDim, heads, warps, partition, blockSize) <= MaxBytesPerGroup;

    /// <summary>Query heads per group of the large-batch decode (tensor cores only): the largest divisor of the group
    /// size that <see cref="FitsDecodeMma"/>, or 0 when none does.</summary>
    public static int LargeBatchHeadsPerGroup(ModelShape model, DecodeTiles decode, int blockSize)
    {
        for (int h = model.GroupSize; h > 1; h--)
            if (model.GroupSize % h == 0 && FitsDecodeMma(model.HeadDim, h, decode.Warps, decode.PartitionSize, blockSize)) return h;
        return 0;
    }

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
