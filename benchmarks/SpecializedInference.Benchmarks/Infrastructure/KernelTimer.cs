using System.Diagnostics;
using ILGPU.Runtime;

namespace SpecializedInference.Benchmarks.Infrastructure;

/// <summary>How long to warm up and how many timed repetitions to take.</summary>
/// <param name="Warmup">Untimed calls after the first (compiling) one.</param>
/// <param name="Repetitions">Timed repetitions; the median is reported.</param>
/// <param name="MinRepetitionSeconds">A repetition launches the operation back to back until it lasts at least
/// this long, then synchronizes once: a few-microsecond kernel is then not measured as the cost of one
/// host↔device round trip.</param>
/// <param name="MaxCallsPerRepetition">Cap on those back-to-back launches.</param>
public sealed record TimingOptions(int Warmup, int Repetitions, double MinRepetitionSeconds, int MaxCallsPerRepetition = 256)
{
    /// <summary>Full report: enough repetitions for a stable median (the whole kernel section took 20 s on an H200 at 15 × 2 ms).</summary>
    public static TimingOptions Full { get; } = new(Warmup: 3, Repetitions: 30, MinRepetitionSeconds: 0.005);

    /// <summary>--quick, and the CPU accelerator (every call is slow there).</summary>
    public static TimingOptions Quick { get; } = new(Warmup: 1, Repetitions: 5, MinRepetitionSeconds: 0.0, MaxCallsPerRepetition: 1);

    /// <summary>End-to-end runs and other whole operations that are long and not repeated back to back.</summary>
    public static TimingOptions Once { get; } = new(Warmup: 0, Repetitions: 1, MinRepetitionSeconds: 0.0, MaxCallsPerRepetition: 1);
}

/// <summary>Seconds per call of an operation: the median over repetitions, and the first (compiling) call.</summary>
/// <param name="MedianSeconds">Median over repetitions of (repetition time / calls in it).</param>
/// <param name="FirstCallSeconds">The first call, synchronized: kernel compilation (JIT to PTX or to the CPU
/// simulator) plus one run. Never part of the median.</param>
/// <param name="EnqueueSeconds">Median over repetitions of the host time to enqueue one call (the launch loop
/// before its synchronize). Close to <paramref name="MedianSeconds"/> means the host's launch overhead, not the
/// device, set the pace.</param>
public sealed record Timing(double MedianSeconds, double MinSeconds, double MaxSeconds, int Repetitions, int CallsPerRepetition, double FirstCallSeconds,
    double EnqueueSeconds = double.NaN)
{
    /// <summary>First call minus a steady-state call: the compile (and first-touch) cost.</summary>
    public double CompileSeconds => Math.Max(0, FirstCallSeconds - MedianSeconds);
}

/// <summary>
/// The explicit timing harness of the report: first call (compile) apart, warm-up, then repetitions that each
/// end with <c>accelerator.Synchronize()</c>, so what is timed is the device finishing the work, not the host
/// queuing it.
/// </summary>
public static class KernelTimer
{
    public static Timing Measure(Accelerator accelerator, Action launch, TimingOptions options)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        ArgumentNullException.ThrowIfNull(launch);
        accelerator.Synchronize();

        long start = Stopwatch.GetTimestamp();
        launch();
        accelerator.Synchronize();
        double first = Stopwatch.GetElapsedTime(start).TotalSeconds;

        double single = first;
        for (int i = 0; i < options.Warmup; i++)
        {
            start = Stopwatch.GetTimestamp();
            launch();
            accelerator.Synchronize();
            single = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        int calls = 1;
        if (options.MinRepetitionSeconds > 0 && single < options.MinRepetitionSeconds)
            calls = (int)Math.Clamp(Math.Ceiling(options.MinRepetitionSeconds / Math.Max(single, 1e-7)), 1, options.MaxCallsPerRepetition);

        var samples = new double[Math.Max(1, options.Repetitions)];
        var enqueue = new double[samples.Length];
        for (int r = 0; r < samples.Length; r++)
        {
            start = Stopwatch.GetTimestamp();
            for (int c = 0; c < calls; c++)
                launch();
            enqueue[r] = Stopwatch.GetElapsedTime(start).TotalSeconds / calls;
            accelerator.Synchronize();
            samples[r] = Stopwatch.GetElapsedTime(start).TotalSeconds / calls;
        }
        Array.Sort(samples);
        Array.Sort(enqueue);
        return new Timing(Median(samples), samples[0], samples[^1], samples.Length, calls, first, Median(enqueue));
    }

    /// <summary>Median of sorted samples.</summary>
    public static double Median(double[] sorted) =>
        sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : 0.5 * (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]);
}
