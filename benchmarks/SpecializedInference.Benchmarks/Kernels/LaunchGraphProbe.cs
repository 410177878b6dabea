using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpecializedInference.Accelerators;
using SpecializedInference.Benchmarks.Infrastructure;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// <c>launch-graph</c>: what a chain of short launches costs launched one by one through ILGPU, against the same chain
/// captured once into a CUDA graph and replayed (<c>cuStreamBeginCapture</c> … <c>cuGraphLaunch</c>, driver API).
/// <para>Why: TinyLlama's batch-1 decode step is ~113 launches of 4–19 µs for a 509 µs weight-read floor (run 12), and
/// run 25 measured a decode call 1.8 µs longer than its kernel. A graph replays a step's launches without the host
/// issuing each one (<see cref="CudaGraph"/>, which the runner replays decode steps with: ModelOptions.CudaGraphs). This says (1) whether ILGPU's launches can be captured
/// at all (on a stream of its own: ILGPU's default stream is the legacy one, which cannot be), and (2) what a launch
/// costs each way, for an empty kernel and for one that streams 8 MiB (TinyLlama's o_proj).</para>
/// CUDA on Linux only (<c>libcuda.so.1</c>).
/// </summary>
public static class LaunchGraphProbe
{
    internal const int Chain = 100, Repetitions = 21;

    /// <returns>0, or 2 without a usable CUDA device (said on <paramref name="output"/>).</returns>
    public static int Run(TextWriter output)
    {
        if (BenchDevice.TryCreate(DeviceKind.Cuda, out string noDevice) is not { } device)
        {
            output.WriteLine($"launch-graph: {noDevice}");
            return 2;
        }

        using (device)
            return Run(device, output);
    }

    private static int Run(BenchDevice device, TextWriter output)
    {
        var accelerator = device.Accelerator;
        using var stream = (CudaStream)accelerator.CreateStream();
        long chunks = (8L << 20) / 16;
        using var source = accelerator.Allocate1D<F4>(chunks);
        source.MemSet(0x3f); // every float 0.746: ReadCeiling's read never writes its sum
        using var sink = accelerator.Allocate1D<float>(1);
        // ReadCeiling's kernels (an empty launch, a read with 4 chunks per thread in flight), here on a stream of the probe's own.
        var empty = accelerator.LoadKernel<ArrayView<float>, int>(ReadCeiling.EmptyKernel);
        var read = accelerator.LoadKernel<ArrayView<F4>, ArrayView<float>, long>(ReadCeiling.ReadKernel);
        int readGroups = (int)(chunks / (ReadCeiling.GroupSize * ReadCeiling.ChunksPerThread));

        output.WriteLine($"launch-graph on {device.Description}: chains of {Chain} launches, median of {Repetitions}");
        output.WriteLine("| kernel | one by one, µs a launch | captured graph, µs a launch | capture + instantiate, ms |");
        output.WriteLine("|---|---:|---:|---:|");
        foreach (var (name, launch) in new (string, Action)[]
                 {
                     ("empty (1 group of 32)", () => empty(stream, new KernelConfig(1, 32), sink.View, 0)),
                     ($"read 8 MiB ({readGroups} groups of {ReadCeiling.GroupSize})",
                         () => read(stream, new KernelConfig(readGroups, ReadCeiling.GroupSize), source.View, sink.View, chunks)),
                 })
        {
            for (int i = 0; i < Chain; i++) launch();   // compile and warm up
            stream.Synchronize();
            double direct = Median(() =>
            {
                for (int i = 0; i < Chain; i++) launch();
                stream.Synchronize();
            }) / Chain;

            string graphed, setup;
            try
            {
                var clock = Stopwatch.StartNew();
                using var graph = CudaGraph.Capture(stream, () =>
                {
                    for (int i = 0; i < Chain; i++) launch();
                });
                setup = $"{clock.Elapsed.TotalMilliseconds:F2}";
                graph.Launch();
                stream.Synchronize();
                graphed = $"{Median(() =>
                {
                    graph.Launch();
                    stream.Synchronize();
                }) / Chain:F2}";
            }
            catch (Exception ex) when (ex is CudaException or DllNotFoundException or EntryPointNotFoundException)
            {
                (graphed, setup) = ($"failed: {ex.Message}", "—");
            }
            output.WriteLine($"| {name} | {direct:F2} | {graphed} | {setup} |");
        }
        ProgrammaticLaunchProbe.Run(accelerator, stream, source, sink, output);
        return 0;
    }

    /// <summary>Median µs of <paramref name="run"/> over <see cref="Repetitions"/> runs.</summary>
    internal static double Median(Action run)
    {
        var times = new double[Repetitions];
        for (int r = 0; r < Repetitions; r++)
        {
            var clock = Stopwatch.StartNew();
            run();
            times[r] = clock.Elapsed.TotalMicroseconds;
        }
        Array.Sort(times);
        return times[Repetitions / 2];
    }
}
