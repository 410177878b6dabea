using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using SpecializedInference.Benchmarks.Bdn;
using SpecializedInference.Benchmarks.EndToEnd;
using SpecializedInference.Benchmarks.Report;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Benchmarks;

/// <summary>
/// Keeps the benchmark suite from rotting: runs it on the CPU accelerator with the quick (tiny) shapes. These are
/// not timing gates: they check that every section runs, its kernels agree with each other and the report is written.
/// </summary>
// BenchmarkDotNet logs to Console.Out, which the CLI tests of the "Console" collection redirect.
[Collection("Console")]
[CiSeconds(25)]
public sealed class BenchmarkSuiteSmokeTests(ITestOutputHelper output)
{
    [Fact]
    public void QuickCpuReportRunsEverySection()
    {
        string outPath = Path.Combine(Path.GetTempPath(), $"si-bench-smoke-{Guid.NewGuid():N}.md");
        var log = new StringWriter();
        try
        {
            int rc = ReportRunner.Run(["--device", "cpu", "--quick", "--out", outPath], log);
            output.WriteLine(log.ToString());
            Assert.True(File.Exists(outPath), $"the report was not written to {outPath}");
            string report = File.ReadAllText(outPath);
            output.WriteLine(report);
            Assert.True(rc == 0, $"report exited with {rc}:\n{log}");
            Assert.DoesNotContain("## Failures", report);
            foreach (var section in new[] { "## Device copy bandwidth", "## Attention kernels: specialized versus generic",
                         "## Attention variants", "## Dense projections: CUDA cores versus tensor cores", "## Compile and first-call times",
                         "## End to end", "## Ablation: each toggle off alone" })
                Assert.Contains(section, report);
            Assert.Contains("| tiny | 64 × 256 | 16 |", report); // the dense case, both paths within tolerance of each other
            foreach (var toggle in new[] { "use_flash_attention", "use_gqa", "use_kv_cache", "use_batching" })
                Assert.Contains($"| {toggle} |", report);
            Assert.Contains("Command: `dotnet SpecializedInference.Benchmarks.dll report --device cpu --quick", report);
            Assert.Contains("| % floor |", report);
        }
        finally
        {
            File.Delete(outPath);
        }
    }

    [Fact]
    public void FloorShareIsTheWeightReadTimeOverTheStepTime()
    {
        // 4 sequences at 400 tok/s: a 10 ms step. 20 GB of weights at 4000 GB/s: a 5 ms floor, so 50%.
        var model = new EndToEndModel(SpecializedInference.Generated.gqa_tiny.Info);
        var result = new EndToEndResult(model, Batch: 4, PromptTokens: 8, DecodeTokens: 4, EngineToggles.AllOn,
            DecodeTokensPerSecond: 400, PrefillTokensPerSecond: 1000, TimeToFirstTokenP50: 0.1, TimeToFirstTokenMax: 0.1, InterTokenP50: 0.01,
            WallSeconds: 1, GeneratedTokens: 16, LoadSeconds: 1, WeightBytes: 21_000_000_000, DecodeWeightBytes: 20_000_000_000,
            WeightsSource: "test", AttentionKernels: "gqa_tiny");
        Assert.Equal(0.010, result.DecodeStepSeconds, 12);
        Assert.Equal(0.005, result.FloorSeconds(4000), 12);
        Assert.Equal(0.5, result.FractionOfFloor(4000), 12);
    }

    /// <summary>The launch-graph probe is CUDA's (driver-API graphs): without a CUDA device it says so and exits 2.</summary>
    [Fact]
    public void LaunchGraphProbeWithoutCudaSaysSo()
    {
        var log = new StringWriter();
        Assert.Equal(2, SpecializedInference.Benchmarks.Kernels.LaunchGraphProbe.Run(log));
        Assert.Contains("launch-graph: --device cuda: no usable CUDA device", log.ToString());
    }

    [Fact]
    public void ReportRejectsUnknownArgumentsWithUsage()
    {
        var log = new StringWriter();
        Assert.Equal(2, ReportRunner.Run(["--devcie", "cpu"], log));
        Assert.Contains("unknown argument '--devcie'", log.ToString());
        Assert.Contains("--device cuda|cpu|auto", log.ToString());
    }

    [Fact]
    public void MatvecDepthsPrefetchAndFusedLaunchAddABatchOneRowPerModelGreedyOnHostAndCudaCoresARowPerBatchStageTimesATimedRerun()
    {
        string outPath = Path.Combine(Path.GetTempPath(), $"si-bench-depths-{Guid.NewGuid():N}.md");
        var log = new StringWriter();
        try
        {
            int rc = ReportRunner.Run(["--device", "cpu", "--quick", "--sections", "e2e", "--matvec-depths", "8,4", "--greedy-on-host", "--cuda-cores", "--prefetch-weights", "rows+8,start:4", "--fused-matvec-launch", "2:88", "--decode-launches", "grid-synced-tails", "--stage-times", "--out", outPath], log);
            string report = File.Exists(outPath) ? File.ReadAllText(outPath) : "";
            Assert.True(rc == 0, $"report exited with {rc}:\n{log}");
            Assert.Contains("[matvec depth 8,4] | ", report);
            Assert.Single(report.Split('\n'), line => line.Contains("[matvec depth 8,4] |"));
            Assert.Single(report.Split('\n'), line => line.Contains("[L2 prefetch own rows + 8 MiB at end] |"));
            Assert.Single(report.Split('\n'), line => line.Contains("[L2 prefetch 4 MiB at start] |"));
            Assert.Single(report.Split('\n'), line => line.Contains("[fused matvec 2 warps, 88 registers] |"));
            // The grid-synced tails at the default depth and at every --matvec-depths.
            Assert.Equal(2, report.Split('\n').Count(line => line.Contains("[grid-synced-tails] |")));
            Assert.Single(report.Split('\n'), line => line.Contains("[matvec depth 8,4] [grid-synced-tails] |"));
            // As many [greedy on host] rows as the plan's model has default rows (one per batch).
            var modelRows = report.Split('\n').Where(line => line.StartsWith("| gqa_tiny")).ToList();
            int defaultRows = modelRows.Count(line => !line.Contains('['));
            Assert.True(defaultRows > 0, report);
            Assert.Equal(defaultRows, modelRows.Count(line => line.Contains(" [greedy on host] |")));
            Assert.Equal(defaultRows, modelRows.Count(line => line.Contains(" [CUDA cores] |")));
            // --stage-times: every batch-1 row run again with its stages timed, in a section of its own (not in the
            // end-to-end table), each stage of the step a row.
            int batchOneRows = modelRows.Count(line => line.Split('|')[4].Trim() == "1");
            Assert.True(batchOneRows >= 6, report);   // the depth, both prefetches, the fused launch and the grid-synced tails (twice) run at batch 1
            Assert.Contains("## Where a batch-1 decode step's device time goes", report);
            Assert.Equal(batchOneRows, report.Split('\n').Count(line => line.StartsWith("**gqa_tiny")));
            Assert.Equal(batchOneRows, report.Split('\n').Count(line => line.StartsWith("| norm+qkv+rope | ")));
            Assert.Equal(batchOneRows, report.Split('\n').Count(line => line.StartsWith("| norm+lm_head | 1 | ")));
        }
        finally
        {
            File.Delete(outPath);
        }
    }

    [Theory]
    [InlineData("3,2", "Linear must be 2, 4 or 8")]
    [InlineData("8", "expected <linear chunks>,<fused chunks per row>")]
    public void ReportRejectsABadMatvecDepth(string depth, string message)
    {
        var log = new StringWriter();
        Assert.Equal(2, ReportRunner.Run(["--device", "cpu", "--matvec-depths", depth], log));
        Assert.Contains(message, log.ToString());
    }

    [Theory]
    [InlineData("0")]
    [InlineData("8,big")]
    [InlineData("middle:8")]
    public void ReportRejectsABadPrefetchSize(string mib)
    {
        var log = new StringWriter();
        Assert.Equal(2, ReportRunner.Run(["--device", "cpu", "--prefetch-weights", mib], log));
        Assert.Contains("expected a positive number of MiB", log.ToString());
    }

    /// <summary>The BenchmarkDotNet classes, under a dry job (one call each), in process.</summary>
    [Fact]
    public void BenchmarkDotNetDryRunSucceeds()
    {
        Environment.SetEnvironmentVariable("SI_BENCH_DEVICE", "cpu");
        Environment.SetEnvironmentVariable("SI_BENCH_QUICK", "1");
        Environment.SetEnvironmentVariable("SI_BENCH_MAX_CASES", "2");
        var config = ManualConfig.CreateMinimumViable()
            .AddJob(Job.Dry.WithToolchain(InProcessEmitToolchain.Instance))
            .AddColumn(BdnColumns.All)
            .WithArtifactsPath(Path.Combine(Path.GetTempPath(), $"si-bdn-smoke-{Guid.NewGuid():N}"))
            .WithOptions(ConfigOptions.DisableLogFile);
        var summaries = BenchmarkRunner.Run([typeof(CopyBandwidthBenchmarks), typeof(AttentionKernelBenchmarks)], config);
        foreach (var summary in summaries)
        {
            Assert.False(summary.HasCriticalValidationErrors, string.Join("\n", summary.ValidationErrors.Select(e => e.Message)));
            var failed = summary.Reports.Where(r => !r.Success).Select(r => r.BenchmarkCase.DisplayInfo).ToList();
            Assert.True(failed.Count == 0, "benchmarks failed: " + string.Join("; ", failed));
            Assert.NotEmpty(summary.Reports);
        }
    }
}
