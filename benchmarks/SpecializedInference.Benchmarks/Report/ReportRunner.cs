using System.Diagnostics;
using System.Reflection;
using SpecializedInference.Benchmarks.EndToEnd;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Benchmarks.Kernels;

namespace SpecializedInference.Benchmarks.Report;

/// <summary>Everything a report run measured so far (the report is rewritten after every section, so a run cut
/// short still leaves what it measured).</summary>
public sealed class ReportData
{
    public required string DeviceName { get; init; }
    public required string DeviceDescription { get; init; }
    public required bool IsCuda { get; init; }
    public required string CommandLine { get; init; }
    public required DateTimeOffset Started { get; init; }
    public required SuitePlan Plan { get; init; }
    public required int Seed { get; init; }
    public CopyBandwidthResult? Copy { get; set; }
    /// <summary>An empty launch and one-launch reads of the decode cases' K/V sizes (<see cref="ReadCeiling"/>).</summary>
    public IReadOnlyList<ReadCeilingResult> ReadCeiling { get; set; } = [];
    public List<AttentionComparison> Kernels { get; } = new();
    public List<AttentionComparison> Variants { get; } = new();
    public List<DenseComparison> Dense { get; } = new();
    public List<EndToEndResult> EndToEnd { get; } = new();
    /// <summary>Batch-1 runs again with their decode steps' stages timed (--stage-times): not end-to-end figures.</summary>
    public List<EndToEndResult> StageTimes { get; } = new();
    public List<AblationResult> Ablations { get; } = new();
    /// <summary>What failed, by case: a failure is reported, not allowed to stop the rest of the suite.</summary>
    public List<string> Failures { get; } = new();
    /// <summary>Cases not started because their section's share of --time-budget had passed.</summary>
    public List<string> Skipped { get; } = new();
    public double TimeBudgetSeconds { get; init; }
    public TimeSpan Elapsed { get; set; }
    public bool Finished { get; set; }
}

/// <summary>The <c>report</c> entry: runs the suite section by section and writes the markdown report.</summary>
public static class ReportRunner
{
    public static int Run(string[] args, TextWriter log)
    {
        ReportOptions options;
        try
        {
            options = ReportOptions.Parse(args);
        }
        catch (ArgumentException ex)
        {
            log.WriteLine(ex.Message);
            return 2;
        }

        if (BenchDevice.TryCreate(options.Device, out string noDevice, options.Stream) is not { } device)
        {
            log.WriteLine($"error: {noDevice}");
            return 3;
        }

        using (device)
        {
            var plan = SuitePlan.For(device.IsCuda, options.Quick);
            string outPath = options.OutPath.Length > 0 ? options.OutPath
                : Path.Combine("benchmarks", "results", $"{DateTime.UtcNow:yyyy-MM-dd}-{device.KindName}{(options.Quick ? "-quick" : "")}.md");
            var data = new ReportData
            {
                DeviceName = device.Name,
                DeviceDescription = device.Description,
                IsCuda = device.IsCuda,
                CommandLine = options.CommandLine,
                Started = DateTimeOffset.UtcNow,
                Plan = plan,
                Seed = 20240611,
                TimeBudgetSeconds = options.TimeBudgetSeconds,
            };
            var clock = Stopwatch.StartNew();
            void Log(string line) => log.WriteLine($"[{clock.Elapsed:mm\\:ss}] {line}");
            void Save()
            {
                data.Elapsed = clock.Elapsed;
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
                File.WriteAllText(outPath, ReportWriter.Render(data));
            }

            Log($"{device.Description}");
            Log($"suite '{plan.Name}', writing {outPath}");
            Run(options, device, data, Log, Save, clock);
            data.Finished = true;
            Save();
            Log($"done in {clock.Elapsed:mm\\:ss}: {outPath}" + (data.Failures.Count > 0 ? $" ({data.Failures.Count} failure(s), listed in the report)" : ""));
            return data.Failures.Count == 0 ? 0 : 1;
        }
    }

    private static void Run(ReportOptions options, BenchDevice device, ReportData data, Action<string> log, Action save, Stopwatch clock)
    {
        var plan = data.Plan;
        // Whether a section (ending at this fraction of the time budget) may start another case; if not, the case is skipped.
        bool Starts(double fraction, string what)
        {
            if (options.TimeBudgetSeconds <= 0 || clock.Elapsed.TotalSeconds < fraction * options.TimeBudgetSeconds) return true;
            data.Skipped.Add(what);
            log($"skipped (time budget): {what}");
            return false;
        }
        var accelerator = device.Accelerator;
        if (options.Sections.Contains("copy") || options.Sections.Contains("kernels") || options.Sections.Contains("variants"))
        {
            // Always first: every other GB/s is reported against it.
            Attempt(data, log, $"copy bandwidth {Format.Bytes(plan.CopyBytes)}", () =>
            {
                data.Copy = CopyBandwidth.Measure(accelerator, plan.CopyBytes, plan.KernelTiming);
                log($"  copy: {data.Copy.GBps:F1} GB/s");
            });
            if (plan.ReadCeilingBytes.Count > 0)
                Attempt(data, log, "read ceiling", () =>
                {
                    data.ReadCeiling = ReadCeiling.MeasureAll(accelerator, plan.ReadCeilingBytes, plan.KernelTiming);
                    foreach (var r in data.ReadCeiling)
                        log(r.Bytes == 0 ? $"  empty launch: {Format.Seconds(r.Timing.MedianSeconds)}" : $"  read {Format.Bytes(r.Bytes)} in one launch: {Format.Seconds(r.Timing.MedianSeconds)}, {r.GBps:F1} GB/s");
                });
            save();
        }

        if (options.Sections.Contains("kernels") || options.Sections.Contains("variants"))
        {
            using var bench = new AttentionBench(accelerator) { Seed = data.Seed };
            if (options.Sections.Contains("kernels"))
            {
                foreach (var c in plan.KernelCases)
                {
                    if (!Starts(0.4, c.ToString())) continue;
                    Attempt(data, log, c.ToString(), () => data.Kernels.Add(Logged(bench.Run(c, plan.KernelTiming), log)));
                    save();
                }
            }
            if (options.Sections.Contains("variants"))
            {
                foreach (var c in plan.VariantCases)
                {
                    if (!Starts(0.5, c.ToString())) continue;
                    Attempt(data, log, c.ToString(), () => data.Variants.Add(Logged(bench.Run(c, plan.KernelTiming), log)));
                    save();
                }
                // The flash/GQA baselines of the variants, unless the kernel section already measured them.
                foreach (var c in plan.VariantCases.Select(v => v with { Algorithm = SpecializedInference.Kernels.AttentionAlgorithm.Flash, HeadMapping = SpecializedInference.Kernels.HeadMapping.Grouped }).Distinct())
                    if (!data.Kernels.Any(k => k.Case == c) && Starts(0.5, c.ToString()))
                        Attempt(data, log, c.ToString(), () => data.Variants.Add(Logged(bench.Run(c, plan.KernelTiming), log)));
                save();
            }
        }

        if (options.Sections.Contains("dense"))
        {
            foreach (var c in plan.DenseCases ?? [])
            {
                if (!Starts(0.6, c.ToString())) continue;
                Attempt(data, log, c.ToString(), () =>
                {
                    var r = DenseProjectionBench.Run(accelerator, c, plan.KernelTiming);
                    data.Dense.Add(r);
                    log($"  {c}: CUDA cores {Format.Seconds(r.CudaCores.MedianSeconds)}, tensor cores {Format.Seconds(r.TensorCores.MedianSeconds)} ({r.Speedup:F2}x), difference {r.Difference:E1}");
                });
                save();
            }
        }

        if (options.Sections.Contains("e2e") || options.Sections.Contains("ablation"))
        {
            var p = options.Batches is { Count: > 0 } defaultBatches ? plan.EndToEnd with { Batches = defaultBatches } : plan.EndToEnd;
            using var e2e = new EndToEndBench(device, data.Seed, options.Weights ?? p.Weights);
            if (options.Sections.Contains("e2e"))
            {
                // The plan's models at every batch, then each one at batch 1 with every extra matvec depth (--matvec-depths),
                // then at every batch with the greedy tokens picked on the host (--greedy-on-host), and with the f16
                // projections and the decode attention on CUDA cores only (--cuda-cores; the default rows use tensor cores), and at
                // batch 1 with every L2 prefetch size (--prefetch-weights) and fused matvec launch (--fused-matvec-launch), and
                // with grid-synced launches (--decode-launches); at batch 1 with each way of loading the matvecs' weights (--matvec-loads).
                var depthRuns = (options.MatvecDepths ?? []).SelectMany(depth => p.Models.Select(m => (Model: m with { MatvecDepth = depth }, Batches: (IReadOnlyList<int>)[1])));
                var prefetchRuns = (options.Prefetches ?? []).SelectMany(prefetch => p.Models.Select(m => (Model: m with { WeightPrefetch = prefetch }, Batches: (IReadOnlyList<int>)[1])));
                var fusedLaunchRuns = (options.FusedLaunches ?? []).SelectMany(launch => p.Models.Select(m => (Model: m with { FusedMatvecLaunch = launch }, Batches: (IReadOnlyList<int>)[1])));
                // --decode-launches: batch 1 with each grid-synced launch plan, alone and with each warp's own rows in L2, each
                // at the default depth and every --matvec-depths (the tail's registers are its deepest stage's).
                var tailPrefetches = new SpecializedInference.Kernels.Dense.WeightPrefetch?[] { null }.Concat((options.Prefetches ?? []).Where(f => f is { OwnRows: true, Bytes: 0 }));
                var tailDepths = new SpecializedInference.Kernels.Dense.MatvecDepth?[] { null }.Concat(options.MatvecDepths ?? []);
                var gridSyncedRuns = (options.DecodeLaunches ?? []).SelectMany(launches => tailPrefetches.SelectMany(prefetch => tailDepths.SelectMany(depth => p.Models.Select(m =>
                    (Model: m with { DecodeLaunches = launches, WeightPrefetch = prefetch, MatvecDepth = depth }, Batches: (IReadOnlyList<int>)[1])))));
                var loadRuns = (options.MatvecLoads ?? []).Where(l => l != SpecializedInference.Kernels.Dense.MatvecLoads.Registers)
                    .SelectMany(loads => p.Models.Select(m => (Model: m with { MatvecLoads = loads }, Batches: (IReadOnlyList<int>)[1])));
                // Both --matvec-loads and --decode-launches per-stage-pdl: each way of loading with every launch programmatic
                // (the async copies' rings fill before the wait).
                var programmaticLoadRuns = (options.DecodeLaunches ?? []).Contains(SpecializedInference.Kernels.Dense.DecodeLaunches.PerStageProgrammatic)
                    ? (options.MatvecLoads ?? []).Where(l => l != SpecializedInference.Kernels.Dense.MatvecLoads.Registers).SelectMany(loads => p.Models.Select(m =>
                        (Model: m with { MatvecLoads = loads, DecodeLaunches = SpecializedInference.Kernels.Dense.DecodeLaunches.PerStageProgrammatic }, Batches: (IReadOnlyList<int>)[1])))
                    : [];
                // --cuda-graphs: batch 1 with the decode steps replayed as CUDA graphs, per stage and, with --decode-launches
                // per-stage-pdl, programmatic too (the graph then holds programmatic edges); right after the default rows,
                // which they are read against, before a time budget runs out.
                var graphRuns = options.CudaGraphs
                    ? new[] { SpecializedInference.Kernels.Dense.DecodeLaunches.PerStage }
                        .Concat((options.DecodeLaunches ?? []).Where(l => l == SpecializedInference.Kernels.Dense.DecodeLaunches.PerStageProgrammatic))
                        .SelectMany(launches => p.Models.Select(m => (Model: m with { CudaGraphs = true, DecodeLaunches = launches }, Batches: (IReadOnlyList<int>)[1])))
                    : [];
                var hostGreedyRuns = options.GreedyOnHost ? p.Models.Select(m => (Model: m with { Greedy = SpecializedInference.Runtime.GreedySampling.Host }, Batches: p.Batches)) : [];
                var cudaCoreRuns = options.CudaCores ? p.Models.Select(m => (Model: m with { TensorCores = false }, Batches: p.Batches)) : [];
                foreach (var (model, batches) in p.Models.Select(m => (Model: m, Batches: p.Batches)).Concat(graphRuns).Concat(depthRuns).Concat(loadRuns).Concat(hostGreedyRuns).Concat(cudaCoreRuns).Concat(gridSyncedRuns).Concat(programmaticLoadRuns).Concat(prefetchRuns).Concat(fusedLaunchRuns))
                {
                    e2e.Capacity = (batches.Max(), p.PromptTokens + p.DecodeTokens);
                    foreach (int batch in batches)
                    {
                        if (!Starts(0.8, $"end-to-end {model.Label} batch {batch}")) continue;
                        Attempt(data, log, $"end-to-end {model.Label} batch {batch}", () =>
                        {
                            var r = e2e.Run(model, batch, p.PromptTokens, p.DecodeTokens, EngineToggles.AllOn);
                            data.EndToEnd.Add(r);
                            log($"  {r.Summary}");
                        });
                        save();
                        if (options.StageTimes && batch == 1 && Starts(0.8, $"stage times {model.Label} batch 1"))
                        {
                            Attempt(data, log, $"stage times {model.Label} batch 1", () =>
                            {
                                var r = e2e.Run(model, batch, p.PromptTokens, p.DecodeTokens, EngineToggles.AllOn, timeStages: true);
                                data.StageTimes.Add(r);
                                log($"  [stage times] {r.Summary}");
                            });
                            save();
                        }
                    }
                    e2e.ReleaseRunner();
                }
            }
            if (options.Sections.Contains("ablation") && p.Ablation is { } ablation && Starts(1.0, $"ablation {ablation.Model.Label} batch {ablation.Batch}"))
            {
                Attempt(data, log, $"ablation {ablation.Model.Label} batch {ablation.Batch}",
                    () => data.Ablations.AddRange(e2e.Ablate(ablation, log, name => Starts(1.0, $"ablation: {name} off"))));
                save();
            }
        }
    }

    private static AttentionComparison Logged(AttentionComparison r, Action<string> log)
    {
        string spec = r.Specialized is { } s ? $"{Format.Seconds(s.Timing.MedianSeconds)} (host enqueue {Format.Seconds(s.Timing.EnqueueSeconds)}/call)" : "n/a";
        log($"  specialized {spec}, generic {Format.Seconds(r.Generic.Timing.MedianSeconds)}, speedup {Format.Ratio(r.Speedup)}, " +
            $"{Format.Number(r.GBps(r.Best))} GB/s" + (r.Case.ComputeBound ? $", {Format.Number(r.TFlops(r.Best))} TFLOP/s" : ""));
        return r;
    }

    private static void Attempt(ReportData data, Action<string> log, string what, Action action)
    {
        log(what);
        try
        {
            action();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            string message = $"{what}: {ex.GetType().Name}: {ex.Message}";
            data.Failures.Add(message);
            log($"  FAILED {message}");
            if (Environment.GetEnvironmentVariable("SI_BENCH_TRACE") == "1") log(ex.ToString());
        }
    }

    /// <summary>The build's version, with the git commit the SDK stamps into it when built from a checkout.</summary>
    public static string BuildVersion =>
        typeof(ReportRunner).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
}
