using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// The second table of <c>launch-graph</c>: chains of dependent launches with programmatic dependent launch (PDL, sm_90),
/// which ILGPU 1.5.3 cannot ask for (it launches with <c>cuLaunchKernel</c>), through the engine's
/// <see cref="ProgrammaticLauncher"/> (<c>cuLaunchKernelEx</c>, the PTX target raised to sm_90, the arguments marshalled
/// by <see cref="KernelParameters"/>).
/// <para>Why: at batch 1 each of TinyLlama's ~113 launches a step pays about 4 µs before its bytes count (run 12), and a
/// decode attention call 1.8 µs more than its kernel (run 25). Under PDL a kernel lets the next one start as soon as it
/// says so (<c>griddepcontrol.launch_dependents</c>), and the next waits for its memory only where it must
/// (<c>griddepcontrol.wait</c>). A matvec's weights depend on nothing the kernel before it writes, so it could load its
/// first steps before waiting: the previous kernel's tail and this one's launch and first round trip would overlap.</para>
/// Rows, each a chain of an 8 MiB read (TinyLlama's o_proj) launched 100 times:
/// <list type="bullet">
/// <item>ILGPU's own launch of the plain read (the baseline, as <c>launch-graph</c>'s first table);</item>
/// <item>the probe's <c>cuLaunchKernelEx</c> without the attribute (what the launch path alone costs);</item>
/// <item>with PDL, waiting before its loads (what a kernel whose inputs are the previous one's outputs gains);</item>
/// <item>with PDL, loading before its wait (what a matvec, whose weights are inputs of no kernel, could gain).</item>
/// </list>
/// </summary>
internal static class ProgrammaticLaunchProbe
{
    /// <summary>The read, behind a programmatic dependency: lets the next launch start at once, then waits for the
    /// previous launch's memory before its loads (inputs that a previous kernel writes).</summary>
    /// <param name="source">[chunks] the 16-byte chunks read</param>
    /// <param name="sink">[1] written only if the sum were negative (never): keeps the loads</param>
    internal static void WaitThenRead(ArrayView<F4> source, ArrayView<float> sink, long chunks)
    {
        ProgrammaticDependency.LetTheNextStart();
        ProgrammaticDependency.WaitForThePrevious();
        float sum = ReadCeiling.ReadSum(source, chunks);
        if (sum < 0) sink[0] = sum;
    }

    /// <summary>The read, loading before it waits for the previous launch (inputs no kernel writes: weights); only its
    /// store, never taken, comes after the wait.</summary>
    /// <param name="source">[chunks] the 16-byte chunks read</param>
    /// <param name="sink">[1] written only if the sum were negative (never): keeps the loads</param>
    internal static void ReadThenWait(ArrayView<F4> source, ArrayView<float> sink, long chunks)
    {
        ProgrammaticDependency.LetTheNextStart();
        float sum = ReadCeiling.ReadSum(source, chunks);
        ProgrammaticDependency.WaitForThePrevious();
        if (sum < 0) sink[0] = sum;
    }

    public static void Run(Accelerator accelerator, CudaStream stream, MemoryBuffer1D<F4, Stride1D.Dense> source, MemoryBuffer1D<float, Stride1D.Dense> sink,
        TextWriter output)
    {
        long chunks = source.Length;
        int groups = (int)(chunks / (ReadCeiling.GroupSize * ReadCeiling.ChunksPerThread));
        var read = accelerator.LoadKernel<ArrayView<F4>, ArrayView<float>, long>(ReadCeiling.ReadKernel);
        output.WriteLine();
        output.WriteLine($"Programmatic dependent launch: chains of {LaunchGraphProbe.Chain} reads of 8 MiB ({groups} groups of {ReadCeiling.GroupSize}), median of {LaunchGraphProbe.Repetitions}");
        output.WriteLine("| launch | µs a launch |");
        output.WriteLine("|---|---:|");
        Row(output, "ILGPU's launch, plain read", stream, () => read(stream, new KernelConfig(groups, ReadCeiling.GroupSize), source.View, sink.View, chunks));
        if (ProgrammaticLauncher.For(accelerator, out string? whyNot) is not { } launcher)
        {
            output.WriteLine($"| cuLaunchKernelEx + PDL | {whyNot} |");
            return;
        }
        // The last row on ILGPU's default stream, the legacy one every engine launch goes to: whether PDL holds there too.
        var legacy = (CudaStream)accelerator.DefaultStream;
        foreach (var (name, kernel, programmatic, on) in new (string, Action<ArrayView<F4>, ArrayView<float>, long>, bool, CudaStream)[]
                 {
                     ("cuLaunchKernelEx, plain read, no PDL", ReadCeiling.ReadKernel, false, stream),
                     ("cuLaunchKernelEx + PDL, wait then read", WaitThenRead, true, stream),
                     ("cuLaunchKernelEx + PDL, read then wait", ReadThenWait, true, stream),
                     ("cuLaunchKernelEx + PDL, read then wait, ILGPU's default (legacy) stream", ReadThenWait, true, legacy),
                 })
        {
            ProgrammaticLauncher.ProgrammaticKernel loaded;
            try
            {
                loaded = launcher.Get(kernel.Method);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                output.WriteLine($"| {name} | did not load: {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")} |");
                continue;
            }
            var config = new KernelConfig(groups, ReadCeiling.GroupSize);
            Row(output, name, on, () => loaded.Arguments().Add((ArrayView<F4>)source.View).Add((ArrayView<float>)sink.View).Add(chunks).Launch(on, programmatic, config));
        }
    }

    private static void Row(TextWriter output, string name, CudaStream stream, Action launch)
    {
        try
        {
            for (int i = 0; i < LaunchGraphProbe.Chain; i++) launch();   // compile and warm up
            stream.Synchronize();
            double perLaunch = LaunchGraphProbe.Median(() =>
            {
                for (int i = 0; i < LaunchGraphProbe.Chain; i++) launch();
                stream.Synchronize();
            }) / LaunchGraphProbe.Chain;
            output.WriteLine($"| {name} | {perLaunch:F2} |");
        }
        catch (Exception ex) when (ex is CudaException or DllNotFoundException or EntryPointNotFoundException)
        {
            output.WriteLine($"| {name} | failed: {ex.Message.ReplaceLineEndings(" ")} |");
        }
    }
}
