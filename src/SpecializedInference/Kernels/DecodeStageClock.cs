using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels;

/// <summary>
/// The points of a tensor-core decode group's chain (<c>DecodeMma</c>, <c>DecodeMmaLargeBatch</c>) that a
/// <see cref="IStageClock"/> marks, each right after the barrier that ends the step, so thread 0's clock is the group's.
/// </summary>
public static class DecodeStage
{
    /// <summary>The group starts.</summary>
    public const int Entry = 0;

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
    public const int Exit = 7;

    public const int Count = 8;

    public static readonly string[] Names = ["entry", "blocks", "scores", "softmax", "P·V", "ticket", "combine", "exit"];

    /// <summary>Longs per group in <see cref="AttentionMeta.StageTimes"/>: the device's <c>%globaltimer</c> (ns) at
    /// entry and at exit, then the SM's <c>%clock64</c> at every stage (0 where the group did not pass it).</summary>
    public const int SlotsPerGroup = 2 + Count;

    /// <summary>Where stage <paramref name="stage"/>'s clock is in a group's row.</summary>
    public static int ClockSlot(int stage) => 2 + stage;
}

/// <summary>What a decode kernel does at each <see cref="DecodeStage"/>: nothing (<see cref="NoStageClock"/>, the engine's
/// kernels) or record the time (<see cref="SmStageClock"/>, <c>si attention-bench --stage-times</c>).</summary>
public interface IStageClock
{
    /// <param name="times">[groups, DecodeStage.SlotsPerGroup] (<see cref="AttentionMeta.StageTimes"/>)</param>
    void Mark(ArrayView<long> times, int stage);
}

/// <summary>No clock: the marks compile to nothing.</summary>
public struct NoStageClock : IStageClock
{
    public readonly void Mark(ArrayView<long> times, int stage)
    {
    }
}

/// <summary>
/// Thread 0 of each group writes the SM's cycle counter (<c>%clock64</c>) at every stage, and the device's nanosecond
/// timer (<c>%globaltimer</c>) at entry and exit, to the group's row of <see cref="AttentionMeta.StageTimes"/>: stage
/// durations in cycles within a group; group starts across SMs, and the cycles' rate, in ns. A store per stage by one
/// thread; the timed kernel is otherwise the engine's. ILGPU's CPU accelerator has neither counter: it writes nothing.
/// </summary>
public struct SmStageClock : IStageClock
{
    public readonly void Mark(ArrayView<long> times, int stage)
    {
        if (!CudaAsm.IsSupported || Group.IdxX != 0) return;
        long row = (long)Grid.IdxX * DecodeStage.SlotsPerGroup;
        if (stage == DecodeStage.Entry)
        {
            // The buffer outlives the launch (a benchmark reruns it), and the group that draws the last ticket, the only
            // one to mark the combine, changes from launch to launch: a mark left from an earlier launch would read as
            // this one's (run 23's combine stage averaged −218 us).
            for (int s = DecodeStage.Entry + 1; s < DecodeStage.Count; s++)
                times[row + DecodeStage.ClockSlot(s)] = 0;
        }
        Output<long> clock = default;
        CudaAsm.EmitRef("mov.u64 %0, %%clock64;", ref clock);
        times[row + DecodeStage.ClockSlot(stage)] = clock.Value;
        if (stage == DecodeStage.Entry || stage == DecodeStage.Exit)
        {
            Output<long> ns = default;
            CudaAsm.EmitRef("mov.u64 %0, %%globaltimer;", ref ns);
            times[row + (stage == DecodeStage.Entry ? 0 : 1)] = ns.Value;
        }
    }
}
