using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels;

/// <summary>
/// The two marks of a kernel launched with programmatic dependent launch (<see cref="Accelerators.ProgrammaticLauncher"/>,
/// sm_90). Every thread passes both before it reads anything the kernel before it wrote, and before it writes anything:
/// what it does between them may overlap the previous kernel, and each kernel's wait follows the one before it, so the
/// chain stays ordered. Launched otherwise (ILGPU's launcher, the CPU accelerator) they are no-ops: the stream already
/// orders it.
/// </summary>
/// <remarks>What a kernel may read before its wait: only what no kernel of the chain writes (weights, the plan's
/// host-copied lists, K/V rows written by earlier steps). The kernel two back may still run then: the one before
/// lets its successor start before it waits itself. After a wait every earlier kernel has finished (each of them
/// passed its own wait before it finished).</remarks>
public static class ProgrammaticDependency
{
    /// <summary><c>griddepcontrol.launch_dependents</c>: the next kernel in the stream may be scheduled now.</summary>
    public static void LetTheNextStart()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("griddepcontrol.launch_dependents;");
    }

    /// <summary><c>griddepcontrol.wait</c>: the previous kernel has finished and its writes are visible.</summary>
    public static void WaitForThePrevious()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("griddepcontrol.wait;");
    }
}

/// <summary>How a generated kernel stands to the kernel before it in the stream, as a struct type parameter: one kernel
/// text serves both launches (<see cref="DecodeLaunch"/>).</summary>
public interface ILaunchDependency
{
    /// <summary>The next kernel may be scheduled from here on.</summary>
    void LetTheNextStart();

    /// <summary>Everything the previous kernels wrote is visible from here on.</summary>
    void WaitForThePrevious();
}

/// <summary>Launched by ILGPU (<c>cuLaunchKernel</c>): the stream starts the kernel only after the previous one finished,
/// so both marks compile to nothing.</summary>
public struct StreamOrdered : ILaunchDependency
{
    public readonly void LetTheNextStart()
    {
    }

    public readonly void WaitForThePrevious()
    {
    }
}

/// <summary>Launched with programmatic dependent launch: the marks are <see cref="ProgrammaticDependency"/>'s
/// <c>griddepcontrol</c> instructions (no-ops on the CPU accelerator).</summary>
public struct ProgrammaticallyDependent : ILaunchDependency
{
    public readonly void LetTheNextStart() => ProgrammaticDependency.LetTheNextStart();

    public readonly void WaitForThePrevious() => ProgrammaticDependency.WaitForThePrevious();
}
