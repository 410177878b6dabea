using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// A barrier across every group of a launch, for kernels whose groups are all resident at once (a grid no larger than
/// the device holds: <see cref="DenseKernels.LayerTail{TKv}"/> sizes its grids so). CUDA's cooperative groups do it this way; ILGPU 1.5.3
/// lacks them. The first thread of each group makes the group's writes visible (<c>membar.gl</c>) and arrives with one
/// atomic add on a single word: group 0 adds 2³¹ − (groups − 1), every other group 1, so when all have arrived the
/// word's top bit has flipped and its low bits are as before (no reset, no race between a reset and the next
/// barrier). Each waits until the top bit differs from the one its add returned, polling the word (on CUDA with
/// <c>ld.relaxed.gpu</c> loads, which L2 answers without queueing them behind the arrivals' atomics; on the CPU
/// accelerator with atomics). The fence after the wait also drops the SM's L1 (<c>CCTL.IVALL</c> in the SASS), so the
/// group's next loads see the other groups' writes. A wait that polls <see cref="SpinLimit"/> times gives up and sets
/// the state's flag instead of hanging the device: a grid larger than the device holds (or ILGPU's CPU accelerator,
/// which runs one group per multiprocessor at a time) then fails the step with an error rather than a hang.
/// </summary>
public struct GridBarrier
{
    /// <summary>[<see cref="StateLength"/>]: the arrival word | 1 once a wait gave up.</summary>
    public ArrayView<int> State;

    /// <summary>Groups in the launch: all of them must arrive.</summary>
    public int Groups;

    /// <summary>Polls of the arrival word before a wait gives up.</summary>
    public int SpinLimit;

    /// <summary>The device address of <see cref="State"/>[<see cref="Word"/>], for the CUDA polls (ILGPU keeps a view's
    /// address to itself, so the host passes the buffer's).</summary>
    public long WordAddress;

    public const int Word = 0, GaveUp = 1, StateLength = 2;

    /// <summary>Returns once every group of the launch has called it (as many times): what any thread of any group
    /// wrote before it, every thread reads after it.</summary>
    public readonly void Wait() => Wait<NoStageClock>(default, 0);

    /// <summary><see cref="Wait()"/>, marking the group's arrival (its warps done) as <paramref name="arrival"/> and the
    /// release (every group arrived) as the mark after it, in <paramref name="times"/> (<see cref="TailStage"/>).</summary>
    public readonly void Wait<TClock>(ArrayView<long> times, int arrival)
        where TClock : struct, IStageClock
    {
        Group.Barrier();                                   // the group's warps are done with the stage
        if (Group.IdxX == 0)
        {
            default(TClock).Mark(times, arrival);
            MemoryFence.DeviceLevel();                     // release: the group's writes before its arrival
            int add = Grid.IdxX == 0 ? int.MinValue - (Groups - 1) : 1;
            int arrived = Atomic.Add(ref State[Word], add);
            int polls = 0;
            while (((arrived ^ PollWord()) & int.MinValue) == 0)
            {
                if (++polls >= SpinLimit)
                {
                    Atomic.Exchange(ref State[GaveUp], 1);
                    break;
                }
            }
            MemoryFence.DeviceLevel();                     // acquire: the others' writes (and L1 dropped) before our reads
            default(TClock).Mark(times, arrival + 1);
        }
        Group.Barrier();
    }

    /// <summary>The arrival word as L2 holds it: a relaxed GPU-scope load on CUDA (not cached in L1), an atomic elsewhere.</summary>
    private readonly int PollWord()
    {
        if (!CudaAsm.IsSupported) return Atomic.Or(ref State[Word], 0);
        Output<int> word = default;
        Input<long> address = WordAddress;
        CudaAsm.EmitRef("ld.relaxed.gpu.global.b32 %0, [%1];", ref word, ref address);
        return word.Value;
    }
}
