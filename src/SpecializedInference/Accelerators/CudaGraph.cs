using System.Runtime.ExceptionServices;
using System.Runtime.InteropServices;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Accelerators;

/// <summary>Launches captured once and replayed as a whole (<see cref="CudaGraph"/>).</summary>
public interface ICapturedLaunches : IDisposable
{
    /// <summary>Runs the captured launches again, after the work already enqueued.</summary>
    void Launch();
}

/// <summary>
/// A CUDA graph of the launches a callback enqueued on the accelerator's default stream, captured once
/// (<c>cuStreamBeginCapture</c> … <c>cuStreamEndCapture</c>, <c>cuGraphInstantiate</c>) and then replayed with one
/// <c>cuGraphLaunch</c>: the driver issues the whole chain without the host enqueueing each kernel. ILGPU 1.5.3 has no
/// graphs; its launches (and the <see cref="ProgrammaticLauncher"/>'s, whose programmatic attribute becomes a programmatic
/// edge of the graph) are captured like any other work on the stream.
/// <para>A replay runs every kernel with the arguments it had when captured: the caller must replay a graph only where
/// the launches would take exactly those arguments again (the same buffers, counts and grids), the data in the buffers
/// being what changes.</para>
/// </summary>
public sealed class CudaGraph : ICapturedLaunches
{
    /// <summary>CU_STREAM_CAPTURE_MODE_RELAXED: ILGPU's own driver calls on this thread (context binding) stay allowed.</summary>
    private const int RelaxedCapture = 2;

    private readonly IntPtr _stream;
    private IntPtr _graph, _exec;

    private CudaGraph(IntPtr stream) => _stream = stream;

    /// <summary>Why <paramref name="accelerator"/>'s work cannot be captured, or null when it can: it needs a CUDA device
    /// and a default stream other than the legacy NULL stream, which cannot be captured
    /// (<see cref="DeviceStream.NonBlocking"/>).</summary>
    public static string? WhyNotCapturable(Accelerator accelerator) => accelerator switch
    {
        not CudaAccelerator => $"CUDA graphs need a CUDA device; {accelerator.AcceleratorType} launches each kernel",
        CudaAccelerator { DefaultStream: CudaStream { StreamPtr: var stream } } when stream == IntPtr.Zero =>
            "CUDA graphs cannot capture the legacy NULL stream: create the accelerator with the non-blocking stream (--stream non-blocking)",
        _ => null,
    };

    /// <summary>Captures what <paramref name="launches"/> enqueues on <paramref name="accelerator"/>'s default stream. Nothing
    /// captured runs until <see cref="Launch"/>.</summary>
    /// <exception cref="InvalidOperationException">The accelerator's work cannot be captured (<see cref="WhyNotCapturable"/>).</exception>
    /// <exception cref="CudaException">The driver refused the capture or the instantiation (an operation that cannot be
    /// captured invalidates the capture); the stream is back to normal and nothing of it ran.</exception>
    public static CudaGraph Capture(Accelerator accelerator, Action launches)
    {
        ArgumentNullException.ThrowIfNull(accelerator);
        if (WhyNotCapturable(accelerator) is { } whyNot) throw new InvalidOperationException(whyNot);
        return Capture((CudaStream)accelerator.DefaultStream, launches);
    }

    /// <summary>Captures what <paramref name="launches"/> enqueues on <paramref name="stream"/> (not the legacy NULL stream),
    /// to be replayed there.</summary>
    /// <exception cref="CudaException">As for the accelerator's stream.</exception>
    public static CudaGraph Capture(CudaStream stream, Action launches)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(launches);
        var graph = new CudaGraph(stream.StreamPtr);
        try
        {
            Check(cuStreamBeginCapture_v2(graph._stream, RelaxedCapture));
            Exception? failed = null;
            try
            {
                launches();
            }
            catch (Exception ex)
            {
                failed = ex;
            }
            // Ended whatever happened, so that the stream takes ordinary work again; the callback's own error comes first.
            int ended = cuStreamEndCapture(graph._stream, out graph._graph);
            if (failed is not null) ExceptionDispatchInfo.Capture(failed).Throw();
            Check(ended);
            Check(cuGraphInstantiateWithFlags(out graph._exec, graph._graph, 0));
            return graph;
        }
        catch
        {
            graph.Dispose();
            throw;
        }
    }

    /// <summary>Runs the captured launches on the stream they were captured on, after the work already enqueued there.</summary>
    public void Launch()
    {
        ObjectDisposedException.ThrowIf(_exec == IntPtr.Zero, this);
        Check(cuGraphLaunch(_exec, _stream));
    }

    public void Dispose()
    {
        if (_exec != IntPtr.Zero) cuGraphExecDestroy(_exec);
        if (_graph != IntPtr.Zero) cuGraphDestroy(_graph);
        (_exec, _graph) = (IntPtr.Zero, IntPtr.Zero);
    }

    private static void Check(int result)
    {
        if (result != 0) throw new CudaException((CudaError)result);
    }

    [DllImport("libcuda.so.1")] private static extern int cuStreamBeginCapture_v2(IntPtr stream, int mode);
    [DllImport("libcuda.so.1")] private static extern int cuStreamEndCapture(IntPtr stream, out IntPtr graph);
    [DllImport("libcuda.so.1")] private static extern int cuGraphInstantiateWithFlags(out IntPtr exec, IntPtr graph, ulong flags);
    [DllImport("libcuda.so.1")] private static extern int cuGraphLaunch(IntPtr exec, IntPtr stream);
    [DllImport("libcuda.so.1")] private static extern int cuGraphExecDestroy(IntPtr exec);
    [DllImport("libcuda.so.1")] private static extern int cuGraphDestroy(IntPtr graph);
}
