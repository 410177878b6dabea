using SpecializedInference.Accelerators;
using SpecializedInference.Runtime;

namespace SpecializedInference.Tests.Runtime;

/// <summary>
/// When <see cref="DecodeStepGraphs"/> launches a step directly, captures it or replays it, with stand-in graphs: no CUDA
/// here. That a replay is right is the key's business (<see cref="StepGraphKey"/>, the plan's launch signature, tested
/// with the attention kernels and the runner); this is the bookkeeping around it.
/// </summary>
public sealed class DecodeStepGraphsTests
{
    /// <summary>A stand-in graph: counts its launches and whether it was disposed.</summary>
    private sealed class FakeGraph : ICapturedLaunches
    {
        public int Launches { get; private set; }

        public bool Disposed { get; private set; }

        public void Launch()
        {
            Assert.False(Disposed, "a disposed graph was launched");
            Launches++;
        }

        public void Dispose() => Disposed = true;
    }

    /// <summary>Captures the way <see cref="CudaGraph.Capture(ILGPU.Runtime.Accelerator, Action)"/> does on the host: the
    /// step's launches are enqueued (into the capture), nothing runs until the graph is launched.</summary>
    private sealed class FakeCapture
    {
        public List<FakeGraph> Graphs { get; } = new();

        public Exception? Refuse { get; set; }

        public ICapturedLaunches Capture(Action enqueue)
        {
            enqueue();
            if (Refuse is not null) throw Refuse;
            var graph = new FakeGraph();
            Graphs.Add(graph);
            return graph;
        }
    }

    private static StepGraphKey Key(int tokens, byte plan = 0) => new([0, tokens, 0, tokens], [plan, 1, 2, 3]);

    /// <summary>How a step ran, how often it enqueued its launches, and what it reported enqueued.</summary>
    private readonly record struct Ran(StepGraphUse Use, int Enqueued, StepLaunches Launches)
    {
        public (StepGraphUse, int) Head => (Use, Enqueued);
    }

    private static Ran Step(DecodeStepGraphs graphs, StepGraphKey key, long dense = 42)
    {
        int enqueued = 0;
        var (launches, use) = graphs.Run(key, () =>
        {
            enqueued++;
            return new StepLaunches(dense, 3);
        });
        return new Ran(use, enqueued, launches);
    }

    [Fact]
    public void AKeyIsCapturedWhenItRepeatsTheStepBeforeAndReplayedFromThenOn()
    {
        var capture = new FakeCapture();
        using var graphs = new DecodeStepGraphs(capture.Capture);
        StepGraphKey a = Key(1), b = Key(1, plan: 7), c = Key(2);

        Assert.Equal((StepGraphUse.Launched, 1), Step(graphs, a).Head);
        var captured = Step(graphs, a, dense: 43);
        Assert.Equal((StepGraphUse.Captured, 1), captured.Head);
        Assert.Equal(new StepLaunches(43, 3), captured.Launches);
        Assert.Equal(1, capture.Graphs.Single().Launches);            // the capture step ran from its graph
        // A replay enqueues nothing and reports what the capture enqueued.
        var replayed = Step(graphs, a, dense: 99);
        Assert.Equal((StepGraphUse.Replayed, 0), replayed.Head);
        Assert.Equal(new StepLaunches(43, 3), replayed.Launches);
        Assert.Equal(2, capture.Graphs.Single().Launches);

        // A key seen once between repeats of others costs no capture; one that then repeats is captured.
        Assert.Equal(StepGraphUse.Launched, Step(graphs, b).Use);
        Assert.Equal(StepGraphUse.Replayed, Step(graphs, a).Use);
        Assert.Equal(StepGraphUse.Launched, Step(graphs, c).Use);
        Assert.Equal(StepGraphUse.Launched, Step(graphs, b).Use);     // b again, but not right after b
        Assert.Equal(StepGraphUse.Captured, Step(graphs, b).Use);
        Assert.Equal(new StepGraphCounts(Captured: 2, Replayed: 2), graphs.Counts);

        // Equal keys are equal by value, not by reference.
        Assert.Equal(StepGraphUse.Replayed, Step(graphs, Key(1, plan: 7)).Use);
        Assert.NotEqual(Key(1), Key(1, plan: 7));
    }

    [Fact]
    public void TheLeastRecentlyUsedGraphGoesWhenTheCacheIsFull()
    {
        var capture = new FakeCapture();
        using var graphs = new DecodeStepGraphs(capture.Capture);
        for (int k = 0; k <= DecodeStepGraphs.Capacity; k++)
        {
            Step(graphs, Key(k));
            Assert.Equal(StepGraphUse.Captured, Step(graphs, Key(k)).Use);
            if (k == 0) continue;
            Assert.Equal(StepGraphUse.Replayed, Step(graphs, Key(0)).Use);   // key 0 stays the most recently used
        }
        // Capacity + 1 graphs captured: the one of key 1 (the least recently used) is gone, the rest stay.
        Assert.True(capture.Graphs[1].Disposed);
        Assert.Equal(1, capture.Graphs.Count(g => g.Disposed));
        Assert.Equal(StepGraphUse.Replayed, Step(graphs, Key(0)).Use);
        Assert.Equal(StepGraphUse.Launched, Step(graphs, Key(1)).Use);

        graphs.Clear();
        Assert.All(capture.Graphs, g => Assert.True(g.Disposed));
        Assert.Equal(StepGraphUse.Launched, Step(graphs, Key(0)).Use);
    }

    [Fact]
    public void ACaptureTheDriverRefusesTurnsGraphsOffAndTheStepIsLaunchedDirectly()
    {
        var capture = new FakeCapture();
        using var graphs = new DecodeStepGraphs(capture.Capture);
        Step(graphs, Key(1));
        Step(graphs, Key(1));                                           // captured
        Step(graphs, Key(2));
        // A driver older than the graph calls (a CudaException needs a driver to be made: none here).
        capture.Refuse = new EntryPointNotFoundException("cuGraphInstantiateWithFlags");
        var refused = Step(graphs, Key(2));
        // The capture enqueued once (into the refused capture, which runs nothing), then the step was launched directly.
        Assert.Equal((StepGraphUse.Launched, 2), refused.Head);
        Assert.Contains("refused to capture a decode step", graphs.DisabledBecause);
        Assert.True(capture.Graphs.Single().Disposed);
        Assert.Equal((StepGraphUse.Launched, 1), Step(graphs, Key(1)).Head);

        // An error of the step itself is not the driver's: it reaches the caller and graphs stay on.
        var other = new FakeCapture { Refuse = new ArgumentException("sequence 3: bad step") };
        using var kept = new DecodeStepGraphs(other.Capture);
        Step(kept, Key(1));
        Assert.Throws<ArgumentException>(() => Step(kept, Key(1)));
        Assert.Null(kept.DisabledBecause);
    }
}
