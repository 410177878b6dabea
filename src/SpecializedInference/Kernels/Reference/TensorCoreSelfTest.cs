using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels.Dense;
using Half = System.Half;

namespace SpecializedInference.Kernels.Reference;

/// <summary>
/// Checks of the tensor-core path against float64: one <see cref="TensorCores.Mma16816"/> with its fragments laid out
/// as the PTX ISA documents them, and the projection (<see cref="TensorCoreBodies"/>) at small random shapes. On CUDA
/// they check the hardware instruction and the fragment layout the kernels assume; on the CPU accelerator the
/// shuffle form that stands in for it. What <c>si selftest</c> runs, and the tests.
/// </summary>
public static class TensorCoreSelfTest
{
    /// <summary>Max abs error over the largest |expected|: f32 sums of f16 products.</summary>
    public const double Tolerance = 1e-5;

    /// <summary>One warp: D = A · B + C with A [16, 16], B [16, 8], C and D [16, 8], row-major f32 (A and B hold f16 values).</summary>
    public static void MmaKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, ArrayView<float> d)
    {
        int lane = Warp.LaneIdx;
        int g = lane >> 2, t = lane & 3;
        // A: rows g and g + 8, columns 2t, 2t+1 and 2t+8, 2t+9; B: rows 2t, 2t+1 and 2t+8, 2t+9 of column g.
        uint a0 = TensorCores.PackHalf2(a[g * 16 + 2 * t], a[g * 16 + 2 * t + 1]);
        uint a1 = TensorCores.PackHalf2(a[(g + 8) * 16 + 2 * t], a[(g + 8) * 16 + 2 * t + 1]);
        uint a2 = TensorCores.PackHalf2(a[g * 16 + 2 * t + 8], a[g * 16 + 2 * t + 9]);
        uint a3 = TensorCores.PackHalf2(a[(g + 8) * 16 + 2 * t + 8], a[(g + 8) * 16 + 2 * t + 9]);
        uint b0 = TensorCores.PackHalf2(b[2 * t * 8 + g], b[(2 * t + 1) * 8 + g]);
        uint b1 = TensorCores.PackHalf2(b[(2 * t + 8) * 8 + g], b[(2 * t + 9) * 8 + g]);
        var tile = new MmaTile
        {
            C0 = c[g * 8 + 2 * t],
            C1 = c[g * 8 + 2 * t + 1],
            C2 = c[(g + 8) * 8 + 2 * t],
            C3 = c[(g + 8) * 8 + 2 * t + 1],
        };
        TensorCores.Mma16816(ref tile, a0, a1, a2, a3, b0, b1);
        d[g * 8 + 2 * t] = tile.C0;
        d[g * 8 + 2 * t + 1] = tile.C1;
        d[(g + 8) * 8 + 2 * t] = tile.C2;
        d[(g + 8) * 8 + 2 * t + 1] = tile.C3;
    }

    /// <summary>Runs <see cref="MmaKernel"/> once on random f16 values; returns the error over the largest |expected|.</summary>
    public static double Mma(Accelerator accelerator, Random rng)
    {
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(Half)(rng.NextDouble() * 4 - 2)).ToArray();
        var a = Values(256);
        var b = Values(128);
        var c = Values(128);
        var expected = new double[128];
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++)
            {
                double sum = c[m * 8 + n];
                for (int k = 0; k < 16; k++) sum += (double)a[m * 16 + k] * b[k * 8 + n];
                expected[m * 8 + n] = sum;
            }

        using var da = accelerator.Allocate1D(a);
        using var db = accelerator.Allocate1D(b);
        using var dc = accelerator.Allocate1D(c);
        using var dd = accelerator.Allocate1D(Enumerable.Repeat(float.NaN, 128).ToArray());
        var kernel = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>>(MmaKernel);
        kernel(new KernelConfig(1, 32), da.View, db.View, dc.View, dd.View);
        return DenseReference.RelativeError(expected, dd.GetAsArray1D());
    }

    /// <summary>One tensor-core projection y (+)= f16(x) · Wᵀ on random values against float64; returns the error over the
    /// largest |expected|.</summary>
    /// <param name="kSplit">groups per tile splitting the columns; null: the kernels' own choice</param>
    public static double Linear(Accelerator accelerator, Random rng, int rows, int cols, int tokens, bool accumulate, int? kSplit = null)
    {
        float[] Values(int n) => Enumerable.Range(0, n).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
        var w = Values(rows * cols).Select(v => (float)(Half)v).ToArray();   // as stored in f16
        var x = Values(tokens * cols);
        var y0 = accumulate ? Values(tokens * rows) : Enumerable.Repeat(float.NaN, tokens * rows).ToArray();
        // x rounded to f16, as the kernel feeds it to the mma.
        var expected = DenseReference.Linear(DenseReference.AsStored(w, WeightDtype.F16), DenseReference.AsStored(x, WeightDtype.F16),
            accumulate ? y0 : null, tokens, rows, cols);

        var kernels = new DenseKernels(accelerator, DenseSchedule.Warp, tensorCores: true);
        using var matrix = Runtime.WeightUpload.Matrix(accelerator, w, rows, cols, WeightDtype.F16);
        using var dx = accelerator.Allocate1D(x);
        using var dy = accelerator.Allocate1D(y0);
        if (kSplit is int split) kernels.LinearMma(dx.View, tokens, matrix, dy.View, accumulate, split);
        else kernels.Linear(dx.View, tokens, matrix, dy.View, accumulate);
        return DenseReference.RelativeError(expected, dy.GetAsArray1D());
    }

    /// <summary>What <c>si selftest</c> prints: the instruction, then a projection that crosses every tile edge.</summary>
    public static IReadOnlyList<SelfTestResult> Run(Accelerator accelerator, int seed)
    {
        var rng = new Random(seed);
        var results = new List<SelfTestResult>();
        var clock = Stopwatch.StartNew();
        double mma = Mma(accelerator, rng);
        results.Add(Result("mma", "m16n8k16 f16 -> f32", mma, clock.Elapsed));
        clock.Restart();
        double linear = Linear(accelerator, rng, 67, 96, 70, accumulate: true);
        results.Add(Result("linear", "67 rows x 96 cols, 70 tokens, y +=", linear, clock.Elapsed));
        clock.Restart();
        double split = Linear(accelerator, rng, 67, 256, 70, accumulate: false, kSplit: 3);
        results.Add(Result("linear", "67 x 256, 70 tokens, 3-way column split", split, clock.Elapsed));
        return results;
    }

    private static SelfTestResult Result(string kernel, string detail, double error, TimeSpan elapsed) =>
        new("tensor-cores", kernel, detail, new Comparison(error, error, -1), error <= Tolerance, elapsed, $"max err {error:E2} x largest |expected|");

}
