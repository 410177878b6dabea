using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using SpecializedInference.Benchmarks.Kernels;
using SpecializedInference.Kernels;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>
/// Specialized versus generic attention kernels (paged KV write, flash prefill, flash decode, and the
/// materialized and MHA-expanded variants) over the report's cases: the presets at 1k/4k/16k on a GPU, the
/// tiny configs on the CPU accelerator. Every invocation ends with <c>accelerator.Synchronize()</c>; the first
/// (compiling) call happens in the setup and is shown in its own column.
/// </summary>
public class AttentionKernelBenchmarks
{
    private AttentionWorkload? _workload;
    private IAttentionKernels? _kernels;
    private IAttentionPlan? _plan;

    /// <summary>The report's kernel and variant cases; <c>SI_BENCH_MAX_CASES</c> keeps only the first n (smoke runs).</summary>
    public static IEnumerable<AttentionCase> Cases()
    {
        var all = BdnShared.Plan.KernelCases.Concat(BdnShared.Plan.VariantCases);
        return int.TryParse(Environment.GetEnvironmentVariable("SI_BENCH_MAX_CASES"), out int n) && n > 0 ? all.Take(n) : all;
    }

    [ParamsSource(nameof(Cases))]
    public AttentionCase Case { get; set; } = null!;

    [GlobalSetup(Target = nameof(Specialized))]
    public void SetupSpecialized() => Setup(specialized: true);

    [GlobalSetup(Target = nameof(Generic))]
    public void SetupGeneric() => Setup(specialized: false);

    private void Setup(bool specialized)
    {
        var accelerator = BdnShared.Device.Accelerator;
        _ = BdnShared.CopyGBps; // measured before any kernel case, in this run
        _workload = new AttentionWorkload(accelerator, new DeviceFill(accelerator), Case, BdnShared.Attention.Seed);
        _kernels = BdnShared.Attention.Kernels(Case, specialized, out _);
        _plan = _kernels.Plan(_workload.Batch);
        long start = Stopwatch.GetTimestamp();
        _workload.Run(_kernels, _plan);
        accelerator.Synchronize();
        BdnShared.FirstCallSeconds[BdnColumns.Key(specialized, Case)] = Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    [Benchmark(Baseline = true)]
    public void Generic() => RunOnce();

    [Benchmark]
    public void Specialized() => RunOnce();

    private void RunOnce()
    {
        _workload!.Run(_kernels!, _plan!);
        BdnShared.Device.Accelerator.Synchronize();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _plan?.Dispose();
        _workload?.Dispose();
        _plan = null;
        _workload = null;
        _kernels = null; // owned by BdnShared.Attention
    }
}
