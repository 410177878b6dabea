using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels;

/// <summary>
/// A group's row of stage times, the layout every <see cref="IStageClock"/> writes: the device's <c>%globaltimer</c> (ns)
/// at entry and at exit, then the SM's <c>%clock64</c> at up to <see cref="MaxStages"/> marks, the first the entry and the
/// last the exit (0 where the group did not pass a mark). <see cref="DecodeStage"/> and <see cref="TailStage"/> name the
/// marks of the kernels that take a clock.
/// </summary>
public static class StageRow
{
    public const int MaxStages = 8;

    /// <summary>The first mark: the group starts.</summary>
    public const int Entry = 0;

    /// <summary>The last mark: the group is done.</summary>
    public const int Exit = MaxStages - 1;

    /// <summary>Longs per group.</summary>
    public const int SlotsPerGroup = 2 + MaxStages;

    /// <summary>Where mark <paramref name="stage"/>'s clock is in a group's row.</summary>
    public static int ClockSlot(int stage) => 2 + stage;
}

/// <summary>
/// The points of a tensor-core decode group's chain (<c>DecodeMma</c>, <c>DecodeMmaLargeBatch</c>) that a
/// <see cref="IStageClock"/> marks, each right after the barrier that ends the step, so thread 0's clock is the group's.
/// </summary>
public static class DecodeStage
{
    /// <summary>The group starts.</summary>
    public const int Entry = StageRow.Entry;

    /// <summary>Work item and block ids in (round trip 1).</summary>
    public const int Blocks = 1;

    /// <summary>K in (and V, where it comes with K) and the scores Sᵀ = K·Qᵀ written.</summary>
    public const int Scores = 2;

    /// <summary>Max, exp(s − max) and sums.</summary>
    public const int Softmax = 3;

    /// <summary>P·V done, the warps' partial rows in shared memory.</summary>
    public const int Values = 4;

    /// <summary>Partial written and ticket drawn (decodes of more than one partition only).</summary>
    public const int Ticket = 5;

    /// <summary>Thread 0's share of the combine done (the group that drew its decode's last ticket only).</summary>
    public const int Combine = 6;

    /// <summary>Thread 0 done.</summary>
    public const int Exit = StageRow.Exit;

    public const int Count = StageRow.MaxStages;

    public static readonly string[] Names = ["entry", "blocks", "scores", "softmax", "P·V", "ticket", "combine", "exit"];

    /// <summary>Longs per group in <see cref="AttentionMeta.StageTimes"/> (<see cref="StageRow"/>).</summary>
    public const int SlotsPerGroup = StageRow.SlotsPerGroup;

    /// <summary>Where stage <paramref name="stage"/>'s clock is in a group's row.</summary>
    public static int ClockSlot(int stage) => StageRow.ClockSlot(stage);
}

/// <summary>
/// The points of a grid-synced layer tail (<see cref="Dense.LayerTailBodies"/>) that a <see cref="IStageClock"/> marks:
/// each stage's end is the group's arrival at the grid barrier after it (its warps done), and the next stage starts at
/// the barrier's release (the group saw every group arrive). So a group's stage time is its own work, and its wait is the
/// other groups' lateness plus the barrier's own latency, which the last group to arrive waits alone.
/// </summary>
public static class TailStage
{
    /// <summary>The group starts (o_proj's loads next).</summary>
    public const int Entry = StageRow.Entry;

    /// <summary>o_proj's rows done: the group arrives at the first barrier.</summary>
    public const int OArrive = 1;

    /// <summary>Every group arrived at the first barrier.</summary>
    public const int ORelease = 2;

    /// <summary>gate|up's rows done: the group arrives at the second barrier.</summary>
    public const int GateUpArrive = 3;

    /// <summary>Every group arrived at the second barrier.</summary>
    public const int GateUpRelease = 4;

    /// <summary>down_proj's rows done: the group arrives at the third barrier (not after the last layer).</summary>
    public const int DownArrive = 5;

    /// <summary>Every group arrived at the third barrier.</summary>
    public const int DownRelease = 6;

    /// <summary>The group's last stage done (the next layer's qkv; down_proj after the last layer).</summary>
    public const int Exit = StageRow.Exit;

    public const int Count = StageRow.MaxStages;
}

/// <summary>What a kernel does at each of its marks (<see cref="DecodeStage"/>, <see cref="TailStage"/>): nothing
/// (<see cref="NoStageClock"/>, the engine's kernels) or record the time (<see cref="SmStageClock"/>, <c>si attention-bench
/// --stage-times</c>, the benchmarks' <c>layer-tail</c>).</summary>
public interface IStageClock
{
    /// <summary>Whether the marks record anything: a kernel syncs its group before its exit mark only then.</summary>
    bool Records { get; }

    /// <param name="times">[groups, StageRow.SlotsPerGroup] (<see cref="AttentionMeta.StageTimes"/>)</param>
    void Mark(ArrayView<long> times, int stage);
}

/// <summary>No clock: the marks compile to nothing.</summary>
public struct NoStageClock : IStageClock
{
    public readonly bool Records => false;

    public readonly void Mark(ArrayView<long> times, int stage)
    {
    }
}

/// <summary>
/// Thread 0 of each group writes the SM's cycle counter (<c>%clock64</c>) at every stage, and the device's nanosecond
/// timer (<c>%globaltimer</c>) at entry and exit, to the group's row (<see cref="StageRow"/>): stage
/// durations in cycles within a group; group starts across SMs, and the cycles' rate, in ns. A store per stage by one
/// thread; the timed kernel is otherwise the engine's. ILGPU's CPU accelerator has neither counter: it writes nothing.
/// </summary>
public struct SmStageClock : IStageClock
{
    public readonly bool Records => CudaAsm.IsSupported;

    public readonly void Mark(ArrayView<long> times, int stage)
    {
        if (!CudaAsm.IsSupported || Group.IdxX != 0) return;
        long row = (long)Grid.IdxX * StageRow.SlotsPerGroup;
        if (stage == StageRow.Entry)
        {
            // The buffer outlives the launch (a benchmark reruns it), and the group that draws the last ticket, the only
            // one to mark the combine, changes from launch to launch: a mark left from an earlier launch would read as
            // this one's (run 23's combine stage averaged −218 us).
            for (int s = StageRow.Entry + 1; s < StageRow.MaxStages; s++)
                times[row + StageRow.ClockSlot(s)] = 0;
        }
        Output<long> clock = default;
        CudaAsm.EmitRef("mov.u64 %0, %%clock64;", ref clock);
        times[row + StageRow.ClockSlot(stage)] = clock.Value;
        if (stage == StageRow.Entry || stage == StageRow.Exit)
        {
            Output<long> ns = default;
            CudaAsm.EmitRef("mov.u64 %0, %%globaltimer;", ref ns);
            times[row + (stage == StageRow.Entry ? 0 : 1)] = ns.Value;
        }
    }
}
