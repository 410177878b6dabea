using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;
using SpecializedInference.Benchmarks.Kernels;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>The kernel benchmarks' derived columns: GB/s, % of the run's copy bandwidth, TFLOP/s (prefill),
/// generic ÷ specialized, and the first (compiling) call.</summary>
public static class BdnColumns
{
    public static IColumn[] All { get; } =
    [
        new Derived("GB/s", "10^9 bytes/s the operation must move (K/V read; KV write: rows read + written), over the median",
            (c, s) => c.Bytes / s / 1e9),
        new Derived("% copy", "GB/s over the 16-byte copy bandwidth measured in this run",
            (c, s) => 100 * c.Bytes / s / 1e9 / BdnShared.CopyGBpsIfMeasured),
        new Derived("TFLOP/s", "QK^T and P·V flops over the median (prefill, the compute-bound kernel)",
            (c, s) => c.ComputeBound ? c.Flops / s / 1e12 : double.NaN),
        new SpeedupColumn(),
        new FirstCallColumn(),
    ];

    public static string Key(bool specialized, AttentionCase c) => (specialized ? "S " : "G ") + c;

    private static AttentionCase? CaseOf(BenchmarkCase b) =>
        b.Parameters.Items.FirstOrDefault(p => p.Name == nameof(AttentionKernelBenchmarks.Case))?.Value as AttentionCase;

    private static double MedianSeconds(Summary summary, BenchmarkCase b) =>
        summary[b]?.ResultStatistics?.Median / 1e9 ?? double.NaN;

    private static string Text(double x, string format = "0.###") =>
        double.IsNaN(x) || double.IsInfinity(x) ? "-" : x.ToString(format, System.Globalization.CultureInfo.InvariantCulture);

    private abstract class KernelColumn(string name, string legend) : IColumn
    {
        public string Id => "SI." + name;
        public string ColumnName => name;
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => legend;
        public bool IsAvailable(Summary summary) => summary.BenchmarksCases.Any(b => CaseOf(b) is not null);
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) =>
            CaseOf(benchmarkCase) is { } c ? Value(summary, benchmarkCase, c) : "-";
        protected abstract string Value(Summary summary, BenchmarkCase b, AttentionCase c);
        public override string ToString() => ColumnName;
    }

    private sealed class Derived(string name, string legend, Func<AttentionCase, double, double> f) : KernelColumn(name, legend)
    {
        protected override string Value(Summary summary, BenchmarkCase b, AttentionCase c)
        {
            double x = f(c, MedianSeconds(summary, b));
            return double.IsNaN(x) || double.IsInfinity(x) ? "-" : Format.Number(x);
        }
    }

    /// <summary>Generic median ÷ this median, for the specialized row (BenchmarkDotNet's Ratio is the inverse).</summary>
    private sealed class SpeedupColumn() : KernelColumn("Speedup", "generic time ÷ specialized time (above 1: specialization pays)")
    {
        protected override string Value(Summary summary, BenchmarkCase b, AttentionCase c)
        {
            if (b.Descriptor.WorkloadMethod.Name != nameof(AttentionKernelBenchmarks.Specialized)) return "-";
            var generic = summary.BenchmarksCases.FirstOrDefault(o =>
                o.Descriptor.WorkloadMethod.Name == nameof(AttentionKernelBenchmarks.Generic) && Equals(CaseOf(o), c));
            return generic is null ? "-" : Text(MedianSeconds(summary, generic) / MedianSeconds(summary, b), "0.00");
        }
    }

    private sealed class FirstCallColumn() : KernelColumn("First call", "first synchronized call, in the setup: kernel compile + one run (ms)")
    {
        protected override string Value(Summary summary, BenchmarkCase b, AttentionCase c)
        {
            bool specialized = b.Descriptor.WorkloadMethod.Name == nameof(AttentionKernelBenchmarks.Specialized);
            return BdnShared.FirstCallSeconds.TryGetValue(Key(specialized, c), out double s) ? Text(s * 1e3, "0.#") + " ms" : "-";
        }
    }
}
