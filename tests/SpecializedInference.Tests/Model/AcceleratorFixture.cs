using ILGPU.Runtime;
using SpecializedInference.Accelerators;

namespace SpecializedInference.Tests.Model;

/// <summary>One GPU-shaped CPU accelerator shared by a test class (creating one costs seconds).</summary>
public sealed class AcceleratorFixture : IDisposable
{
    private readonly AcceleratorHandle _handle = AcceleratorFactory.CreateCpu();

    public Accelerator Accelerator => _handle.Accelerator;

    public AcceleratorHandle Handle => _handle;

    public void Dispose() => _handle.Dispose();
}
