using SpecializedInference.Kernels;

namespace SpecializedInference.Tests.Model;

/// <summary>Float64 references of the dense kernels, plain loops.</summary>
internal static class DenseReference
{
    /// <summary>
    /// y[t, n] = y0[t, n] (when accumulating) + Σ_k x[t, k] · W[n, k], with the weights as the device holds them
    /// (f16-rounded for f16).
    /// </summary>
    /// <param name="w">[rows, cols]</param>
    /// <param name="x">[tokens, cols]</param>
    /// <param name="y0">[tokens, rows] what the output held before (null: a store)</param>
    public static double[] Linear(float[] w, float[] x, float[]? y0, int tokens, int rows, int cols, WeightDtype dtype)
    {
        var wRef = dtype == WeightDtype.F16 ? w.Select(v => (double)(float)(Half)v).ToArray() : w.Select(v => (double)v).ToArray();
        var expected = new double[tokens * rows];
        for (int t = 0; t < tokens; t++)
            for (int n = 0; n < rows; n++)
            {
                double acc = y0 is null ? 0 : y0[t * rows + n];
                for (int k = 0; k < cols; k++) acc += x[t * cols + k] * wRef[n * cols + k];
                expected[t * rows + n] = acc;
            }

        return expected;
    }
}
