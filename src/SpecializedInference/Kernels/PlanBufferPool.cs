using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels;

/// <summary>
/// The device buffers a kernel set's plans borrow: one int buffer (the step's metadata, uploaded once) and one
/// float buffer (decode partials, the materialized score matrix). The model runner plans every step; allocating
/// and freeing per step would cost a <c>cuMemAlloc</c> and a <c>cuMemFree</c> (which synchronizes the device)
/// each time, so the pair lives here and only grows.
/// </summary>
/// <remarks>
/// One plan at a time holds the pooled pair. A plan created while another still holds it gets buffers of its
/// own, freed when it is disposed, so two live plans never share memory (each plan's metadata stays its own).
/// Reusing the pair across steps is safe without a synchronize: uploads (<c>CopyFromCPU</c>) and kernels run
/// in order on the accelerator's default stream, so the next step's upload waits for the previous step's
/// kernels; growing frees the old buffer with <c>cuMemFree</c>, which waits for the device too.
/// </remarks>
internal sealed class PlanBufferPool : IDisposable
{
    /// <summary>Smallest pooled buffers, in elements: small steps never reallocate.</summary>
    public const long MinimumInts = 4096;

    public const long MinimumFloats = 16384;

    private readonly Accelerator _accelerator;
    private readonly object _lock = new();
    private MemoryBuffer1D<int, Stride1D.Dense>? _ints;
    private MemoryBuffer1D<float, Stride1D.Dense>? _floats;
    private bool _borrowed;
    private bool _disposed;

    public PlanBufferPool(Accelerator accelerator) => _accelerator = accelerator;

    /// <summary>Device allocations made so far: pooled growth and the buffers of plans that found the pair borrowed.</summary>
    public int DeviceAllocations { get; private set; }

    /// <summary>Buffers of at least <paramref name="ints"/> ints and <paramref name="floats"/> floats, the
    /// pooled pair when no other plan holds it. Dispose the lease to give them back.</summary>
    public PlanBuffers Rent(long ints, long floats)
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (!_borrowed)
            {
                _ints = Grow(_ints, ints, MinimumInts);
                _floats = Grow(_floats, floats, MinimumFloats);
                _borrowed = true;
                return new PlanBuffers(this, _ints, _floats, pooled: true);
            }
        }
        // Another live plan holds the pair: this one gets its own, exactly sized.
        var own = Allocate<int>(ints);
        try
        {
            return new PlanBuffers(this, own, Allocate<float>(floats), pooled: false);
        }
        catch
        {
            own.Dispose();
            throw;
        }
    }

    internal void Return(PlanBuffers lease)
    {
        lock (_lock)
        {
            if (lease.Pooled && !_disposed)
            {
                _borrowed = false;
                return;
            }
        }
        lease.Ints.Dispose();
        lease.Floats.Dispose();
    }

    /// <summary>The buffer when it holds <paramref name="needed"/> elements, else a new one 1.5× larger (a
    /// context that grows by a block per 16 steps does not reallocate every time).</summary>
    private MemoryBuffer1D<T, Stride1D.Dense> Grow<T>(MemoryBuffer1D<T, Stride1D.Dense>? current, long needed, long minimum)
        where T : unmanaged
    {
        if (current is not null && current.Length >= needed) return current;
        long capacity = Math.Max(Math.Max(needed, minimum), current is null ? 0 : current.Length + current.Length / 2);
        current?.Dispose();
        return Allocate<T>(capacity);
    }

    private MemoryBuffer1D<T, Stride1D.Dense> Allocate<T>(long length)
        where T : unmanaged
    {
        var buffer = _accelerator.Allocate1D<T>(Math.Max(1, length));
        lock (_lock) DeviceAllocations++;
        return buffer;
    }

    /// <summary>Frees the pooled pair; a plan still holding it frees it when disposed.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed) return;
            _disposed = true;
            if (_borrowed) return;
            _ints?.Dispose();
            _floats?.Dispose();
        }
    }
}

/// <summary>A plan's lease on device buffers (at least as long as it asked for); disposing gives them back.</summary>
internal sealed class PlanBuffers : IDisposable
{
    private readonly PlanBufferPool _pool;
    private bool _returned;

    internal PlanBuffers(PlanBufferPool pool, MemoryBuffer1D<int, Stride1D.Dense> ints, MemoryBuffer1D<float, Stride1D.Dense> floats, bool pooled)
    {
        _pool = pool;
        Ints = ints;
        Floats = floats;
        Pooled = pooled;
    }

    public MemoryBuffer1D<int, Stride1D.Dense> Ints { get; }

    public MemoryBuffer1D<float, Stride1D.Dense> Floats { get; }

    /// <summary>Whether these are the pool's pair (else the plan's own).</summary>
    public bool Pooled { get; }

    public void Dispose()
    {
        if (_returned) return;
        _returned = true;
        _pool.Return(this);
    }
}
