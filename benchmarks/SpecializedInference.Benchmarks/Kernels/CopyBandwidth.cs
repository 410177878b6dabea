using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Benchmarks.Infrastructure;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>Four floats moved as one 16-byte access (<c>ld.global.v4.f32</c> / <c>st.global.v4.f32</c> on CUDA).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 16)]
public struct F4
{
    public float X, Y, Z, W;
}

/// <summary>
/// The device's copy bandwidth: the ceiling every other GB/s in the suite is reported against. One thread
/// copies one 16-byte <see cref="F4"/>, the widest access ILGPU emits, so this is what a bandwidth-bound kernel
/// can hope for on this device (PyTorch's <c>dst.copy_(src)</c> is the anchor of the same figure).
/// </summary>
public sealed class CopyBandwidth : IDisposable
{
    private readonly Accelerator _accelerator;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _source; // [floats]
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _destination; // [floats]
    private readonly Action<Index1D, ArrayView<F4>, ArrayView<F4>> _copy;

    public CopyBandwidth(Accelerator accelerator, long bytes)
    {
        if (bytes <= 0 || bytes % 16 != 0)
            throw new ArgumentOutOfRangeException(nameof(bytes), bytes, "copy size must be a positive multiple of 16 bytes.");
        _accelerator = accelerator;
        _source = accelerator.Allocate1D<float>(bytes / 4);
        _destination = accelerator.Allocate1D<float>(bytes / 4);
        _source.MemSet(0x3f);
        _copy = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<F4>, ArrayView<F4>>(CopyKernel);
        Bytes = bytes;
    }

    /// <summary>Bytes of the source (the destination is the same size).</summary>
    public long Bytes { get; }

    /// <summary>Bytes one copy moves: every byte read once and written once.</summary>
    public long BytesMoved => 2 * Bytes;

    /// <summary>dst[i] = src[i], 16 bytes per thread.</summary>
    /// <param name="source">[n] F4</param>
    /// <param name="destination">[n] F4</param>
    private static void CopyKernel(Index1D i, ArrayView<F4> source, ArrayView<F4> destination) => destination[i] = source[i];

    /// <summary>Launches one copy (asynchronously: the caller synchronizes).</summary>
    public void Launch() => _copy((int)(Bytes / 16), ((ArrayView<float>)_source.View).Cast<F4>(), ((ArrayView<float>)_destination.View).Cast<F4>());

    /// <summary>Checks the last copy landed (so a silently failing launch cannot report a bandwidth).</summary>
    public void Verify()
    {
        _accelerator.Synchronize();
        long n = Math.Min(_destination.Length, 1 << 16);
        var head = _destination.View.SubView(0, n).GetAsArray1D();
        var tail = _destination.View.SubView(_destination.Length - n, n).GetAsArray1D();
        float expected = BitConverter.Int32BitsToSingle(0x3f3f3f3f);
        if (head.Any(x => x != expected) || tail.Any(x => x != expected))
            throw new InvalidOperationException("copy-bandwidth kernel did not copy its source: the device result is wrong.");
    }

    /// <summary>Measures the copy and returns its timing and GB/s (read + write bytes).</summary>
    public static CopyBandwidthResult Measure(Accelerator accelerator, long bytes, TimingOptions options)
    {
        using var copy = new CopyBandwidth(accelerator, bytes);
        var timing = KernelTimer.Measure(accelerator, copy.Launch, options);
        copy.Verify();
        return new CopyBandwidthResult(bytes, timing, copy.BytesMoved / timing.MedianSeconds / 1e9);
    }

    public void Dispose()
    {
        _source.Dispose();
        _destination.Dispose();
    }
}

/// <param name="Bytes">Size of the source buffer.</param>
/// <param name="GBps">(read + write bytes) / median time, in 10^9 bytes per second.</param>
public sealed record CopyBandwidthResult(long Bytes, Timing Timing, double GBps);
