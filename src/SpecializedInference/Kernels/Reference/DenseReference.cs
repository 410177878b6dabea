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
    public static double[] RmsNorm(float[] x, int[] xRows, float[] g, int cols, double eps) =>
        RmsNorm(x.Select(v => (double)v).ToArray(), xRows, g, cols, eps);

    /// <summary>h[r] = x[xRows[r]] / sqrt(mean(x²) + eps) ∘ g, on float64 rows (a reference's own output).</summary>
    public static double[] RmsNorm(double[] x, int[] xRows, float[] g, int cols, double eps)
    {
        var h = new double[xRows.Length * cols];
        for (int r = 0; r < xRows.Length; r++)
        {
            var xr = x.AsSpan(xRows[r] * cols, cols);
            double ms = 0;
            foreach (var v in xr) ms += v * v;
            double scale = 1 / Math.Sqrt(ms / cols + eps);
            for (int k = 0; k < cols; k++) h[r * cols + k] = xr[k] * scale * g[k];
        }

        return h;
    }

    /// <summary>a[t, j] = silu(gate[t, j]) · up[t, j], gate | up side by side in each row.</summary>
    /// <param name="gateUp">[tokens, 2 · intermediate]</param>
    /// <returns>[tokens, intermediate]</returns>
    public static double[] SwiGlu(double[] gateUp, int tokens, int intermediate)
    {
        var a = new double[tokens * intermediate];
        for (int t = 0; t < tokens; t++)
            for (int j = 0; j < intermediate; j++)
            {
                double gate = gateUp[t * 2 * intermediate + j], up = gateUp[t * 2 * intermediate + intermediate + j];
                a[t * intermediate + j] = gate / (1 + Math.Exp(-gate)) * up;
            }

        return a;
    }

    /// <summary>
    /// q, k, v from the fused projection's rows: Hugging Face's x · cos + rotate_half(x) · sin on each q and k head
    /// (rotate_half(x) = cat(−x₂, x₁)), with the angles' cos and sin from the tables at each token's position; v as is.
    /// </summary>
    /// <param name="qkv">[tokens, (heads + 2 kv_heads) · head_dim]</param>
    /// <param name="cos">[max_positions, head_dim / 2]</param>
    /// <param name="sin">[max_positions, head_dim / 2]</param>
    /// <returns>q [tokens, heads, head_dim], k and v [tokens, kv_heads, head_dim]</returns>
    public static (double[] Q, double[] K, double[] V) RopeSplit(double[] qkv, int[] positions, float[] cos, float[] sin, int heads, int kvHeads, int headDim)
    {
        int tokens = positions.Length, half = headDim / 2, width = (heads + 2 * kvHeads) * headDim;
        var q = new double[tokens * heads * headDim];
        var k = new double[tokens * kvHeads * headDim];
        var v = new double[tokens * kvHeads * headDim];
        for (int t = 0; t < tokens; t++)
            for (int h = 0; h < heads + 2 * kvHeads; h++)
            {
                var head = qkv.AsSpan(t * width + h * headDim, headDim);
                var o = new double[headDim];
                for (int i = 0; i < headDim; i++)
                {
                    int f = positions[t] * half + i % half;
                    double rot = i < half ? -head[i + half] : head[i - half];
                    o[i] = h < heads + kvHeads ? head[i] * cos[f] + rot * sin[f] : head[i];
                }

                if (h < heads) o.CopyTo(q, (t * heads + h) * headDim);
                else if (h < heads + kvHeads) o.CopyTo(k, (t * kvHeads + h - heads) * headDim);
                else o.CopyTo(v, (t * kvHeads + h - heads - kvHeads) * headDim);
            }

        return (q, k, v);
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
