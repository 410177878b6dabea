using SpecializedInference.Generators.Models;

namespace SpecializedInference.Generators.Tests;

/// <summary>The register tiling of the generated prefill: the shapes the benchmarks run, and invariants over every tile the parser accepts.</summary>
public class PrefillTilingTests
{
    [Fact]
    public void HeadDim128GetsTwoByFourMicroTilesWithVInKBuffer()
    {
        // Llama3_8B / Llama2_13B: 32 rows x 32 keys. 4 x 4 micro-tiles would give each thread 64 O accumulators, past
        // the budget: 2 rows x 4 keys per thread, 128 threads. K [32 x 128] f32, V [32 x 132] and Q [32 x 128] do not
        // all fit 48 KB, so V reuses K's buffer.
        var p = PrefillTiling.For(headDim: 128, tileKv: 32, rows: 32);
        Assert.Equal((128, 2, 4, 8, 4), (p.Threads, p.RowsPerThread, p.KeysPerThread, p.KeyLanes, p.ColumnsPerThread));
        Assert.Equal(32, p.PaddedRows);
        Assert.True(p.SharedKv);
        Assert.Equal(16 * (1024 + 1056 + 320) + 16, p.SharedBytes);
    }

    [Fact]
    public void HeadDim64KeepsKAndVApart()
    {
        var p = PrefillTiling.For(headDim: 64, tileKv: 32, rows: 32);
        Assert.Equal((64, 4, 4, 8, 2), (p.Threads, p.RowsPerThread, p.KeysPerThread, p.KeyLanes, p.ColumnsPerThread));
        Assert.False(p.SharedKv);
        Assert.True(p.SharedBytes <= SharedMemoryBudget.MaxBytesPerGroup);
    }

    [Fact]
    public void FewRowsOrKeysStillFillAWarp()
    {
        // 6 rows (2 positions x 3 heads), 8-key tiles at head_dim 16 (configs/odd-tiles.json): 2 key lanes of 4 keys,
        // one row per thread, 16 row groups of which 10 are padding.
        var p = PrefillTiling.For(headDim: 16, tileKv: 8, rows: 6);
        Assert.Equal((32, 1, 4, 2, 2), (p.Threads, p.RowsPerThread, p.KeysPerThread, p.KeyLanes, p.ColumnsPerThread));
        Assert.Equal(16, p.PaddedRows);
        Assert.Equal(2, p.UnitLanes);
    }

    [Fact]
    public void EveryAcceptedTileIsConsistent()
    {
        for (int headDim = 8; headDim <= 256; headDim += 8)
            foreach (int tileKv in new[] { 8, 16, 32 })
                for (int rows = 1; rows <= 64; rows++)
                {
                    var p = PrefillTiling.For(headDim, tileKv, rows);
                    string what = $"head_dim {headDim}, tile_kv {tileKv}, rows {rows}: {p}";
                    Assert.True(p.Threads % 32 == 0 && p.Threads <= 1024, what);                  // whole warps
                    Assert.True(32 % p.KeyLanes == 0, what);                                        // a row's lanes lie in one warp
                    Assert.Equal(tileKv, p.KeyLanes * p.KeysPerThread);
                    Assert.Equal(headDim / 4, p.KeyLanes * p.ColumnsPerThread);
                    Assert.True(p.PaddedRows >= rows && p.PaddedRows - rows < p.RowsPerThread * 32 / p.KeyLanes, what);
                    Assert.True(p.RowsPerThread * p.ColumnsPerThread * 4 <= PrefillTiling.OutputAccumulatorBudget || p.RowsPerThread == 1, what);
                    Assert.True(p.PStride % 4 == 0 && p.PStride >= tileKv, what);
                    Assert.True(p.Units % p.UnitLanes == 0 && p.D4 % p.QueryLanes == 0, what);
                    Assert.Equal(p.SharedBytes, SharedMemoryBudget.PrefillBytes(headDim, tileKv, rows));
                    if (!p.SharedKv) Assert.True(p.SharedBytes <= SharedMemoryBudget.MaxBytesPerGroup, what);
                }
    }
}
