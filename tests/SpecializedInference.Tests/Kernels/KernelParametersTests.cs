using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Tests.Model;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// The argument bytes of a programmatic launch (<see cref="ProgrammaticLauncher"/>), which passes ILGPU's compiled kernels
/// their arguments itself: a wrong offset would hand a kernel a wrong address on a GPU. Here the bytes are read back at
/// the offsets C gives the fields; PtxCompilationTests checks the sizes against the <c>.param</c>s the PTX declares.
/// </summary>
public sealed class KernelParametersTests(AcceleratorFixture fixture) : IClassFixture<AcceleratorFixture>
{
    /// <summary>What <c>--stream non-blocking</c> needs of ILGPU (a setter of <c>Accelerator.DefaultStream</c>): an ILGPU
    /// upgrade without one fails here, not on the next GPU run. A CPU accelerator asked for one says it has no streams.</summary>
    [Fact]
    public void ANonBlockingStreamCanBecomeIlgpusDefaultAndTheCpuAcceleratorSaysItHasNone()
    {
        Assert.True(AcceleratorHandle.CanUseNonBlockingStream);
        using var cpu = AcceleratorFactory.CreateCpu(new AcceleratorOptions(DeviceKind.Cpu, Stream: DeviceStream.NonBlocking));
        Assert.Equal("--stream non-blocking has no effect: the CPU accelerator has no streams", cpu.Notice);
        using var plain = AcceleratorFactory.CreateCpu();
        Assert.Null(plain.Notice);
    }

    [Fact]
    public void StructFieldsGoInDeclarationOrderAtTheirNaturalAlignment()
    {
        // long Next, long Lines, int FirstWarp, int EndWarp, int AtStart, (4 bytes of padding), long Own: 40 bytes.
        var prefetch = new L2Prefetch { Next = 11, Lines = 12, FirstWarp = 13, EndWarp = 14, AtStart = 1, Own = 16 };
        Assert.Equal((40, 8), KernelParameters.Of(typeof(L2Prefetch)));
        var bytes = Written(prefetch, at: 8);
        Assert.Equal(new long[] { 11, 12 }, new[] { BitConverter.ToInt64(bytes, 8), BitConverter.ToInt64(bytes, 16) });
        Assert.Equal(new[] { 13, 14, 1 }, new[] { BitConverter.ToInt32(bytes, 24), BitConverter.ToInt32(bytes, 28), BitConverter.ToInt32(bytes, 32) });
        Assert.Equal(16, BitConverter.ToInt64(bytes, 40));
        Assert.All(bytes[..8], b => Assert.Equal(0xEE, b));   // nothing written before the offset
        Assert.Equal((4, 4), KernelParameters.Of(typeof(float)));
        Assert.Throws<NotSupportedException>(() => KernelParameters.Of(typeof(bool)));
    }

    [Fact]
    public void AViewIsItsFirstElementsDeviceAddressAndItsLength()
    {
        using var buffer = fixture.Accelerator.Allocate1D<float>(64);
        var view = ((ArrayView<float>)buffer.View).SubView(5, 20);
        Assert.Equal((16, 8), KernelParameters.Of(typeof(ArrayView<float>)));
        var bytes = Written(view);
        Assert.Equal(buffer.NativePtr.ToInt64() + 5 * sizeof(float), BitConverter.ToInt64(bytes, 0));
        Assert.Equal(20, BitConverter.ToInt64(bytes, 8));
        // A cast view counts its own elements: 16-byte chunks of the same bytes.
        var chunks = ((ArrayView<float>)buffer.View).SubView(8, 32).Cast<Bits128>();
        bytes = Written(chunks);
        Assert.Equal((buffer.NativePtr.ToInt64() + 8 * sizeof(float), 8L), (BitConverter.ToInt64(bytes, 0), BitConverter.ToInt64(bytes, 8)));
        // A struct holding a view and an int (RowPairOutput): 16 + 4, padded to 24.
        Assert.Equal((24, 8), KernelParameters.Of(typeof(RowPairOutput)));
    }

    private static byte[] Written<T>(T value, int at = 0) where T : struct
    {
        var bytes = Enumerable.Repeat((byte)0xEE, at + KernelParameters.Of(typeof(T)).Size).ToArray();
        KernelParameters.Write(value, bytes, at);
        return bytes;
    }
}
