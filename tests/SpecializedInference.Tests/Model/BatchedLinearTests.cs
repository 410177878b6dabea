using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Runtime;
using Half = System.Half;
using SpecializedInference.Tests.Ordering;
using SpecializedInference.Kernels.Reference;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// The batched projection (<see cref="BatchedKernelBodies"/>) against a float64 reference on the CPU accelerator:
/// fresh random inputs (seed in every failure message), outputs poisoned (NaN) before a store, f16 and f32 weights,
/// store and accumulate epilogues, token counts around both group sizes (8, 16), rows that leave a warp's 16 rows
/// partly empty, columns whose chunks leave the k-lanes' last step partial, and every k-split.
/// </summary>
[CiSeconds(5)]
public sealed class BatchedLinearTests(AcceleratorFixture fixture) : IClassFixture<AcceleratorFixture>
{
    private Accelerator Acc => fixture.Accelerator;

    /// <summary>5, 7, 8, 9 around the 8-token group; 15, 16, 17, 33 = 2·16 + 1 around the 16-token group; 64 the largest batch.</summary>
    private static readonly int[] TokenCounts = { 5, 7, 8, 9, 15, 16, 17, 33, 64 };

    private static readonly int[] Splits = { 1, 2, 4, 8 };

    private static readonly int[] RowCounts = { 5, 20, 37 };

    public static TheoryData<WeightDtype, bool, int, int, int> Cases()
    {
        // Each token count with both dtypes; the epilogue, the row count and the k-split rotate so that each
        // split meets both group sizes and both epilogues, and several row groups meet one and several token
        // groups (the CPU accelerator costs about a second per 256-thread group: 36 groups in all).
        var data = new TheoryData<WeightDtype, bool, int, int, int>();
        for (int j = 0; j < TokenCounts.Length; j++)
            for (int d = 0; d < 2; d++)
                data.Add(d == 0 ? WeightDtype.F32 : WeightDtype.F16, (j + d) % 2 == 1, RowCounts[(j + 2) % RowCounts.Length],
                    TokenCounts[j], Splits[(j + 2 * d) % Splits.Length]);
        return data;
    }

    /// <summary>Columns with 2·8·kSplit + 3 chunks: every lane takes two or three steps (the prefetch runs), some one fewer.</summary>
    private static int ColsFor(WeightDtype dtype, int kSplit) =>
        DeviceMatrix.ElementsPerChunk(dtype) * (2 * BatchedKernelBodies.KLanes * kSplit + 3);

    [Theory]
    [MemberData(nameof(Cases))]
    public void BatchedMatchesFloat64(WeightDtype dtype, bool accumulate, int rows, int tokens, int kSplit)
    {
        int cols = ColsFor(dtype, kSplit);
        Check(dtype, accumulate, rows, cols, tokens, $"k-split {kSplit}",
            (kernels, x, matrix, y) => kernels.LinearBatched(x, tokens, matrix, y, accumulate, kSplit));
    }

    [Theory]
    [InlineData(WeightDtype.F16, 5)]
    [InlineData(WeightDtype.F16, 16)]
    [InlineData(WeightDtype.F32, 64)]
    public void WarpScheduleRunsBatchedForDecodeBatches(WeightDtype dtype, int tokens)
    {
        // Through Linear, the warp schedule's dispatch (and its own k-split choice).
        Check(dtype, accumulate: true, rows: 37, cols: 96, tokens, "Linear",
            (kernels, x, matrix, y) => kernels.Linear(x, tokens, matrix, y, accumulate: true));
    }

    [Fact]
    public void RejectsAnUnsupportedSplit()
    {
        var kernels = new DenseKernels(Acc, DenseSchedule.Warp);
        using var matrix = WeightUpload.Matrix(Acc, new float[16 * 8], 16, 8, WeightDtype.F32);
        using var x = Acc.Allocate1D<float>(8 * 8);
        using var y = Acc.Allocate1D<float>(8 * 16);
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => kernels.LinearBatched(x.View, 8, matrix, y.View, false, 3));
        Assert.Contains("kSplit must be 1, 2, 4 or 8", e.Message);
    }

    private void Check(WeightDtype dtype, bool accumulate, int rows, int cols, int tokens, string what,
        Action<DenseKernels, ArrayView<float>, DeviceMatrix, ArrayView<float>> run)
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = Values(rows * cols);
        var x = Values(tokens * cols);
        var y0 = accumulate ? Values(tokens * rows) : Enumerable.Repeat(float.NaN, tokens * rows).ToArray();

        var expected = DenseReference.Linear(w, x, accumulate ? y0 : null, tokens, rows, cols, dtype);

        var kernels = new DenseKernels(Acc, DenseSchedule.Warp);
        using var matrix = WeightUpload.Matrix(Acc, w, rows, cols, dtype);
        using var xb = Acc.Allocate1D(x);
        using var yb = Acc.Allocate1D(y0);
        run(kernels, xb.View, matrix, yb.View);
        var actual = yb.GetAsArray1D();

        double tolerance = 1e-5 * Math.Max(1, expected.Max(Math.Abs));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance,
                $"seed {seed}, {dtype}, {what}, {rows} rows × {cols} cols, {tokens} tokens, accumulate {accumulate}: " +
                $"y[token {i / rows}, row {i % rows}] expected {expected[i]}, got {actual[i]} (tolerance {tolerance})");
    }
}
