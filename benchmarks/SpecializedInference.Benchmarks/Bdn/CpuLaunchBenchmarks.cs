using BenchmarkDotNet.Attributes;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Accelerators;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>
/// What one small kernel launch costs on ILGPU's CPU accelerator, by the largest group that accelerator ran before.
/// The simulator starts one OS thread per thread of the largest group so far and keeps them: every later launch
/// wakes all of them and passes them through two barriers, however few threads the launch itself uses. A model
/// whose attention runs 128-thread groups pays that on every kernel, which is why the serial dense schedule fuses
/// the norm → projection → element-wise steps of a decode. Each case gets its own CPU accelerator (whatever
/// <c>SI_BENCH_DEVICE</c> says: there is no such effect on CUDA).
/// <code>dotnet run -c Release --project benchmarks/SpecializedInference.Benchmarks -- --filter '*CpuLaunch*'</code>
/// </summary>
public class CpuLaunchBenchmarks
{
    private const int Launches = 20;
    private const int LaunchThreads = 64;

    private AcceleratorHandle? _handle;
    private MemoryBuffer1D<float, Stride1D.Dense>? _buffer; // [1024]
    private Action<Index1D, ArrayView<float>>? _small;

    /// <summary>Threads of the one group launched before the measured launches.</summary>
    [Params(32, 128, 256, 1024)]
    public int LargestGroup { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _handle = AcceleratorFactory.CreateCpu();
        var accelerator = _handle.Accelerator;
        _buffer = accelerator.Allocate1D<float>(1024);
        var group = accelerator.LoadStreamKernel<ArrayView<float>>(OneGroup);
        group(new KernelConfig(1, LargestGroup), _buffer.View);
        _small = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>>(Fill);
        _small(LaunchThreads, _buffer.View);
        accelerator.Synchronize();
    }

    [Benchmark(OperationsPerInvoke = Launches, Description = "64-thread launch on the CPU accelerator")]
    public void Launch()
    {
        for (int i = 0; i < Launches; i++)
            _small!(LaunchThreads, _buffer!.View);
        _handle!.Accelerator.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _buffer?.Dispose();
        _handle?.Dispose();
        _buffer = null;
        _handle = null;
    }

    /// <param name="y">[1024] f32</param>
    private static void OneGroup(ArrayView<float> y) => y[Group.IdxX] = Group.IdxX;

    /// <param name="y">[1024] f32</param>
    private static void Fill(Index1D i, ArrayView<float> y) => y[i] = i;
}
