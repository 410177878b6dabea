using System.Reflection;
using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using SpecializedInference.Kernels;

namespace SpecializedInference.Accelerators;

/// <summary>Which device the engine runs its kernels on.</summary>
public enum DeviceKind
{
    /// <summary>CUDA when a usable CUDA device exists, else the CPU accelerator.</summary>
    Auto,

    /// <summary>ILGPU's CPU accelerator, shaped like an NVIDIA GPU (warp 32, 1024 threads per group).</summary>
    Cpu,

    /// <summary>A CUDA device; fails with a clear error when none is usable.</summary>
    Cuda,
}

/// <summary>Which CUDA stream the engine's work goes to: ILGPU's <c>DefaultStream</c>, which every launch and copy uses.</summary>
public enum DeviceStream
{
    /// <summary>ILGPU's own: the legacy NULL stream.</summary>
    Legacy,

    /// <summary>
    /// A stream created non-blocking (<c>CU_STREAM_NON_BLOCKING</c>) and made ILGPU's default stream when the accelerator
    /// is created, before any kernel is loaded, so every launch, copy and programmatic launch of the process goes to it.
    /// For programmatic dependent launch, should the legacy stream not let kernels overlap (<c>launch-graph</c>'s PDL table
    /// has a row for each). The CPU accelerator has no streams: there it changes nothing.
    /// </summary>
    NonBlocking,
}

/// <summary>Names of <see cref="DeviceStream"/> on the command line.</summary>
public static class DeviceStreamNames
{
    /// <summary>Parses <c>legacy</c> or <c>non-blocking</c>.</summary>
    public static DeviceStream Parse(string text) => text switch
    {
        "legacy" => DeviceStream.Legacy,
        "non-blocking" => DeviceStream.NonBlocking,
        _ => throw new ArgumentException($"--stream '{text}': expected legacy or non-blocking"),
    };
}

/// <summary>How to create the ILGPU context and accelerator.</summary>
/// <param name="Device">Which device kind to use.</param>
/// <param name="CudaDeviceIndex">Which CUDA device, when several are present.</param>
/// <param name="OptimizationLevel">ILGPU's IR optimization level (O2 is Release).</param>
/// <param name="Profiling">Enables stream profiling markers (device-side timing for benchmarks).</param>
/// <param name="Stream">Which CUDA stream the accelerator's work goes to.</param>
public sealed record AcceleratorOptions(
    DeviceKind Device = DeviceKind.Auto,
    int CudaDeviceIndex = 0,
    OptimizationLevel OptimizationLevel = OptimizationLevel.O2,
    bool Profiling = false,
    DeviceStream Stream = DeviceStream.Legacy)
{
    public static AcceleratorOptions Default { get; } = new();
}

/// <summary>An ILGPU context and the accelerator created in it; disposing it releases both.</summary>
public sealed class AcceleratorHandle : IDisposable
{
    internal AcceleratorHandle(Context context, Accelerator accelerator, DeviceKind kind)
    {
        Context = context;
        Accelerator = accelerator;
        Kind = kind;
    }

    public Context Context { get; }

    public Accelerator Accelerator { get; }

    /// <summary><see cref="DeviceKind.Cpu"/> or <see cref="DeviceKind.Cuda"/>: what <see cref="DeviceKind.Auto"/> resolved to.</summary>
    public DeviceKind Kind { get; }

    /// <summary>One line for logs: the device kind and name.</summary>
    public string Description => $"{Kind.ToString().ToLowerInvariant()}: {Accelerator.Name} (warp {Accelerator.WarpSize}, " +
        $"{Accelerator.MaxNumThreadsPerGroup} threads/group, {Accelerator.MaxSharedMemoryPerGroup / 1024} KB shared/group" +
        (_ownStream is null ? "" : ", non-blocking stream") + ")";

    /// <summary>What an option asked for and did not get on this accelerator (<see cref="DeviceStream.NonBlocking"/> on the
    /// CPU accelerator); null when everything applies.</summary>
    public string? Notice { get; internal set; }

    /// <summary>The stream made ILGPU's default (<see cref="DeviceStream.NonBlocking"/>), and the one it replaced.</summary>
    private CudaStream? _ownStream;
    private AcceleratorStream? _replaced;

    /// <summary>ILGPU's <c>Accelerator.DefaultStream</c> has a private setter: the only way to move ILGPU's launches and
    /// copies to another stream.</summary>
    private static readonly MethodInfo? DefaultStreamSetter = typeof(Accelerator).GetProperty(nameof(Accelerator.DefaultStream))?.GetSetMethod(nonPublic: true);

    /// <summary>Whether this ILGPU lets <see cref="DeviceStream.NonBlocking"/> move its work to another stream.</summary>
    public static bool CanUseNonBlockingStream => DefaultStreamSetter is not null;

    /// <summary>Makes a new non-blocking stream ILGPU's default stream (<see cref="DeviceStream.NonBlocking"/>). Called
    /// right after the accelerator is created: kernels loaded before would keep launching on the old one.</summary>
    internal void UseNonBlockingStream()
    {
        if (Accelerator is not CudaAccelerator cuda) return;
        if (DefaultStreamSetter is null)
            throw new NotSupportedException("--stream non-blocking: this ILGPU has no Accelerator.DefaultStream setter to move its work to another stream");
        _replaced = cuda.DefaultStream;
        _ownStream = cuda.CreateStream(StreamFlags.CU_STREAM_NON_BLOCKING);
        DefaultStreamSetter.Invoke(cuda, [_ownStream]);
    }

    public void Dispose()
    {
        if (_ownStream is not null)
        {
            // Give ILGPU back its own stream to dispose with the accelerator, after the work on ours has finished.
            Accelerator.Synchronize();
            DefaultStreamSetter!.Invoke(Accelerator, [_replaced]);
            _ownStream.Dispose();
            _ownStream = null;
        }
        Accelerator.Dispose();
        Context.Dispose();
    }
}

/// <summary>
/// Creates the ILGPU context (algorithms enabled, O2) and an accelerator: CUDA when a CUDA device is usable,
/// else the CPU accelerator with a GPU-shaped device, so the same kernels run in tests without a GPU.
/// </summary>
public static class AcceleratorFactory
{
    private static int s_resolverRegistered;

    /// <summary>Creates a context and an accelerator as <paramref name="options"/> asks.</summary>
    /// <exception cref="InvalidOperationException">CUDA was asked for and no CUDA device is usable.</exception>
    public static AcceleratorHandle Create(AcceleratorOptions? options = null)
    {
        options ??= AcceleratorOptions.Default;
        if (options.Device != DeviceKind.Cpu)
        {
            var cuda = TryCreateCuda(options, out string? why);
            if (cuda is not null) return cuda;
            if (options.Device == DeviceKind.Cuda)
                throw new InvalidOperationException($"--device cuda: no usable CUDA device ({why}).");
        }
        return CreateCpu(options);
    }

    /// <summary>The CPU accelerator simulating an NVIDIA GPU: warp 32, 1024 threads per group, one OS thread
    /// per GPU thread (correct but slow: use tiny shapes). <paramref name="device"/>: another simulated device, e.g. with
    /// several multiprocessors, whose groups then run at the same time (the default has one, which runs a launch's
    /// groups one after another).</summary>
    public static AcceleratorHandle CreateCpu(AcceleratorOptions? options = null, CPUDevice? device = null)
    {
        options ??= AcceleratorOptions.Default;
        device ??= CPUDevice.Nvidia;
        var context = Context.Create(b => Configure(b.CPU(device), options));
        try
        {
            var accelerator = device.CreateCPUAccelerator(context, CPUAcceleratorMode.Parallel);
            return new AcceleratorHandle(context, accelerator, DeviceKind.Cpu)
            {
                Notice = options.Stream == DeviceStream.NonBlocking ? "--stream non-blocking has no effect: the CPU accelerator has no streams" : null,
            };
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    private static Context.Builder Configure(Context.Builder builder, AcceleratorOptions options)
    {
        builder.EnableAlgorithms().Optimize(options.OptimizationLevel);
        return options.Profiling ? builder.Profiling() : builder;
    }

    /// <summary>Whether a CUDA device can be opened on this machine (loads the driver once to find out).</summary>
    public static bool IsCudaAvailable()
    {
        using var handle = TryCreateCuda(AcceleratorOptions.Default, out _);
        return handle is not null;
    }

    private static AcceleratorHandle? TryCreateCuda(AcceleratorOptions options, out string? why)
    {
        RegisterCudaResolver();
        Context? context = null;
        try
        {
            context = Context.Create(b => Configure(b.Cuda(), options));
            var devices = context.GetCudaDevices();
            if (devices.Count == 0)
            {
                why = "the CUDA driver reports no devices, or libcuda.so / libcuda.so.1 could not be loaded";
                context.Dispose();
                return null;
            }
            if (options.CudaDeviceIndex < 0 || options.CudaDeviceIndex >= devices.Count)
            {
                why = $"CUDA device index {options.CudaDeviceIndex} is out of range: {devices.Count} device(s) present";
                context.Dispose();
                return null;
            }
            var accelerator = context.CreateCudaAccelerator(options.CudaDeviceIndex);
            why = null;
            var handle = new AcceleratorHandle(context, accelerator, DeviceKind.Cuda);
            context = null;   // the handle owns it now
            if (options.Stream == DeviceStream.NonBlocking)
            {
                try
                {
                    handle.UseNonBlockingStream();
                }
                catch
                {
                    handle.Dispose();
                    throw;
                }
            }
            return handle;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            why = ex.GetType().Name + ": " + ex.Message;
            context?.Dispose();
            return null;
        }
    }

    /// <summary>
    /// ILGPU imports the driver as "cuda", which Linux resolves to <c>libcuda.so</c>; many machines only ship
    /// <c>libcuda.so.1</c> (the dev symlink is missing). Registered once for ILGPU's assembly.
    /// </summary>
    public static void RegisterCudaResolver()
    {
        if (Interlocked.Exchange(ref s_resolverRegistered, 1) != 0) return;
        try
        {
            NativeLibrary.SetDllImportResolver(typeof(Context).Assembly, ResolveCuda);
        }
        catch (InvalidOperationException)
        {
            // ILGPU (or the host) registered its own resolver first; theirs stays in charge.
        }
    }

    private static IntPtr ResolveCuda(string libraryName, Assembly assembly, DllImportSearchPath? searchPath)
        => ResolveCuda(libraryName, candidate => NativeLibrary.TryLoad(candidate, assembly, searchPath, out var handle) ? handle : IntPtr.Zero);

    /// <summary>The driver's handle for ILGPU's import <paramref name="libraryName"/>: <c>libcuda.so</c>, else
    /// <c>libcuda.so.1</c>, each through <paramref name="tryLoad"/> (zero: not loaded). Zero for any other library, which
    /// the runtime then resolves as usual.</summary>
    internal static IntPtr ResolveCuda(string libraryName, Func<string, IntPtr> tryLoad)
    {
        if (libraryName is not ("cuda" or "nvcuda" or "libcuda" or "libcuda.so" or "libcuda.so.1")) return IntPtr.Zero;
        foreach (var candidate in CudaDriverCandidates)
            if (tryLoad(candidate) is var handle && handle != IntPtr.Zero) return handle;
        return IntPtr.Zero;
    }

    /// <summary>The file names the driver is looked for under, in order.</summary>
    internal static readonly string[] CudaDriverCandidates = ["libcuda.so", "libcuda.so.1"];

    /// <summary>Allocates one layer's paged KV cache (zeroed) on <paramref name="accelerator"/>.</summary>
    public static PagedKvCacheBuffer AllocateKvLayer(Accelerator accelerator, PagedKvCacheLayout layout)
        => PagedKvCacheBuffer.Allocate(accelerator, layout);
}
