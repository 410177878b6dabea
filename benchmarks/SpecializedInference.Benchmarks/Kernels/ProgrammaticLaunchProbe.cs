using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Benchmarks.Kernels;

/// <summary>
/// The second table of <c>launch-graph</c>: chains of dependent launches with programmatic dependent launch (PDL, sm_90),
/// which ILGPU 1.5.3 cannot ask for (it launches with <c>cuLaunchKernel</c>), so the probe launches ILGPU's compiled
/// kernels itself through <c>cuLaunchKernelEx</c> with <c>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION</c>.
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
/// The parameters are marshalled as ILGPU lays out these entry points (a view: its address and its length in elements,
/// 16 bytes; a long: 8), which the PTX of the kernels shows (<c>.param .align 8 .b8 _source[16]</c>). ILGPU 1.5.3 writes
/// <c>.target sm_80</c> whatever the device, and <c>griddepcontrol</c> needs sm_90: the probe loads each kernel's PTX
/// itself (<c>cuModuleLoadData</c>) with the target raised to the device's (ptxas sm_90 assembles it: <c>PREEXIT</c>
/// for the trigger).
/// </summary>
internal static class ProgrammaticLaunchProbe
{
    /// <summary>CUlaunchAttributeID: the kernel resolves its stream dependency itself (griddepcontrol).</summary>
    private const int ProgrammaticStreamSerialization = 6;

    /// <summary>The read, behind a programmatic dependency: lets the next launch start at once, then waits for the
    /// previous launch's memory before its loads (inputs that a previous kernel writes).</summary>
    internal static void WaitThenRead(ArrayView<F4> source, ArrayView<float> sink, long chunks)
    {
        CudaAsm.Emit("griddepcontrol.launch_dependents;");
        CudaAsm.Emit("griddepcontrol.wait;");
        float sum = ReadCeiling.ReadSum(source, chunks);
        if (sum < 0) sink[0] = sum;
    }

    /// <summary>The read, loading before it waits for the previous launch (inputs no kernel writes: weights); only its
    /// store, never taken, comes after the wait.</summary>
    internal static void ReadThenWait(ArrayView<F4> source, ArrayView<float> sink, long chunks)
    {
        CudaAsm.Emit("griddepcontrol.launch_dependents;");
        float sum = ReadCeiling.ReadSum(source, chunks);
        CudaAsm.Emit("griddepcontrol.wait;");
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
        var args = new ReadArgs(source, sink);
        var architecture = ((CudaAccelerator)accelerator).Architecture;
        if (architecture < CudaArchitecture.SM_90)
        {
            output.WriteLine($"| cuLaunchKernelEx + PDL | needs sm_90; this device is {architecture} |");
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
            IntPtr function;
            try
            {
                function = LoadFunction(accelerator, kernel.Method, architecture);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                output.WriteLine($"| {name} | did not load: {ex.GetType().Name}: {ex.Message.ReplaceLineEndings(" ")} |");
                continue;
            }
            Row(output, name, on, () => args.Launch(function, on, groups, programmatic));
        }
    }

    /// <summary>The kernel's function in a module of its own, from ILGPU's PTX with the target raised to the device's
    /// architecture (the module stays loaded with the context).</summary>
    private static unsafe IntPtr LoadFunction(Accelerator accelerator, System.Reflection.MethodInfo kernel, CudaArchitecture architecture)
    {
        var compiled = (PTXCompiledKernel)accelerator.CompileKernel(EntryPointDescription.FromExplicitlyGroupedKernel(kernel));
        string target = $".target sm_{architecture.Major}{architecture.Minor}";
        string ptx = Regex.Replace(compiled.PTXAssembly, @"^\.target sm_\d+", target, RegexOptions.Multiline);
        string entry = Regex.Match(ptx, @"\.entry\s+(\w+)\s*\(").Groups[1].Value;
        byte[] image = Encoding.ASCII.GetBytes(ptx + "\0");
        IntPtr module;
        fixed (byte* bytes = image)
            CudaDriver.Check(cuModuleLoadData(out module, bytes), $"cuModuleLoadData ({entry}, {target})");
        CudaDriver.Check(cuModuleGetFunction(out var function, module, entry), $"cuModuleGetFunction ({entry})");
        return function;
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
        catch (Exception ex) when (ex is CudaDriverException or CudaException or DllNotFoundException or EntryPointNotFoundException)
        {
            output.WriteLine($"| {name} | failed: {ex.Message.ReplaceLineEndings(" ")} |");
        }
    }

    /// <summary>The read kernels' parameters as ILGPU lays them out, one pointer to each for <c>cuLaunchKernelEx</c>.</summary>
    private sealed unsafe class ReadArgs(MemoryBuffer1D<F4, Stride1D.Dense> source, MemoryBuffer1D<float, Stride1D.Dense> sink)
    {
        private readonly ViewParameter _source = new(source.NativePtr.ToInt64(), source.Length);
        private readonly ViewParameter _sink = new(sink.NativePtr.ToInt64(), sink.Length);
        private readonly long _chunks = source.Length;

        public void Launch(IntPtr function, CudaStream stream, int groups, bool programmatic)
        {
            var sourceArg = _source;
            var sinkArg = _sink;
            long chunks = _chunks;
            void** parameters = stackalloc void*[3];
            parameters[0] = &sourceArg;
            parameters[1] = &sinkArg;
            parameters[2] = &chunks;
            var attribute = new LaunchAttribute { Id = ProgrammaticStreamSerialization, Value = 1 };
            var config = new LaunchConfig
            {
                GridDimX = (uint)groups, GridDimY = 1, GridDimZ = 1,
                BlockDimX = ReadCeiling.GroupSize, BlockDimY = 1, BlockDimZ = 1,
                Stream = stream.StreamPtr,
                Attributes = programmatic ? &attribute : null,
                AttributeCount = programmatic ? 1u : 0u,
            };
            CudaDriver.Check(cuLaunchKernelEx(&config, function, parameters, null), "cuLaunchKernelEx");
        }
    }

    /// <summary>An ArrayView entry parameter as ILGPU passes it: the address of its first element and its length.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private readonly record struct ViewParameter(long Address, long Length);

    /// <summary>CUlaunchConfig.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct LaunchConfig
    {
        public uint GridDimX, GridDimY, GridDimZ, BlockDimX, BlockDimY, BlockDimZ, SharedMemBytes;
        public IntPtr Stream;
        public LaunchAttribute* Attributes;
        public uint AttributeCount;
    }

    /// <summary>CUlaunchAttribute: the id, padding to 8 bytes, a 64-byte value union (here its first int).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 72)]
    private struct LaunchAttribute
    {
        [FieldOffset(0)] public int Id;
        [FieldOffset(8)] public int Value;
    }

    [DllImport("libcuda.so.1")]
    private static extern unsafe int cuLaunchKernelEx(LaunchConfig* config, IntPtr function, void** parameters, void** extra);

    [DllImport("libcuda.so.1")]
    private static extern unsafe int cuModuleLoadData(out IntPtr module, byte* image);

    [DllImport("libcuda.so.1", CharSet = CharSet.Ansi, BestFitMapping = false)]
    private static extern int cuModuleGetFunction(out IntPtr function, IntPtr module, [MarshalAs(UnmanagedType.LPStr)] string name);
}
