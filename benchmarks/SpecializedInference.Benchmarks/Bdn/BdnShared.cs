using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Benchmarks.Kernels;
using SpecializedInference.Benchmarks.Report;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>
/// State BenchmarkDotNet's in-process runs share: one accelerator for the whole process (a CUDA context per
/// benchmark case would cost more than some cases), kernel objects compiled once, and the copy bandwidth
/// measured in this run that the "% copy" column divides by.
/// </summary>
public static class BdnShared
{
    private static readonly Lock Gate = new();
    private static BenchDevice? s_device;
    private static AttentionBench? s_attention;
    private static double s_copyGBps = double.NaN;

    /// <summary>The device of this run: <c>SI_BENCH_DEVICE</c> (cuda, cpu, auto; default auto).</summary>
    public static BenchDevice Device
    {
        get
        {
            lock (Gate)
            {
                if (s_device is null)
                {
                    s_device = BenchDevice.Create(BenchDevice.FromEnvironment());
                    AppDomain.CurrentDomain.ProcessExit += (_, _) => Dispose();
                }
                return s_device;
            }
        }
    }

    /// <summary>Whether the run's device is CUDA (creates the device on first use).</summary>
    public static bool IsCuda => Device.IsCuda;

    /// <summary><c>SI_BENCH_QUICK=1</c>: the report's quick shapes.</summary>
    public static bool Quick => Environment.GetEnvironmentVariable("SI_BENCH_QUICK") == "1";

    public static SuitePlan Plan => SuitePlan.For(IsCuda, Quick);

    public static AttentionBench Attention
    {
        get
        {
            lock (Gate) return s_attention ??= new AttentionBench(Device.Accelerator);
        }
    }

    /// <summary>Copy bandwidth of this process's device, measured once with the explicit harness.</summary>
    public static double CopyGBps
    {
        get
        {
            lock (Gate)
            {
                if (double.IsNaN(s_copyGBps)) RecordCopy(CopyBandwidth.Measure(Device.Accelerator, Plan.CopyBytes, Plan.KernelTiming).GBps);
                return s_copyGBps;
            }
        }
    }

    /// <summary>Measured copy bandwidth, in GB/s; NaN until something measured it.</summary>
    public static double CopyGBpsIfMeasured
    {
        get { lock (Gate) return s_copyGBps; }
    }

    /// <summary>The copy benchmark reports what it measured: the same run's figure for the other benchmarks.</summary>
    public static void RecordCopy(double gbps)
    {
        lock (Gate) s_copyGBps = gbps;
    }

    /// <summary>First synchronized call of each (method, case): compile + one run.</summary>
    public static Dictionary<string, double> FirstCallSeconds { get; } = new();

    private static void Dispose()
    {
        lock (Gate)
        {
            s_attention?.Dispose();
            s_device?.Dispose();
            s_attention = null;
            s_device = null;
        }
    }
}
