using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>
/// The BenchmarkDotNet mode. Benchmarks run in this process (<see cref="InProcessEmitToolchain"/>): no project is
/// rebuilt, so the published app runs where no SDK is installed, and the accelerator and compiled kernels are
/// shared by every case. The device comes from <c>SI_BENCH_DEVICE</c> (cuda, cpu, auto).
/// </summary>
public static class BdnEntry
{
    public static int Run(string[] args)
    {
        var summaries = BenchmarkSwitcher.FromAssembly(typeof(BdnEntry).Assembly).Run(args, Config());
        return summaries.Any(s => s.HasCriticalValidationErrors || s.Reports.Any(r => !r.Success)) ? 1 : 0;
    }

    /// <summary>
    /// On a GPU a short run (3 warm-ups, 10 iterations, BenchmarkDotNet picks invocations per iteration).
    /// The CPU accelerator takes up to a second per kernel call, so there every iteration is one call
    /// (monitoring strategy, 1 warm-up, 3 iterations). A job given on the command line (--job) replaces these.
    /// </summary>
    public static IConfig Config()
    {
        var cpu = Environment.GetEnvironmentVariable("SI_BENCH_DEVICE")?.Trim().ToLowerInvariant() is not ("cuda" or "gpu") && !BdnShared.IsCuda;
        var job = cpu
            ? Job.Dry.WithStrategy(RunStrategy.Monitoring).WithWarmupCount(1).WithIterationCount(3).WithId("cpu-accelerator")
            : Job.Default.WithWarmupCount(3).WithIterationCount(10).WithLaunchCount(1).WithId("gpu");
        return DefaultConfig.Instance
            .AddJob(job.WithToolchain(InProcessEmitToolchain.Instance).AsDefault())
            .AddColumn(BdnColumns.All)
            .WithSummaryStyle(SummaryStyle.Default.WithMaxParameterColumnWidth(90))
            .WithOptions(ConfigOptions.JoinSummary | ConfigOptions.DisableLogFile);
    }
}
