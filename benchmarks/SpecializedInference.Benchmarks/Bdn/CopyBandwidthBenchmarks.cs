using BenchmarkDotNet.Attributes;
using SpecializedInference.Benchmarks.Kernels;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>The device's 16-byte copy bandwidth, the ceiling the kernel benchmarks' "% copy" column refers to.</summary>
public class CopyBandwidthBenchmarks
{
    private CopyBandwidth? _copy;

    [GlobalSetup]
    public void Setup()
    {
        var accelerator = BdnShared.Device.Accelerator;
        _copy = new CopyBandwidth(accelerator, BdnShared.Plan.CopyBytes);
        _copy.Launch();
        accelerator.Synchronize();
    }

    [Benchmark(Description = "16-byte copy")]
    public void Copy()
    {
        _copy!.Launch();
        BdnShared.Device.Accelerator.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _copy?.Verify();
        _copy?.Dispose();
        _copy = null;
    }
}
