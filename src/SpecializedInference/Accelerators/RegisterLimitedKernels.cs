using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Accelerators;

/// <summary>
/// Loads explicitly grouped kernels with a cap on registers per thread. ILGPU 1.5.3 has no launch bounds, and
/// ptxas, told nothing about the group size, takes up to 255 registers: on the H200 the generated decode and
/// prefill took 254–255 and so ran two 128-thread groups per SM, 12.5% occupancy (ncu, 2026-11-26). On CUDA the
/// kernel's PTX gets a <c>.maxnreg</c> directive and is loaded through ILGPU's <see cref="PTXCompiledKernel"/>
/// constructor, which is internal and reached by reflection (<see cref="IsAvailable"/>; if a later ILGPU changes it
/// the kernel loads uncapped and <see cref="Notice"/> says why). On the CPU accelerator a cap means nothing and the
/// kernel loads as usual.
/// </summary>
public static partial class RegisterLimitedKernels
{
    private static readonly ConstructorInfo? PtxKernelConstructor = typeof(PTXCompiledKernel).GetConstructor(
        BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public, binder: null,
        [typeof(Context), typeof(EntryPoint), typeof(CompiledKernel.KernelInfo), typeof(string)], modifiers: null);

    private static readonly MethodInfo? EntryPointGetter = typeof(CompiledKernel)
        .GetProperty("EntryPoint", BindingFlags.Instance | BindingFlags.NonPublic | BindingFlags.Public)?.GetMethod;

    /// <summary>Whether this ILGPU exposes what a capped load needs (checked by a test, so an upgrade that breaks it fails CI).</summary>
    public static bool IsAvailable => PtxKernelConstructor is not null && EntryPointGetter is not null;

    /// <summary>Capped loads that failed in this process and fell back to the uncapped kernel (also printed to stderr).</summary>
    public static System.Collections.Concurrent.ConcurrentBag<string> Failures { get; } = new();

    /// <summary>Why caps are ignored in this process, or null when they apply.</summary>
    public static string? Notice => IsAvailable ? null
        : "register caps ignored: this ILGPU has no internal PTXCompiledKernel(Context, EntryPoint, KernelInfo, string) constructor; kernels load uncapped";

    /// <summary>ILGPU's <c>LoadStreamKernel</c> with at most <paramref name="maxRegisters"/> registers per thread on
    /// CUDA (0: the compiler's choice).</summary>
    public static Action<KernelConfig, T1, T2, T3, T4, T5> LoadStreamKernel<T1, T2, T3, T4, T5>(
        this Accelerator accelerator, Action<T1, T2, T3, T4, T5> kernel, int maxRegisters)
        where T1 : struct
        where T2 : struct
        where T3 : struct
        where T4 : struct
        where T5 : struct
    {
        if (TryLoadCapped<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5>>(accelerator, kernel.Method, maxRegisters) is not { } launch)
            return accelerator.LoadStreamKernel(kernel);
        var stream = accelerator.DefaultStream;
        return (config, a1, a2, a3, a4, a5) => launch(stream, config, a1, a2, a3, a4, a5);
    }

    /// <summary>The nine-parameter <see cref="LoadStreamKernel{T1, T2, T3, T4, T5}"/> (the fused decode matvec's).</summary>
    public static Action<KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9> LoadStreamKernel<T1, T2, T3, T4, T5, T6, T7, T8, T9>(
        this Accelerator accelerator, Action<T1, T2, T3, T4, T5, T6, T7, T8, T9> kernel, int maxRegisters)
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
        if (TryLoadCapped<Action<AcceleratorStream, KernelConfig, T1, T2, T3, T4, T5, T6, T7, T8, T9>>(accelerator, kernel.Method, maxRegisters) is not { } launch)
            return accelerator.LoadStreamKernel(kernel);
        var stream = accelerator.DefaultStream;
        return (config, a1, a2, a3, a4, a5, a6, a7, a8, a9) => launch(stream, config, a1, a2, a3, a4, a5, a6, a7, a8, a9);
    }

    /// <summary>The capped kernel's launcher, or null when no cap applies (0, not CUDA, no internal constructor) or the
    /// capped load failed: a cap is a speed setting, and a driver or ILGPU that refuses it costs speed, never the run.
    /// Said, not silent.</summary>
    private static TLaunch? TryLoadCapped<TLaunch>(Accelerator accelerator, MethodInfo method, int maxRegisters) where TLaunch : Delegate
    {
        if (!Applies(accelerator, maxRegisters)) return null;
        try
        {
            return LoadCapped(accelerator, method, maxRegisters).CreateLauncherDelegate<TLaunch>();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            string failure = $"{method.Name}: loaded uncapped, the cap of {maxRegisters} registers failed: {e.GetType().Name}: {e.Message}";
            Failures.Add(failure);
            Console.Error.WriteLine($"notice: {failure}");
            return null;
        }
    }

    /// <summary>
    /// The PTX with <c>.maxnreg</c> between the entry's parameter list and its body (where PTX puts performance
    /// directives). Throws when the text has no single entry or already limits registers.
    /// </summary>
    public static string WithMaxRegisters(string ptx, int maxRegisters)
    {
        ArgumentNullException.ThrowIfNull(ptx);
        if (maxRegisters is < 16 or > 255)
            throw new ArgumentOutOfRangeException(nameof(maxRegisters), maxRegisters, "a register cap must lie in 16..255 (PTX .maxnreg)");
        var entries = EntryHeader().Matches(ptx);
        if (entries.Count != 1)
            throw new ArgumentException($"expected one .entry in the PTX, found {entries.Count}", nameof(ptx));
        if (ptx.Contains(".maxnreg", StringComparison.Ordinal))
            throw new ArgumentException("the PTX already has a .maxnreg directive", nameof(ptx));
        int body = entries[0].Index + entries[0].Length - 1; // the body's '{'
        return string.Concat(ptx.AsSpan(0, body), $".maxnreg {maxRegisters}\n", ptx.AsSpan(body));
    }

    private static bool Applies(Accelerator accelerator, int maxRegisters)
        => maxRegisters > 0 && accelerator is CudaAccelerator && IsAvailable;

    private static Kernel LoadCapped(Accelerator accelerator, MethodInfo method, int maxRegisters)
    {
        var compiled = accelerator.CompileKernel(EntryPointDescription.FromExplicitlyGroupedKernel(method));
        return accelerator.LoadKernel(compiled is PTXCompiledKernel ptx ? WithMaxRegisters(ptx, maxRegisters) : compiled);
    }

    /// <summary>The same compiled kernel with <c>.maxnreg</c> in its PTX.</summary>
    internal static PTXCompiledKernel WithMaxRegisters(PTXCompiledKernel kernel, int maxRegisters)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return WithPtx(kernel, WithMaxRegisters(kernel.PTXAssembly, maxRegisters));
    }

    /// <summary>The same compiled kernel with <paramref name="ptx"/> for its PTX (an edit of its own), for ILGPU to load.</summary>
    internal static PTXCompiledKernel WithPtx(PTXCompiledKernel kernel, string ptx)
    {
        if (!IsAvailable) throw new NotSupportedException(Notice);
        return (PTXCompiledKernel)PtxKernelConstructor!.Invoke([kernel.Context, EntryPointGetter!.Invoke(kernel, null), kernel.Info, ptx]);
    }

    /// <summary><c>.entry name(params)</c> up to the body's opening brace.</summary>
    [GeneratedRegex(@"\.entry\s+[\w$]+\s*\([^()]*\)\s*\{")]
    private static partial Regex EntryHeader();
}
