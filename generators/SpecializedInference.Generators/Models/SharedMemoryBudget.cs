namespace SpecializedInference.Generators.Models;

/// <summary>
/// Shared-memory footprint of the generated attention kernels, per thread group. ILGPU 1.5.3 caps a
/// group at 48 KB, so the parser rejects tiles that would not fit and the emitter sizes tiles with the
/// same formulas.
/// </summary>
internal static class SharedMemoryBudget
{
    public const int MaxBytesPerGroup = 48 * 1024;

    /// <summary>Padding (in floats) added to each K row in shared memory so that lanes reading
    /// different keys hit different banks.</summary>
    public const int KeyRowPad = 4;

    /// <summary>Prefill: one K tile and one V tile of <paramref name="tileKv"/> keys, held as f32.</summary>
    public static int PrefillBytes(int headDim, int tileKv)
        => tileKv * (headDim + KeyRowPad) * 4 + tileKv * headDim * 4;

    /// <summary>Decode: the group's query rows, then each warp's partial (max, sum, output) for the
    /// in-group combine.</summary>
    public static int DecodeBytes(int headDim, int groupSize, int warps)
        => groupSize * headDim * 4 + warps * groupSize * (headDim + 2) * 4;
}
