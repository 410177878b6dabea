using System.Globalization;

namespace SpecializedInference.Benchmarks;

/// <summary>Number formatting for the report (invariant culture, units chosen per magnitude).</summary>
public static class Format
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static string Tokens(int n) => n >= 1024 && n % 1024 == 0 ? $"{n / 1024}k" : n.ToString(Inv);

    public static string Seconds(double s) => double.IsNaN(s) ? "—" : s switch
    {
        >= 1 => s.ToString("0.00", Inv) + " s",
        >= 1e-3 => (s * 1e3).ToString(s >= 0.1 ? "0" : s >= 0.01 ? "0.0" : "0.00", Inv) + " ms",
        _ => (s * 1e6).ToString(s >= 1e-4 ? "0" : "0.0", Inv) + " µs",
    };

    public static string Number(double x, int significant = 3)
    {
        if (double.IsNaN(x) || double.IsInfinity(x)) return "—";
        if (x == 0) return "0";
        int digits = Math.Max(0, significant - 1 - (int)Math.Floor(Math.Log10(Math.Abs(x))));
        return x.ToString("F" + Math.Min(digits, 6), Inv);
    }

    public static string Percent(double fraction) => double.IsNaN(fraction) ? "—" : (fraction * 100).ToString(fraction >= 0.1 ? "0" : "0.0", Inv) + "%";

    public static string Ratio(double x) => double.IsNaN(x) ? "—" : x.ToString("0.00", Inv) + "×";

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (double)(1L << 30)).ToString("0.0", Inv) + " GiB",
        >= 1L << 20 => (bytes / (double)(1L << 20)).ToString("0.0", Inv) + " MiB",
        >= 1L << 10 => (bytes / (double)(1L << 10)).ToString("0.0", Inv) + " KiB",
        _ => bytes.ToString(Inv) + " B",
    };
}
