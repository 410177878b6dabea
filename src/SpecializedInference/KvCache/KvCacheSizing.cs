namespace SpecializedInference.KvCache;

/// <summary>
/// How many KV blocks fit in a memory budget. A block holds <c>blockSize</c> token slots of keys AND values
/// for every layer and KV head: <c>2 * layers * kvHeads * blockSize * headDim * dtypeBytes</c> bytes.
/// </summary>
public static class KvCacheSizing
{
    /// <summary>Bytes one block occupies across all layers (keys and values).</summary>
    public static long BytesPerBlock(int layers, int kvHeads, int headDim, int blockSize, int dtypeBytes)
    {
        Positive(layers, nameof(layers));
        Positive(kvHeads, nameof(kvHeads));
        Positive(headDim, nameof(headDim));
        Positive(blockSize, nameof(blockSize));
        Positive(dtypeBytes, nameof(dtypeBytes));
        return checked(2L * layers * kvHeads * headDim * blockSize * dtypeBytes);
    }

    /// <summary>The number of whole blocks that fit in <paramref name="bytes"/> (rounded down).</summary>
    public static int BlocksFor(long bytes, int layers, int kvHeads, int headDim, int blockSize, int dtypeBytes)
    {
        if (bytes < 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "KV cache memory must be non-negative bytes.");
        long perBlock = BytesPerBlock(layers, kvHeads, headDim, blockSize, dtypeBytes);
        return (int)Math.Min(int.MaxValue, bytes / perBlock);
    }

    /// <summary>Blocks for a fraction (0, 1] of <paramref name="freeBytes"/> (the device's free memory).</summary>
    public static int BlocksForFraction(long freeBytes, double fraction, int layers, int kvHeads, int headDim, int blockSize, int dtypeBytes)
    {
        if (!(fraction > 0 && fraction <= 1))
            throw new ArgumentOutOfRangeException(nameof(fraction), fraction, "The KV cache fraction of free memory must be in (0, 1].");
        return BlocksFor((long)(freeBytes * fraction), layers, kvHeads, headDim, blockSize, dtypeBytes);
    }

    private static void Positive(int value, string name)
    {
        if (value <= 0)
            throw new ArgumentOutOfRangeException(name, value, $"{name} must be positive.");
    }
}
