using System;

namespace SpecializedInference.Generators.Models;

/// <summary>
/// The register tiling of the generated flash prefill, derived from head_dim, the query rows of a thread group
/// and the keys of a K/V tile. S = Q·Kᵀ of a tile ([rows, tile_kv]) is split into micro-tiles of
/// <see cref="RowsPerThread"/> rows × <see cref="KeysPerThread"/> keys, one per thread, accumulated over head_dim in
/// registers; O ([rows, head_dim]) into <see cref="RowsPerThread"/> rows × <see cref="ColumnsPerThread"/> Float4
/// columns, the same rows, so each row's online-softmax state stays in the registers of the
/// <see cref="KeyLanes"/> lanes that share it (adjacent lanes of one warp, reduced with xor shuffles).
/// </summary>
/// <remarks>
/// Thread t is (row group t / KeyLanes, key lane t % KeyLanes). Its rows are rowGroup + RowGroups * i and its keys
/// keyLane + KeyLanes * j: interleaved, so the lanes of a warp read consecutive Float4s of the dims-major Q and K tiles
/// (no bank conflicts, and lanes of one row group share each Q load as a broadcast).
/// </remarks>
internal sealed record PrefillTiling(
    int HeadDim,
    int TileKv,
    int Rows,
    int RowsPerThread,
    int KeyLanes,
    int RowGroups,
    bool SharedKv)
{
    /// <summary>Float4s per head row.</summary>
    public int D4 => HeadDim / 4;

    /// <summary>8-element units (one 16-byte f16 chunk) per head row.</summary>
    public int Units => HeadDim / 8;

    /// <summary>Keys of the S micro-tile each thread owns.</summary>
    public int KeysPerThread => TileKv / KeyLanes;

    /// <summary>Float4 columns of O each thread owns: keyLane + KeyLanes * w.</summary>
    public int ColumnsPerThread => D4 / KeyLanes;

    /// <summary>Rows the group holds: the real rows rounded up so every warp is full (the extra rows are masked).</summary>
    public int PaddedRows => RowGroups * RowsPerThread;

    public int Threads => RowGroups * KeyLanes;

    /// <summary>V tile row stride in Float4s: one Float4 of padding, so the lanes storing a K/V load hit different banks.</summary>
    public int VStride => D4 + 1;

    /// <summary>P tile row stride in floats: rows of a warp start in different banks for the P·V Float4 reads.</summary>
    public int PStride => (TileKv + Math.Max(KeyLanes, 4) + 3) / 4 * 4;

    /// <summary>Lanes that load consecutive 8-element units of one key (64 contiguous bytes of f16 at 4).</summary>
    public int UnitLanes => Units % 4 == 0 ? 4 : Units % 2 == 0 ? 2 : 1;

    /// <summary>Lanes that load consecutive Float4s of one query row.</summary>
    public int QueryLanes => D4 % 8 == 0 ? 8 : D4 % 4 == 0 ? 4 : D4 % 2 == 0 ? 2 : 1;

    public int QFloat4s => PaddedRows * D4;

    public int KFloat4s => TileKv * D4;

    public int VFloat4s => TileKv * VStride;

    public int PFloat4s => PaddedRows * PStride / 4;

    /// <summary>Shared bytes per group: Q [head_dim/4, rows] Float4 + K [head_dim/4, tile_kv] Float4 + V [tile_kv,
    /// head_dim/4 + 1] Float4 (V in K's buffer when both do not fit) + P [rows, p_stride] f32.</summary>
    public int SharedBytes => Bytes(SharedKv);

    private int Bytes(bool sharedKv)
        => 16 * (QFloat4s + (sharedKv ? Math.Max(KFloat4s, VFloat4s) : KFloat4s + VFloat4s) + PFloat4s) + 16;

    /// <summary>
    /// The tiling for <paramref name="rows"/> query rows and K/V tiles of <paramref name="tileKv"/> keys:
    /// 4 × 4 micro-tiles where the shape allows (8 FMAs per shared load in the score loop), key lanes a power of two
    /// dividing tile_kv and head_dim / 4 (so O's columns split evenly), fewer rows per thread when the rows would not
    /// fill one warp or O would pass <see cref="OutputAccumulatorBudget"/>. K and V get their own buffers when everything fits in 48 KB, else V reuses K's.
    /// </summary>
    /// <summary>
    /// Most O accumulators (floats) a thread holds. On the H200 (2026-11-26, run 3) head_dim 128 with 4 × 4 micro-tiles,
    /// i.e. 64 accumulators per thread in 64-thread groups, ran the causal prefill at 4.0 TFLOP/s against 10.8 at head_dim
    /// 64 (32 accumulators): with the next tile's K/V also in registers, few warps fit an SM. Past the budget a
    /// thread takes fewer rows and the group more threads.
    /// </summary>
    public const int OutputAccumulatorBudget = 32;

    public static PrefillTiling For(int headDim, int tileKv, int rows)
    {
        int d4 = headDim / 4;
        int keyLanes = 1;
        while (keyLanes * 2 <= Math.Max(1, tileKv / 4) && keyLanes * 2 <= 32 && tileKv % (keyLanes * 2) == 0 && d4 % (keyLanes * 2) == 0)
            keyLanes *= 2;
        int rowsPerThread = 4;
        while (rowsPerThread > 1 && (CeilDiv(rows, rowsPerThread) * keyLanes < 32
                                     || rowsPerThread * (d4 / keyLanes) * 4 > OutputAccumulatorBudget))
            rowsPerThread /= 2;
        int groupsPerWarp = 32 / keyLanes;
        int rowGroups = CeilDiv(CeilDiv(rows, rowsPerThread), groupsPerWarp) * groupsPerWarp;
        var separate = new PrefillTiling(headDim, tileKv, rows, rowsPerThread, keyLanes, rowGroups, SharedKv: false);
        return separate.Bytes(sharedKv: false) <= SharedMemoryBudget.MaxBytesPerGroup ? separate : separate with { SharedKv = true };
    }

    private static int CeilDiv(int a, int b) => (a + b - 1) / b;
}
