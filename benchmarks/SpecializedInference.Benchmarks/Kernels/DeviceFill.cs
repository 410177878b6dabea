using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// Fills device buffers with seeded pseudo-random values in [-1, 1) on the device itself: a 16 GB KV cache
/// or weight set would take minutes to generate on the host and upload.
/// </summary>
public sealed class DeviceFill
{
    private readonly Accelerator _accelerator;
    private readonly Action<Index1D, ArrayView<float>, long, int, uint> _floats;
    private readonly Action<Index1D, ArrayView<global::ILGPU.Half>, long, int, uint> _halves;

    public DeviceFill(Accelerator accelerator)
    {
        _accelerator = accelerator;
        _floats = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, long, int, uint>(FillFloats);
        _halves = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<global::ILGPU.Half>, long, int, uint>(FillHalves);
    }

    /// <summary>Threads per fill: a grid-stride loop covers the rest. The CPU accelerator pays per simulated
    /// thread, so it gets few threads with long loops.</summary>
    private int Threads(long n) => (int)Math.Max(1, Math.Min(n, _accelerator.AcceleratorType == AcceleratorType.CPU ? 64 : 1 << 22));

    public void Floats(ArrayView<float> view, uint seed)
    {
        if (view.Length > 0) _floats(Threads(view.Length), view, view.Length, Threads(view.Length), seed);
    }

    public void Halves(ArrayView<global::ILGPU.Half> view, uint seed)
    {
        if (view.Length > 0) _halves(Threads(view.Length), view, view.Length, Threads(view.Length), seed);
    }

    /// <summary>A KV cache buffer (bytes) in its dtype.</summary>
    public void Cache(ArrayView<byte> bytes, SpecializedInference.Kernels.KvDtype dtype, uint seed)
    {
        if (dtype == SpecializedInference.Kernels.KvDtype.F16) Halves(bytes.Cast<global::ILGPU.Half>(), seed);
        else Floats(bytes.Cast<float>(), seed);
    }

    /// <summary>A 32-bit integer hash (lowbias32) of the element index and the seed.</summary>
    private static uint Hash(long index, uint seed)
    {
        uint h = (uint)index ^ (uint)(index >> 32) * 0x9E3779B9u ^ seed * 0x85EBCA6Bu;
        h ^= h >> 16;
        h *= 0x7FEB352Du;
        h ^= h >> 15;
        h *= 0x846CA68Bu;
        h ^= h >> 16;
        return h;
    }

    private static float Uniform(long index, uint seed) => (Hash(index, seed) >> 8) * (2f / (1 << 24)) - 1f;

    /// <param name="view">[n] f32</param>
    private static void FillFloats(Index1D thread, ArrayView<float> view, long n, int stride, uint seed)
    {
        for (long i = thread; i < n; i += stride)
            view[i] = Uniform(i, seed);
    }

    /// <param name="view">[n] f16</param>
    private static void FillHalves(Index1D thread, ArrayView<global::ILGPU.Half> view, long n, int stride, uint seed)
    {
        for (long i = thread; i < n; i += stride)
            view[i] = (global::ILGPU.Half)Uniform(i, seed);
    }
}
