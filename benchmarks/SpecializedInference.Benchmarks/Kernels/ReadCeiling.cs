using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Benchmarks.Infrastructure;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// What one launch that only reads a given number of bytes takes, timed like every kernel of the report (back to
/// back, median): the ceiling for a kernel that must read those bytes, the decode attention's K/V for instance.
/// The copy bandwidth is measured on 1 GiB, where launch and ramp costs vanish; a decode at batch 1 reads 16 MiB,
/// about 4 µs at that bandwidth, so the few microseconds a launch costs before its first byte arrives decide its
/// GB/s. This measures them: an empty launch, then reads of the sizes asked for.
/// </summary>
public sealed class ReadCeiling : IDisposable
{
    /// <summary>16-byte chunks a thread loads before it adds any: all of a thread's loads in flight at once.</summary>
    internal const int ChunksPerThread = 4;
    internal const int GroupSize = 256;

    /// <summary>A read size must be a multiple of this (one group's loads).</summary>
    public const long Granule = 16L * ChunksPerThread * GroupSize;

    private readonly Accelerator _accelerator;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _source; // [floats]
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _sink; // [1] written only if a sum is impossible, so the loads stay
    private readonly Action<KernelConfig, ArrayView<F4>, ArrayView<float>, long> _read;
    private readonly Action<KernelConfig, ArrayView<float>, int> _empty;

    public ReadCeiling(Accelerator accelerator, long maxBytes)
    {
        if (maxBytes <= 0 || maxBytes % Granule != 0)
            throw new ArgumentOutOfRangeException(nameof(maxBytes), maxBytes, $"read size must be a positive multiple of {Granule} bytes.");
        _accelerator = accelerator;
        _source = accelerator.Allocate1D<float>(maxBytes / 4);
        _source.MemSet(0x3f); // every float 0.746: a sum of them is never negative
        _sink = accelerator.Allocate1D<float>(1);
        _read = accelerator.LoadStreamKernel<ArrayView<F4>, ArrayView<float>, long>(ReadKernel);
        _empty = accelerator.LoadStreamKernel<ArrayView<float>, int>(EmptyKernel);
    }

    /// <summary>
    /// Thread i of the grid adds chunks i, i + threads, i + 2·threads, … loading <see cref="ChunksPerThread"/> before
    /// adding any; neighbouring threads read neighbouring 16 bytes. The sum reaches memory only if it is negative,
    /// which it never is, so nothing is written and nothing is optimized away.
    /// </summary>
    /// <param name="source">[chunks] F4</param>
    /// <param name="sink">[1]</param>
    internal static void ReadKernel(ArrayView<F4> source, ArrayView<float> sink, long chunks)
    {
        float sum = ReadSum(source, chunks);
        if (sum < 0) sink[0] = sum;
    }

    /// <summary>This thread's share of <see cref="ReadKernel"/>: the sum of its chunks.</summary>
    internal static float ReadSum(ArrayView<F4> source, long chunks)
    {
        long threads = (long)Grid.DimX * Group.DimX;
        long i = (long)Grid.IdxX * Group.DimX + Group.IdxX;
        float sum = 0;
        for (; i + 3 * threads < chunks; i += ChunksPerThread * threads)
        {
            var a = source[i];
            var b = source[i + threads];
            var c = source[i + 2 * threads];
            var d = source[i + 3 * threads];
            sum += a.X + a.Y + a.Z + a.W + b.X + b.Y + b.Z + b.W + c.X + c.Y + c.Z + c.W + d.X + d.Y + d.Z + d.W;
        }
        for (; i < chunks; i += threads) // a size that is not a whole number of the grid's rounds
        {
            var a = source[i];
            sum += a.X + a.Y + a.Z + a.W;
        }
        return sum;
    }

    /// <summary>Does nothing (the store is never taken): the cost of a launch alone.</summary>
    internal static void EmptyKernel(ArrayView<float> sink, int never)
    {
        if (never > 0) sink[0] = never;
    }

    /// <summary>Groups for a read: one thread per <see cref="ChunksPerThread"/> chunks, at most as many groups as the
    /// device holds at once (so a larger read loops instead of running in waves).</summary>
    private int GroupsFor(long bytes)
    {
        long chunks = bytes / 16;
        long wanted = chunks / ChunksPerThread / GroupSize;
        long resident = (long)_accelerator.NumMultiprocessors * Math.Max(1, _accelerator.MaxNumThreadsPerMultiprocessor / GroupSize);
        return (int)Math.Max(1, Math.Min(wanted, resident));
    }

    public ReadCeilingResult Measure(long bytes, TimingOptions options)
    {
        if (bytes <= 0 || bytes > _source.LengthInBytes || bytes % Granule != 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, $"read size must be a positive multiple of {Granule} bytes, at most {_source.LengthInBytes}.");
        var source = ((ArrayView<float>)_source.View).Cast<F4>();
        var config = new KernelConfig(GroupsFor(bytes), GroupSize);
        var timing = KernelTimer.Measure(_accelerator, () => _read(config, source, _sink.View, bytes / 16), options);
        return new ReadCeilingResult(bytes, config.GridDim.X, timing, bytes / timing.MedianSeconds / 1e9);
    }

    public ReadCeilingResult MeasureEmpty(TimingOptions options)
    {
        var config = new KernelConfig(_accelerator.NumMultiprocessors, GroupSize);
        var timing = KernelTimer.Measure(_accelerator, () => _empty(config, _sink.View, 0), options);
        return new ReadCeilingResult(0, config.GridDim.X, timing, 0);
    }

    /// <summary>An empty launch, then a read of each size.</summary>
    public static IReadOnlyList<ReadCeilingResult> MeasureAll(Accelerator accelerator, IReadOnlyList<long> sizes, TimingOptions options)
    {
        using var ceiling = new ReadCeiling(accelerator, sizes.Max());
        var results = new List<ReadCeilingResult> { ceiling.MeasureEmpty(options) };
        results.AddRange(sizes.Select(s => ceiling.Measure(s, options)));
        return results;
    }

    public void Dispose()
    {
        _source.Dispose();
        _sink.Dispose();
    }
}

/// <param name="Bytes">Bytes read (0: the empty launch).</param>
/// <param name="Groups">Groups of the launch.</param>
/// <param name="GBps">Bytes over the median time, in 10^9 bytes per second (0 for the empty launch).</param>
public sealed record ReadCeilingResult(long Bytes, int Groups, Timing Timing, double GBps);
