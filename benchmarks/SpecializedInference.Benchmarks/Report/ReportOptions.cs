using SpecializedInference.Accelerators;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Kernels.Dense;

namespace SpecializedInference.Benchmarks.Report;

/// <summary>Arguments of <c>report</c>.</summary>
/// <param name="TimeBudgetSeconds">0: no limit. Otherwise each section may start cases until its share of the budget
/// has passed (kernels 40%, variants 50%, dense projections 60%, end-to-end 80%, ablation 100%, measured from the start, so time one section
/// leaves goes to the next); later cases are listed as skipped. A GPU run must fit its time slot whatever the speed.</param>
/// <param name="Weights">Where end-to-end weights come from; null: the plan's choice (device on a GPU, a written
/// checkpoint on the CPU accelerator).</param>
/// <param name="MatvecDepths">More decode-matvec load depths to compare: the e2e section also runs every model at batch 1
/// with each (rows labelled with the depth).</param>
/// <param name="GreedyOnHost">The e2e section also runs every model at every batch with the greedy tokens picked on the
/// host from copied-back logits rows, as before the device argmax (rows labelled [greedy on host]).</param>
/// <param name="CudaCores">The e2e section also runs every model at every batch with tensor cores off, the f16
/// projections and the decode attention on CUDA cores only (rows labelled [CUDA cores]; the default rows use them).</param>
/// <param name="Prefetches">L2 prefetches to compare (<c>MiB</c> or <c>start:MiB</c> of the next projection's weights per
/// decode matvec, <c>rows</c> for each warp's own rows, or both as <c>rows+MiB</c>;
/// <see cref="SpecializedInference.Runtime.ModelOptions.WeightPrefetch"/>): the e2e section also runs every model at batch 1
/// with each (rows labelled [L2 prefetch N MiB at end|start], [L2 prefetch own rows], [L2 prefetch own rows + …]).</param>
/// <param name="FusedLaunches">Fused decode matvec launches to compare (<c>warps:registers</c>,
/// <see cref="SpecializedInference.Runtime.ModelOptions.FusedMatvecLaunch"/>): the e2e section also runs every model at
/// batch 1 with each (rows labelled [fused matvec N warps, R registers]).</param>
/// <param name="DecodeLaunches">Decode launches to compare (<c>per-stage-pdl</c>, <c>grid-synced-tails</c>, <c>grid-synced-tails-preloaded</c>, <c>grid-synced-layers</c>;
/// <see cref="SpecializedInference.Runtime.ModelOptions.DecodeLaunches"/>): the e2e section also runs every model at batch
/// 1 with each (rows labelled [grid-synced-tails] …), and with each and the warps' own rows pulled into L2 when
/// --prefetch-weights names rows, each of those at the default depth and at every --matvec-depths.</param>
/// <param name="MatvecLoads">Ways the per-stage decode matvec brings its weights in, to compare (<c>async-copy</c>;
/// <see cref="SpecializedInference.Runtime.ModelOptions.MatvecLoads"/>): the e2e section also runs every model at batch 1
/// with each (rows labelled [matvec loads async-copy]).</param>
/// <param name="Stream">The CUDA stream every run goes to (<c>--stream non-blocking</c>: <see cref="DeviceStream.NonBlocking"/>,
/// should programmatic dependent launch not overlap kernels on the legacy stream); the report's device line names it.</param>
/// <param name="CudaGraphs">The e2e section also runs every model at batch 1 with its decode steps captured as CUDA graphs
/// and replayed (<see cref="SpecializedInference.Runtime.ModelOptions.CudaGraphs"/>; rows labelled [CUDA graphs]), and with
/// per-stage-pdl too when --decode-launches names it. Implies --stream non-blocking unless --stream is given: the legacy
/// stream cannot be captured.</param>
/// <param name="Batches">The batch sizes of the e2e section's default rows, instead of the plan's (1, 16, 64 on a GPU):
/// <c>--batches 1</c> for a run about batch 1 alone; the A/B rows run at batch 1 anyway.</param>
/// <param name="StageTimes">After each end-to-end run at batch 1, run it again with its decode steps' stages timed on the
/// device (<see cref="SpecializedInference.Runtime.StageTimeline"/>): the report's "where a batch-1 decode step's device
/// time goes" tables, kept out of the end-to-end figures.</param>
public sealed record ReportOptions(string OutPath, DeviceKind Device, bool Quick, IReadOnlySet<string> Sections, string CommandLine,
    double TimeBudgetSeconds = 0, SpecializedInference.Benchmarks.EndToEnd.WeightsSource? Weights = null,
    IReadOnlyList<MatvecDepth>? MatvecDepths = null, bool GreedyOnHost = false, bool CudaCores = false, IReadOnlyList<WeightPrefetch>? Prefetches = null,
    IReadOnlyList<FusedMatvecLaunch>? FusedLaunches = null, bool StageTimes = false, IReadOnlyList<DecodeLaunches>? DecodeLaunches = null,
    IReadOnlyList<MatvecLoads>? MatvecLoads = null, DeviceStream Stream = DeviceStream.Legacy, bool CudaGraphs = false,
    IReadOnlyList<int>? Batches = null)
{
    public static readonly string[] AllSections = ["copy", "kernels", "variants", "dense", "e2e", "ablation"];

    public const string Usage =
        "report [--out <file.md>] [--device cuda|cpu|auto] [--quick] [--sections copy,kernels,variants,dense,e2e,ablation] [--time-budget <seconds>] [--weights device|checkpoint] [--matvec-depths 8,4;4,4] [--greedy-on-host] [--cuda-cores] [--prefetch-weights rows,rows+8,8,start:8] [--fused-matvec-launch 2:88] [--decode-launches per-stage-pdl,grid-synced-tails,grid-synced-tails-preloaded,grid-synced-layers] [--matvec-loads async-copy] [--stage-times] [--stream legacy|non-blocking] [--cuda-graphs] [--batches 1,16,64]\n" +
        "  Runs the benchmark suite with explicit timing (warm-up, repetitions, accelerator.Synchronize, median) and writes\n" +
        "  a markdown report (default benchmarks/results/<date>-<device>.md). --device cuda fails when no CUDA device is usable.";

    public static ReportOptions Parse(string[] args)
    {
        string? outPath = null;
        var device = DeviceKind.Auto;
        bool quick = false;
        double budget = 0;
        SpecializedInference.Benchmarks.EndToEnd.WeightsSource? weights = null;
        var sections = new HashSet<string>(AllSections);
        var depths = new List<MatvecDepth>();
        bool greedyOnHost = false, cudaCores = false, stageTimes = false;
        var launches = new List<DecodeLaunches>();
        var loads = new List<MatvecLoads>();
        var prefetch = new List<WeightPrefetch>();
        var fusedLaunches = new List<FusedMatvecLaunch>();
        DeviceStream? stream = null;
        bool cudaGraphs = false;
        List<int>? batches = null;
        for (int i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.\n{Usage}");
            switch (args[i])
            {
                case "--out" or "-o": outPath = Value(); break;
                case "--device" or "-d": device = BenchDevice.Parse(Value()); break;
                case "--quick" or "-q": quick = true; break;
                case "--sections":
                    sections = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet();
                    if (sections.FirstOrDefault(s => !AllSections.Contains(s)) is { } bad)
                        throw new ArgumentException($"--sections: unknown section '{bad}'; expected some of {string.Join(",", AllSections)}.");
                    break;
                case "--time-budget":
                    string text = Value();
                    if (!double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out budget) || budget <= 0)
                        throw new ArgumentException($"--time-budget '{text}': expected a positive number of seconds.");
                    break;
                case "--weights":
                    weights = Value() switch
                    {
                        "device" => SpecializedInference.Benchmarks.EndToEnd.WeightsSource.Device,
                        "checkpoint" => SpecializedInference.Benchmarks.EndToEnd.WeightsSource.Checkpoint,
                        var w => throw new ArgumentException($"--weights '{w}': expected device or checkpoint."),
                    };
                    break;
                case "--matvec-depths":
                    // linear,fused;linear,fused…: each a MatvecDepth (chunks per lane per step of LinearWarp and of each
                    // row of NormLinearWarp).
                    depths.AddRange(Value().Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(MatvecDepth.Parse));
                    break;
                case "--greedy-on-host": greedyOnHost = true; break;
                case "--cuda-cores": cudaCores = true; break;
                case "--stage-times": stageTimes = true; break;
                case "--cuda-graphs": cudaGraphs = true; break;
                case "--batches":
                    string list = Value();
                    batches = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                        .Select(b => int.TryParse(b, out int n) && n > 0 ? n : throw new ArgumentException($"--batches '{list}': expected positive batch sizes, comma-separated.")).ToList();
                    break;
                case "--decode-launches":
                    // grid-synced-tails, grid-synced-layers (the per-stage rows run anyway), comma-separated.
                    launches.AddRange(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(DecodeLaunchNames.Parse));
                    break;
                case "--matvec-loads":
                    // async-copy (the registers rows run anyway), comma-separated.
                    loads.AddRange(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(MatvecLoadNames.Parse));
                    break;
                case "--fused-matvec-launch":
                    // warps:registers, comma-separated.
                    fusedLaunches.AddRange(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(FusedMatvecLaunch.Parse));
                    break;
                case "--prefetch-weights":
                    // MiB (at the grid's end) or start:MiB, comma-separated.
                    prefetch.AddRange(Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(WeightPrefetch.Parse));
                    break;
                case "--stream":
                    // Every run of the report on that CUDA stream (AcceleratorOptions.Stream).
                    stream = DeviceStreamNames.Parse(Value());
                    break;
                case "--help" or "-h": throw new ArgumentException(Usage);
                default: throw new ArgumentException($"report: unknown argument '{args[i]}'.\n{Usage}");
            }
        }
        string commandLine = "report " + string.Join(' ', args.Select(a => a.Contains(' ') ? $"'{a}'" : a));
        return new ReportOptions(outPath ?? "", device, quick, sections, commandLine, budget, weights, depths, greedyOnHost, cudaCores, prefetch, fusedLaunches, stageTimes, launches, loads,
            stream ?? (cudaGraphs ? DeviceStream.NonBlocking : DeviceStream.Legacy), cudaGraphs, batches);
    }
}
