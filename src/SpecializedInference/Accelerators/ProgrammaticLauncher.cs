using System.Reflection;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Accelerators;

/// <summary>
/// Launches ILGPU-compiled kernels with programmatic dependent launch (PDL, sm_90): <c>cuLaunchKernelEx</c> with
/// <c>CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION</c>, which ILGPU 1.5.3's launcher (<c>cuLaunchKernel</c>)
/// cannot ask for. Such a kernel may start while the one before it in the stream still runs, once that one has said so
/// (<c>griddepcontrol.launch_dependents</c>), and must wait for it (<c>griddepcontrol.wait</c>) before it reads what it
/// wrote: what it loads before the wait (weights) overlaps the previous kernel's tail and its own launch.
/// <para>ILGPU writes <c>.target sm_80</c> whatever the device, and ptxas takes <c>griddepcontrol</c> from sm_90 on,
/// so each kernel's PTX is loaded with the target raised to the device's (through ILGPU's own loader,
/// <see cref="RegisterLimitedKernels.WithPtx"/>). Its arguments are marshalled as ILGPU passes them
/// (<see cref="KernelParameters"/>), checked against the sizes its PTX declares when it loads.</para>
/// </summary>
public sealed partial class ProgrammaticLauncher
{
    /// <summary>CUlaunchAttributeID: the kernel resolves its stream dependency itself (griddepcontrol).</summary>
    private const int ProgrammaticStreamSerialization = 6;

    private readonly CudaAccelerator _accelerator;
    private readonly Dictionary<(MethodInfo, int), ProgrammaticKernel> _kernels = new();

    private ProgrammaticLauncher(CudaAccelerator accelerator) => _accelerator = accelerator;

    /// <summary>A launcher for <paramref name="accelerator"/>, or null with the reason when it has no programmatic
    /// launches (not CUDA, below sm_90, or an ILGPU without the internal loader the raised target needs).</summary>
    public static ProgrammaticLauncher? For(Accelerator accelerator, out string? whyNot)
    {
        whyNot = accelerator is not CudaAccelerator cuda ? $"{accelerator.AcceleratorType} has no programmatic dependent launch"
            : cuda.Architecture < CudaArchitecture.SM_90 ? $"programmatic dependent launch needs sm_90; {accelerator.Name} is {cuda.Architecture}"
            : RegisterLimitedKernels.Notice;
        return whyNot is null ? new ProgrammaticLauncher((CudaAccelerator)accelerator) : null;
    }

    /// <summary>The kernel <paramref name="kernel"/> (explicitly grouped), compiled and loaded on first use, with at most
    /// <paramref name="maxRegisters"/> registers a thread (0: the compiler's choice).</summary>
    /// <exception cref="NotSupportedException">Its parameters are not laid out as its PTX declares them.</exception>
    public ProgrammaticKernel Get(MethodInfo kernel, int maxRegisters = 0)
    {
        if (!_kernels.TryGetValue((kernel, maxRegisters), out var loaded))
        {
            loaded = Load(kernel, maxRegisters);
            _kernels[(kernel, maxRegisters)] = loaded;
        }
        return loaded;
    }

    /// <summary><see cref="Get"/> as a launch delegate shaped like ILGPU's <c>LoadStreamKernel</c> (the generated decodes').</summary>
    public Action<ILGPU.KernelConfig, T1, T2, T3, T4, T5> Load<T1, T2, T3, T4, T5>(Action<T1, T2, T3, T4, T5> kernel, int maxRegisters = 0)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
    {
        var loaded = Get(kernel.Method, maxRegisters);
        return (config, a1, a2, a3, a4, a5) => loaded.Arguments().Add(a1).Add(a2).Add(a3).Add(a4).Add(a5).Launch(config);
    }

    /// <summary>The seven-parameter <see cref="Load{T1, T2, T3, T4, T5}"/> (the decode matvecs').</summary>
    public Action<ILGPU.KernelConfig, T1, T2, T3, T4, T5, T6, T7> Load<T1, T2, T3, T4, T5, T6, T7>(Action<T1, T2, T3, T4, T5, T6, T7> kernel, int maxRegisters = 0)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
    {
        var loaded = Get(kernel.Method, maxRegisters);
        return (config, a1, a2, a3, a4, a5, a6, a7) => loaded.Arguments().Add(a1).Add(a2).Add(a3).Add(a4).Add(a5).Add(a6).Add(a7).Launch(config);
    }

    /// <summary>The nine-parameter <see cref="Load{T1, T2, T3, T4, T5}"/> (the fused decode matvecs').</summary>
    public Action<ILGPU.KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> Load<T1, T2, T3, T4, T5, T6, T7, T8, T9>(
        Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel, int maxRegisters = 0)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
        where T6 : struct
        where T7 : struct
        where T8 : struct
        where T9 : struct
    {
        var loaded = Get(kernel.Method, maxRegisters);
        return (config, a1, a2, a3, a4, a5, a6, a7, a8, a9) =>
            loaded.Arguments().Add(a1).Add(a2).Add(a3).Add(a4).Add(a5).Add(a6).Add(a7).Add(a8).Add(a9).Launch(config);
    }

    private ProgrammaticKernel Load(MethodInfo kernel, int maxRegisters)
    {
        var compiled = (PTXCompiledKernel)_accelerator.CompileKernel(EntryPointDescription.FromExplicitlyGroupedKernel(kernel));
        var architecture = _accelerator.Architecture;
        string ptx = TargetLine().Replace(compiled.PTXAssembly, $".target sm_{architecture.Major}{architecture.Minor}", 1);
        if (maxRegisters > 0) ptx = RegisterLimitedKernels.WithMaxRegisters(ptx, maxRegisters);

        var parameters = kernel.GetParameters().Select(p => p.ParameterType).ToArray();
        var declared = KernelParameters.PtxSizes(ptx);
        var sizes = parameters.Select(t => KernelParameters.Of(t).Size).ToArray();
        if (!declared.SequenceEqual(sizes))
            throw new NotSupportedException($"{kernel.Name}: its PTX declares parameters of [{string.Join(", ", declared)}] bytes, the layout here gives " +
                $"[{string.Join(", ", sizes)}] ({string.Join(", ", parameters.Select(t => t.Name))}): not launched programmatically");
        var loaded = (CudaKernel)_accelerator.LoadKernel(RegisterLimitedKernels.WithPtx(compiled, ptx));
        return new ProgrammaticKernel(loaded, parameters, ((CudaStream)_accelerator.DefaultStream).StreamPtr);
    }

    [GeneratedRegex(@"^\.target sm_\d+", RegexOptions.Multiline)]
    private static partial Regex TargetLine();

    /// <summary>One loaded kernel and its parameters' places in a launch's argument buffer.</summary>
    public sealed unsafe class ProgrammaticKernel
    {
        private readonly CudaKernel _kernel;   // holds the module
        private readonly Type[] _types;
        private readonly int[] _offsets;
        private readonly byte[] _arguments;
        private readonly IntPtr _stream;

        internal ProgrammaticKernel(CudaKernel kernel, Type[] types, IntPtr stream)
        {
            (_kernel, _types, _stream) = (kernel, types, stream);
            _offsets = new int[types.Length];
            int at = 0;
            for (int i = 0; i < types.Length; i++)
            {
                var (size, alignment) = KernelParameters.Of(types[i]);
                _offsets[i] = at = KernelParameters.Align(at, alignment);
                at += size;
            }
            _arguments = GC.AllocateArray<byte>(Math.Max(1, at), pinned: true);
        }

        /// <summary>The arguments of the next launch, added in the kernel's parameter order:
        /// <c>kernel.Arguments().Add(a).Add(b)….Launch(config)</c>. Each is written where ILGPU would put it, typed (no
        /// boxing: a launch allocates nothing); the driver copies them when the launch is enqueued.</summary>
        public Args Arguments() => new(this, 0);

        /// <summary>A launch being put together (<see cref="Arguments"/>).</summary>
        public readonly struct Args(ProgrammaticKernel kernel, int count)
        {
            /// <summary>The next parameter's argument, which must be of its exact type.</summary>
            public Args Add<T>(T value) where T : struct
            {
                if (count >= kernel._types.Length || kernel._types[count] != typeof(T))
                    throw new ArgumentException(count >= kernel._types.Length
                        ? $"argument {count}: the kernel takes {kernel._types.Length}"
                        : $"argument {count} is a {typeof(T).Name}; the kernel takes a {kernel._types[count].Name}");
                KernelParameters.Write(value, kernel._arguments, kernel._offsets[count]);
                return new Args(kernel, count + 1);
            }

            /// <summary>Enqueues the kernel on the accelerator's default stream, the one ILGPU's launches use.</summary>
            public void Launch(ILGPU.KernelConfig config) => LaunchOn(kernel._stream, programmatic: true, config);

            /// <summary>Enqueues it on <paramref name="stream"/>, without the programmatic attribute when
            /// <paramref name="programmatic"/> is false (the launch-graph probe's baseline).</summary>
            public void Launch(CudaStream stream, bool programmatic, ILGPU.KernelConfig config) => LaunchOn(stream.StreamPtr, programmatic, config);

            private void LaunchOn(IntPtr stream, bool programmatic, ILGPU.KernelConfig config)
            {
                if (count != kernel._types.Length)
                    throw new ArgumentException($"{count} arguments for {kernel._types.Length} parameters");
                kernel.Launch(stream, programmatic, config);
            }
        }

        private void Launch(IntPtr stream, bool programmatic, ILGPU.KernelConfig config)
        {
            if (config.UsesDynamicSharedMemory)
                throw new NotSupportedException("programmatic launches of kernels with dynamic shared memory");
            void** parameters = stackalloc void*[_types.Length];
            fixed (byte* arguments0 = _arguments)
            {
                for (int i = 0; i < _types.Length; i++) parameters[i] = arguments0 + _offsets[i];
                var attribute = new LaunchAttribute { Id = ProgrammaticStreamSerialization, Value = 1 };
                var launch = new LaunchConfig
                {
                    GridDimX = (uint)config.GridDim.X, GridDimY = (uint)config.GridDim.Y, GridDimZ = (uint)config.GridDim.Z,
                    BlockDimX = (uint)config.GroupDim.X, BlockDimY = (uint)config.GroupDim.Y, BlockDimZ = (uint)config.GroupDim.Z,
                    Stream = stream,
                    Attributes = programmatic ? &attribute : null,
                    AttributeCount = programmatic ? 1u : 0u,
                };
                int result = cuLaunchKernelEx(&launch, _kernel.FunctionPtr, parameters, null);
                if (result != 0) throw new CudaException((CudaError)result);
            }
        }
    }

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
}
