using SpecializedInference.Benchmarks.Report;

// Five entry modes:
//   report [--out file.md] [--device cuda|cpu|auto] [--quick]   the explicit-timing harness, writes a markdown report
//   logits-rows                                                the runner's host phases with fresh or reused logits rows
//   launch-graph                                               chains of launches one by one against a captured CUDA graph (CUDA)
//   layer-tail [--device cuda|cpu] [--sets …] [--quick]         a layer's dense work per stage and grid-synced, and the latter clocked
//   anything else                                              BenchmarkDotNet (e.g. --filter '*'), in process
if (args.Length > 0 && args[0] == "report")
    return ReportRunner.Run(args[1..], Console.Out);
if (args.Length > 0 && args[0] == "launch-graph")
    return SpecializedInference.Benchmarks.Kernels.LaunchGraphProbe.Run(Console.Out);
if (args.Length > 0 && args[0] == "layer-tail")
    return SpecializedInference.Benchmarks.Kernels.LayerTailBench.Run(args[1..], Console.Out);
if (args.Length > 0 && args[0] == "logits-rows")
    return SpecializedInference.Benchmarks.EndToEnd.LogitsRowsProbe.Run(Console.Out);

return SpecializedInference.Benchmarks.Bdn.BdnEntry.Run(args);
