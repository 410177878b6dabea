using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Runtime;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// Seeded random inputs in [-1, 1), generated on the device (<see cref="DeviceRandom"/>): a 10 GB KV cache would
/// take minutes to generate on the host and upload.
/// </summary>
public sealed class DeviceFill(Accelerator accelerator)
{
    private readonly DeviceRandom _random = DeviceRandom.For(accelerator);

    public void Floats(ArrayView<float> view, uint seed) => _random.Floats(view, seed);

    /// <summary>A KV cache buffer (bytes) in its dtype.</summary>
    public void Cache(ArrayView<byte> bytes, KvDtype dtype, uint seed)
    {
        if (dtype == KvDtype.F16) _random.Halves(bytes.Cast<global::ILGPU.Half>(), seed);
        else _random.Floats(bytes.Cast<float>(), seed);
    }
}
