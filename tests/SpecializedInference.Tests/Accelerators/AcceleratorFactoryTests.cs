using ILGPU.Runtime.CPU;
using SpecializedInference.Accelerators;

namespace SpecializedInference.Tests.Accelerators;

/// <summary>The accelerator factory's choices that a machine without a GPU can check: the driver's file names, and
/// what auto and cuda do when no CUDA device opens.</summary>
public sealed class AcceleratorFactoryTests
{
    /// <summary>ILGPU imports the driver as "cuda": libcuda.so first, libcuda.so.1 where only that exists (no dev symlink),
    /// nothing when neither loads; other libraries are left to the runtime.</summary>
    [Fact]
    public void TheDriverIsLibcudaSoElseLibcudaSo1()
    {
        var tried = new List<string>();
        IntPtr OnlySo1(string name)
        {
            tried.Add(name);
            return name == "libcuda.so.1" ? 42 : IntPtr.Zero;
        }
        Assert.Equal(42, AcceleratorFactory.ResolveCuda("cuda", OnlySo1));
        Assert.Equal(["libcuda.so", "libcuda.so.1"], tried);

        Assert.Equal(7, AcceleratorFactory.ResolveCuda("nvcuda", name => name == "libcuda.so" ? 7 : 8));
        Assert.Equal(IntPtr.Zero, AcceleratorFactory.ResolveCuda("cuda", _ => IntPtr.Zero));
        tried.Clear();
        Assert.Equal(IntPtr.Zero, AcceleratorFactory.ResolveCuda("libSystem.Native", OnlySo1));
        Assert.Empty(tried);
    }

    /// <summary>Where no CUDA device opens, auto falls back to the GPU-shaped CPU accelerator (warp 32, 1024 threads a
    /// group) and cuda is an error that says why; where one does, both open it.</summary>
    [Fact]
    public void AutoFallsBackToTheCpuAndCudaSaysWhyNot()
    {
        bool cuda = AcceleratorFactory.IsCudaAvailable();
        using (var auto = AcceleratorFactory.Create(new AcceleratorOptions(DeviceKind.Auto)))
        {
            Assert.Equal(cuda ? DeviceKind.Cuda : DeviceKind.Cpu, auto.Kind);
            if (!cuda)
            {
                var cpu = Assert.IsType<CPUAccelerator>(auto.Accelerator);
                Assert.Equal(32, cpu.WarpSize);
                Assert.Equal(1024, cpu.MaxNumThreadsPerGroup);
            }
        }
        if (cuda)
        {
            using var opened = AcceleratorFactory.Create(new AcceleratorOptions(DeviceKind.Cuda));
            Assert.Equal(DeviceKind.Cuda, opened.Kind);
            return;
        }
        var e = Assert.Throws<InvalidOperationException>(() => AcceleratorFactory.Create(new AcceleratorOptions(DeviceKind.Cuda)));
        Assert.StartsWith("--device cuda: no usable CUDA device (", e.Message);
        Assert.True(e.Message.Length > "--device cuda: no usable CUDA device ()".Length + 10, e.Message);
    }
}
