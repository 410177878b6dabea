using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Reference;
using SpecializedInference.Runtime;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>One projection shape: <c>y = x · Wᵀ</c> with W [<paramref name="Rows"/>, <paramref name="Cols"/>] in f16 and
/// <paramref name="Tokens"/> rows of x.</summary>
public sealed record DenseCase(string Matrix, int Rows, int Cols, int Tokens)
{
    public override string ToString() => $"dense {Matrix} {Rows}x{Cols}, {Tokens} tokens";

    /// <summary>Bytes of weights one call reads once.</summary>
    public double WeightBytes => 2.0 * Rows * Cols;

    public double Flops => 2.0 * Rows * Cols * Tokens;
}

/// <summary>The projection on CUDA cores (the default kernels) and on tensor cores (<see cref="TensorCoreBodies"/>), with
/// how far apart their outputs are (the tensor-core path rounds the activations to f16).</summary>
public sealed record DenseComparison(DenseCase Case, Timing CudaCores, Timing TensorCores, double Difference)
{
    public double GBps(Timing t) => Case.WeightBytes / t.MedianSeconds / 1e9;

    public double TFlops(Timing t) => Case.Flops / t.MedianSeconds / 1e12;

    public double Speedup => CudaCores.MedianSeconds / TensorCores.MedianSeconds;
}

/// <summary>
/// Times one projection both ways on the warp schedule, on random weights and activations generated on the device.
/// A tensor-core result more than 3e-2 of the largest output away from the CUDA-core one (the f16 tests' tolerance)
/// fails the case instead of reporting a time: a wrong kernel must not look fast.
/// </summary>
public static class DenseProjectionBench
{
    public const double Tolerance = 3e-2;

    public static DenseComparison Run(Accelerator accelerator, DenseCase c, TimingOptions timing)
    {
        var random = DeviceRandom.For(accelerator);
        using var weights = accelerator.Allocate1D<Bits128>(DeviceMatrix.ChunksFor(c.Rows, c.Cols, WeightDtype.F16));
        random.Halves(((ArrayView<Bits128>)weights.View).Cast<global::ILGPU.Half>(), 11, 0.05f);
        var matrix = new DeviceMatrix(weights, c.Rows, c.Cols, WeightDtype.F16);
        using var x = accelerator.Allocate1D<float>((long)c.Tokens * c.Cols);   // [tokens, cols]
        random.Floats(x.View, 12);
        using var cudaOut = accelerator.Allocate1D<float>((long)c.Tokens * c.Rows);   // [tokens, rows]
        using var tensorOut = accelerator.Allocate1D<float>((long)c.Tokens * c.Rows);
        var cuda = new DenseKernels(accelerator, DenseSchedule.Warp);
        var tensor = new DenseKernels(accelerator, DenseSchedule.Warp, tensorCores: true);

        var cudaTime = KernelTimer.Measure(accelerator, () => cuda.Linear(x.View, c.Tokens, matrix, cudaOut.View, accumulate: false), timing);
        var tensorTime = KernelTimer.Measure(accelerator, () => tensor.Linear(x.View, c.Tokens, matrix, tensorOut.View, accumulate: false), timing);
        accelerator.Synchronize();
        double difference = DenseReference.RelativeError(cudaOut.GetAsArray1D().Select(v => (double)v).ToArray(), tensorOut.GetAsArray1D());
        if (!(difference <= Tolerance))
            throw new InvalidOperationException($"{c}: the tensor-core output is {difference:E2} of the largest output away from the CUDA-core one (allowed {Tolerance:E0})");
        return new DenseComparison(c, cudaTime, tensorTime, difference);
    }
}
