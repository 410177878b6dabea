using SpecializedInference.Benchmarks.Report;

// Two entry modes:
//   report [--out file.md] [--device cuda|cpu|auto] [--quick]   the explicit-timing harness, writes a markdown report
//   anything else                                              BenchmarkDotNet (e.g. --filter '*'), in process
if (args.Length > 0 && args[0] == "report")
    return ReportRunner.Run(args[1..], Console.Out);

return SpecializedInference.Benchmarks.Bdn.BdnEntry.Run(args);
