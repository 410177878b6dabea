using SpecializedInference.Accelerators;

namespace SpecializedInference.Runtime;

/// <summary>How a step's kernels went out (<see cref="LlamaModelRunner"/>, <see cref="ModelOptions.CudaGraphs"/>).</summary>
internal enum StepGraphUse
{
    /// <summary>Launched one by one.</summary>
    Launched,

    /// <summary>Captured into a CUDA graph, which then ran once.</summary>
    Captured,

    /// <summary>Replayed from a graph captured by an earlier step.</summary>
    Replayed,
}

/// <summary>Decode steps captured into CUDA graphs, and steps replayed from them.</summary>
public readonly record struct StepGraphCounts(long Captured, long Replayed);

/// <summary>
/// Everything a step's launches take as arguments besides the data in their buffers: the scratch buffers' generation,
/// the token and logits-row counts (which size every view and grid of the dense kernels), and the attention plan's
/// <see cref="Kernels.AttentionPlan.LaunchSignature"/>. Steps with equal keys launch the same kernels with the same
/// arguments, so one's graph replays the other.
/// </summary>
internal sealed class StepGraphKey : IEquatable<StepGraphKey>
{
    private readonly byte[] _bytes;
    private readonly int _hash;

    public StepGraphKey(ReadOnlySpan<int> counts, byte[] planSignature)
    {
        _bytes = new byte[counts.Length * sizeof(int) + planSignature.Length];
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(counts).CopyTo(_bytes);
        planSignature.CopyTo(_bytes, counts.Length * sizeof(int));
        var hash = new HashCode();
        hash.AddBytes(_bytes);
        _hash = hash.ToHashCode();
    }

    public bool Equals(StepGraphKey? other) => other is not null && other._hash == _hash && other._bytes.AsSpan().SequenceEqual(_bytes);

    public override bool Equals(object? obj) => Equals(obj as StepGraphKey);

    public override int GetHashCode() => _hash;
}

/// <summary>
/// The CUDA graphs of a runner's decode steps (<see cref="ModelOptions.CudaGraphs"/>), by <see cref="StepGraphKey"/>.
/// A step whose key is in the cache is replayed (one <c>cuGraphLaunch</c> instead of ~5 launches a layer). A step whose
/// key repeats the step just before is captured, then run from its graph: a key seen once (a prefill's, a batch that
/// changes every step) costs no capture. At batch 1 a key lasts until the sequence's next decode partition (128–512
/// keys) or the doubling of its block table. The cache keeps the <see cref="Capacity"/> most recently used graphs.
/// A capture the driver refuses turns graphs off for the runner (<see cref="DisabledBecause"/>) and the step is launched
/// one by one instead: nothing of a refused capture ran.
/// </summary>
internal sealed class DecodeStepGraphs(Func<Action, ICapturedLaunches> capture) : IDisposable
{
    /// <summary>Graphs kept: the keys a batch-1 generation cycles through are one at a time; a few batches interleaved fit.</summary>
    public const int Capacity = 16;

    private readonly Dictionary<StepGraphKey, LinkedListNode<Entry>> _graphs = new();
    private readonly LinkedList<Entry> _recency = new();   // most recently used first
    private StepGraphKey? _previous;
    private long _captured, _replayed;

    private sealed record Entry(StepGraphKey Key, ICapturedLaunches Graph, StepLaunches Launches);

    /// <summary>Why graphs were turned off (a capture the driver refused); null while they are on.</summary>
    public string? DisabledBecause { get; private set; }

    public StepGraphCounts Counts => new(_captured, _replayed);

    /// <summary>Runs the step keyed <paramref name="key"/>: replayed, captured and run, or <paramref name="enqueue"/>d
    /// directly. Returns what the step enqueued (for a replay: what its capture did) and how it ran.</summary>
    public (StepLaunches Launches, StepGraphUse Use) Run(StepGraphKey key, Func<StepLaunches> enqueue)
    {
        if (DisabledBecause is not null) return (enqueue(), StepGraphUse.Launched);
        if (_graphs.TryGetValue(key, out var node))
        {
            _recency.Remove(node);
            _recency.AddFirst(node);
            node.Value.Graph.Launch();
            _previous = key;
            _replayed++;
            return (node.Value.Launches, StepGraphUse.Replayed);
        }

        bool repeats = key.Equals(_previous);
        _previous = key;
        if (!repeats) return (enqueue(), StepGraphUse.Launched);

        StepLaunches launches = default;
        ICapturedLaunches graph;
        try
        {
            graph = capture(() => launches = enqueue());
        }
        catch (Exception ex) when (ex is ILGPU.Runtime.Cuda.CudaException or DllNotFoundException or EntryPointNotFoundException)
        {
            DisabledBecause = $"CUDA graphs are off: the driver refused to capture a decode step ({ex.Message}); its kernels are launched one by one";
            Clear();
            return (enqueue(), StepGraphUse.Launched);
        }

        var entry = _recency.AddFirst(new Entry(key, graph, launches));
        _graphs[key] = entry;
        if (_graphs.Count > Capacity)
        {
            var oldest = _recency.Last!;
            _recency.RemoveLast();
            _graphs.Remove(oldest.Value.Key);
            oldest.Value.Graph.Dispose();
        }
        graph.Launch();
        _captured++;
        return (launches, StepGraphUse.Captured);
    }

    /// <summary>Drops every graph (the buffers they launch with are about to be reallocated).</summary>
    public void Clear()
    {
        foreach (var entry in _recency) entry.Graph.Dispose();
        _recency.Clear();
        _graphs.Clear();
        _previous = null;
    }

    public void Dispose() => Clear();
}
