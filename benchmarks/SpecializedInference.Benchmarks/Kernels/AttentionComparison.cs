using System.Diagnostics;
using ILGPU.Runtime;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Kernels;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>One side of a comparison: which kernels ran and how long they took.</summary>
/// <param name="KernelsName">The kernel set's name ("generic" for the generic kernels).</param>
/// <param name="LoadSeconds">Constructing the kernel object (ILGPU compiles its kernels there), when this
/// case created it; NaN when an earlier case already had.</param>
public sealed record KernelRun(string KernelsName, bool IsSpecialized, Timing Timing, double LoadSeconds);

/// <summary>Specialized versus generic kernels on one case.</summary>
/// <param name="Specialized">Null when no generated kernel set could run the case (<paramref name="Note"/> says why).</param>
/// <param name="MaxAbsDifference">Largest |specialized - generic| over the outputs (the KV write: over the cache); NaN without both sides.</param>
public sealed record AttentionComparison(AttentionCase Case, KernelRun? Specialized, KernelRun Generic, double MaxAbsDifference, string? Note = null)
{
    /// <summary>Generic time ÷ specialized time: above 1 the specialization pays.</summary>
    public double Speedup => Specialized is null ? double.NaN : Generic.Timing.MedianSeconds / Specialized.Timing.MedianSeconds;

    public double GBps(KernelRun? run) => run is null ? double.NaN : Case.Bytes / run.Timing.MedianSeconds / 1e9;

    public double TFlops(KernelRun? run) => run is null ? double.NaN : Case.Flops / run.Timing.MedianSeconds / 1e12;

    /// <summary>The faster side (the figure a results table quotes).</summary>
    public KernelRun Best => Specialized is { } s && s.Timing.MedianSeconds <= Generic.Timing.MedianSeconds ? s : Generic;
}

/// <summary>
/// Runs <see cref="AttentionCase"/>s on specialized and generic kernels. Kernel objects are created once per
/// (kernel set, options, side) and reused across cases, as an engine would; their load (compile) time is
/// reported apart from the timed calls.
/// </summary>
public sealed class AttentionBench : IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly DeviceFill _fill;
    private readonly Dictionary<(string Set, AttentionOptions Options, bool Specialized), IAttentionKernels> _kernels = new();

    public AttentionBench(Accelerator accelerator)
    {
        _accelerator = accelerator;
        _fill = new DeviceFill(accelerator);
    }

    /// <summary>Seed of every workload (printed in the report so a run can be repeated).</summary>
    public int Seed { get; init; } = 20240611;

    public AttentionComparison Run(AttentionCase c, TimingOptions timing)
    {
        using var workload = new AttentionWorkload(_accelerator, _fill, c, Seed);
        KernelRun? specialized = null;
        float[]? specializedResult = null;
        string? note = null;
        try
        {
            specialized = RunSide(workload, specialized: true, timing, out specializedResult);
        }
        catch (NotSupportedException ex)
        {
            note = ex.Message;
        }
        var generic = RunSide(workload, specialized: false, timing, out var genericResult);
        RequireFinite(genericResult, c, "generic");
        double diff = double.NaN;
        if (specializedResult is not null)
        {
            RequireFinite(specializedResult, c, "specialized");
            diff = MaxAbsDifference(specializedResult, genericResult, c);
        }
        return new AttentionComparison(c, specialized, generic, diff, note);
    }

    /// <summary>The kernels of one side, created (and timed) on first use.</summary>
    public IAttentionKernels Kernels(AttentionCase c, bool specialized, out double loadSeconds)
    {
        var key = (c.Set.Name, c.Options, specialized);
        loadSeconds = double.NaN;
        if (_kernels.TryGetValue(key, out var kernels)) return kernels;
        long start = Stopwatch.GetTimestamp();
        kernels = specialized ? KernelCatalog.Specialized(_accelerator, c.Set, c.Options) : KernelCatalog.Generic(_accelerator, c.Set, c.Options);
        _accelerator.Synchronize();
        loadSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        _kernels[key] = kernels;
        return kernels;
    }

    private KernelRun RunSide(AttentionWorkload workload, bool specialized, TimingOptions timing, out float[] result)
    {
        var kernels = Kernels(workload.Case, specialized, out double load);
        using var plan = kernels.Plan(workload.Batch);
        workload.Poison();
        var t = KernelTimer.Measure(_accelerator, () => workload.Run(kernels, plan), timing);
        result = workload.Result();
        return new KernelRun(kernels.Name, kernels.IsSpecialized, t, load);
    }

    /// <summary>A NaN left by the poison (or an overflow) means the kernel did not compute its output: its
    /// timing would be meaningless, so the case fails.</summary>
    private static void RequireFinite(float[] result, AttentionCase c, string side)
    {
        int bad = Array.FindIndex(result, x => !float.IsFinite(x));
        if (bad >= 0)
            throw new InvalidOperationException($"{c}: {side} output element {bad} is {result[bad]}: the kernel left it unwritten or overflowed.");
    }

    private static double MaxAbsDifference(float[] a, float[] b, AttentionCase c)
    {
        if (a.Length != b.Length) throw new InvalidOperationException($"{c}: outputs differ in length ({a.Length} vs {b.Length}).");
        double max = 0;
        for (int i = 0; i < a.Length; i++)
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        return max;
    }

    public void Dispose()
    {
        foreach (var k in _kernels.Values) k.Dispose();
        _kernels.Clear();
    }
}
