using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpecializedInference.Accelerators;

namespace SpecializedInference.Benchmarks.Infrastructure;

/// <summary>The accelerator a benchmark run uses (from <see cref="AcceleratorFactory"/>), and what the report says about it.</summary>
public sealed class BenchDevice : IDisposable
{
    private readonly AcceleratorHandle _handle;

    private BenchDevice(AcceleratorHandle handle) => _handle = handle;

    public Context Context => _handle.Context;

    public Accelerator Accelerator => _handle.Accelerator;

    public bool IsCuda => _handle.Kind == DeviceKind.Cuda;

    /// <summary>"cuda" or "cpu".</summary>
    public string KindName => IsCuda ? "cuda" : "cpu";

    /// <summary>The card's name (or the CPU accelerator's), as ILGPU reports it.</summary>
    public string Name => Accelerator.Name;

    public string Description => IsCuda
        ? $"{Accelerator.Name} ({Accelerator.MemorySize / (1L << 30)} GiB, CUDA driver {((CudaAccelerator)Accelerator).DriverVersion}, " +
          $"ILGPU PTX {((CudaAccelerator)Accelerator).Architecture})"
        : $"ILGPU CPU accelerator ({Accelerator.Name}, warp {Accelerator.WarpSize}, {Environment.ProcessorCount} cores; " +
          "it simulates one OS thread per GPU thread, so its timings say nothing about a GPU)";

    /// <summary>Parses --device: cuda, cpu or auto.</summary>
    public static DeviceKind Parse(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" or "auto" => DeviceKind.Auto,
        "cpu" => DeviceKind.Cpu,
        "cuda" or "gpu" => DeviceKind.Cuda,
        _ => throw new ArgumentException($"--device '{text}': expected cuda, cpu or auto."),
    };

    /// <summary>Creates the accelerator, with profiling markers (device time between two points of a stream: the
    /// report's stage timelines); <see cref="DeviceKind.Cuda"/> fails with a clear error when no CUDA device is usable.</summary>
    /// <param name="stream">Which CUDA stream every launch goes to (<see cref="DeviceStream"/>: the report's <c>--stream</c>).</param>
    public static BenchDevice Create(DeviceKind kind, DeviceStream stream = DeviceStream.Legacy) =>
        new(AcceleratorFactory.Create(new AcceleratorOptions(kind, Profiling: true, Stream: stream)));

    /// <summary><see cref="Create"/> for a command's entry: the device, or null with why it is not usable (no CUDA device
    /// for <see cref="DeviceKind.Cuda"/>) in <paramref name="error"/>, for the command to print and exit on.</summary>
    public static BenchDevice? TryCreate(DeviceKind kind, out string error, DeviceStream stream = DeviceStream.Legacy)
    {
        try
        {
            error = "";
            return Create(kind, stream);
        }
        catch (InvalidOperationException ex)
        {
            error = ex.Message;
            return null;
        }
    }

    /// <summary>The device kind a BenchmarkDotNet run uses: <c>SI_BENCH_DEVICE</c> (cuda, cpu, auto; default auto).</summary>
    public static DeviceKind FromEnvironment() => Parse(Environment.GetEnvironmentVariable("SI_BENCH_DEVICE"));

    public void Dispose() => _handle.Dispose();
}
