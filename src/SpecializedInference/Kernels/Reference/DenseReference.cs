namespace SpecializedInference.Kernels.Reference;

/// <summary>Float64 references of the dense kernels, plain loops (the tests' and <c>si selftest --set dense</c>'s).</summary>
public static class DenseReference
{
    /// <summary>
    /// y[t, n] = y0[t, n] (when accumulating) + Σ_k x[t, k] · W[n, k], with the weights as the device holds them
    /// (f16-rounded for f16).
    /// </summary>
    /// <param name="w">[rows, cols]</param>
    /// <param name="x">[tokens, cols]</param>
    /// <param name="y0">[tokens, rows] what the output held before (null: a store)</param>
    public static double[] Linear(float[] w, float[] x, float[]? y0, int tokens, int rows, int cols, WeightDtype dtype)
        => Linear(AsStored(w, dtype), x.Select(v => (double)v).ToArray(), y0, tokens, rows, cols);

    /// <summary>y[t, n] = y0[t, n] (when accumulating) + Σ_k x[t, k] · W[n, k] on float64 operands.</summary>
    /// <param name="w">[rows, cols]</param>
    /// <param name="x">[tokens, cols]</param>
    /// <param name="y0">[tokens, rows] what the output held before (null: a store)</param>
    public static double[] Linear(double[] w, double[] x, float[]? y0, int tokens, int rows, int cols)
    {
        var expected = new double[tokens * rows];
        for (int t = 0; t < tokens; t++)
            for (int n = 0; n < rows; n++)
            {
                double acc = y0 is null ? 0 : y0[t * rows + n];
                for (int k = 0; k < cols; k++) acc += x[t * cols + k] * w[n * cols + k];
                expected[t * rows + n] = acc;
            }

        return expected;
    }

    /// <summary>Weights as the device holds them: f16-rounded for f16.</summary>
    public static double[] AsStored(float[] w, WeightDtype dtype) =>
        dtype == WeightDtype.F16 ? w.Select(v => (double)(float)(Half)v).ToArray() : w.Select(v => (double)v).ToArray();

    /// <summary>h[r] = x[xRows[r]] / sqrt(mean(x²) + eps) ∘ g.</summary>
    /// <param name="x">[*, cols]</param>
    /// <param name="xRows">[rows] which row of x each output row normalizes</param>
    /// <param name="g">[cols] the norm weight</param>
    /// <returns>[rows, cols]</returns>
    public static double[] RmsNorm(float[] x, int[] xRows, float[] g, int cols, double eps)
    {
        var h = new double[xRows.Length * cols];
        for (int r = 0; r < xRows.Length; r++)
        {
            var xr = x.AsSpan(xRows[r] * cols, cols);
            double ms = 0;
            foreach (var v in xr) ms += (double)v * v;
            double scale = 1 / Math.Sqrt(ms / cols + eps);
            for (int k = 0; k < cols; k++) h[r * cols + k] = xr[k] * scale * g[k];
        }

        return h;
    }

    /// <summary>The largest |actual − expected| over the largest |expected| (NaN when any output is NaN): a self-test's
    /// error, where one bound fits projections of any size.</summary>
    public static double RelativeError(double[] expected, float[] actual)
    {
        double scale = Math.Max(1e-30, expected.Max(Math.Abs)), worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(expected[i] - actual[i]);
            if (double.IsNaN(error)) return double.NaN;
            worst = Math.Max(worst, error);
        }

        return worst / scale;
    }
}
