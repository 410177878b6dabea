using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels.Sampling;

/// <summary>
/// Greedy sampling on the device: the argmax of each logits row, so a greedy step copies one 64-bit key per slice of
/// a row back to the host instead of the row (128256 floats for Llama 3). Same choice as the host's
/// <see cref="SpecializedInference.Sampling.Sampler.ArgMax"/>: the largest logit, ties to the lowest token id, NaNs
/// passed over (a row of NaNs has no argmax: <see cref="TokenOf"/> returns <see cref="NoToken"/>).
/// </summary>
/// <remarks>
/// A logit and its id are packed into one key whose unsigned order is the argmax order:
/// <c>key = ordered(logit) &lt;&lt; 32 | (uint.MaxValue - id)</c>. <c>ordered</c> maps float order onto uint order
/// (sign bit set: all bits flipped; clear: the sign bit set), with -0 read as +0 (they compare equal, so the lower id
/// must win) and NaN as 0, below every number. The row's argmax is then the largest key of the row, which any
/// split of the row can reduce in any order.
/// </remarks>
public static class GreedyArgMax
{
    /// <summary>What <see cref="TokenOf"/> returns for a row with no number in it.</summary>
    public const int NoToken = -1;

    /// <summary>Threads per group on a GPU: each holds four loads in flight per pass.</summary>
    public const int GroupThreads = 256;

    /// <summary>Logits one GPU group scans: 16 per thread, so a 128K-vocabulary row is 32 groups and a batch-64 step's
    /// argmax 2048 groups, enough to spread over every SM instead of one group per row.</summary>
    public const int GpuSliceLength = GroupThreads * 16;

    /// <summary>The argmax key of <paramref name="logit"/> at <paramref name="id"/> (host and device).</summary>
    public static ulong Key(float logit, int id)
    {
        uint ordered = 0;
        if (!XMath.IsNaN(logit))
        {
            uint bits = Interop.FloatAsInt(logit == 0f ? 0f : logit);
            ordered = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        }

        return ((ulong)ordered << 32) | (uint.MaxValue - (uint)id);
    }

    /// <summary>The token id a row's largest key names, or <see cref="NoToken"/> when every logit of the row was NaN.</summary>
    public static int TokenOf(ulong key) => key >> 32 == 0 ? NoToken : (int)(uint.MaxValue - (uint)key);

    /// <summary>Slices per row for rows of <paramref name="vocab"/> logits.</summary>
    public static int Slices(int vocab, int sliceLength) => (vocab + sliceLength - 1) / sliceLength;

    /// <summary>
    /// One group per slice of a row: keys[row, slice] = the largest key of logits[row, slice]. Threads stride over the
    /// slice with four loads in flight, then the warps' keys are reduced through shuffles and the group's through
    /// shared memory.
    /// </summary>
    /// <param name="logits">[rows, vocab] f32</param>
    /// <param name="keys">[rows, slices] the slices' largest keys</param>
    /// <param name="vocab">logits per row</param>
    /// <param name="sliceLength">logits per slice (the last slice of a row may be shorter)</param>
    public static void ArgMaxSlices(ArrayView<float> logits, ArrayView<ulong> keys, int vocab, int sliceLength)
    {
        var warpBest = SharedMemory.Allocate<ulong>(32); // [warp]
        int slices = Slices(vocab, sliceLength);
        int row = Grid.IdxX / slices;
        int begin = Grid.IdxX % slices * sliceLength;
        int end = Math.Min(vocab, begin + sliceLength);
        long rowStart = (long)row * vocab;
        int stride = Group.DimX;

        // Scan: each thread keeps the largest key of its elements.
        ulong best = 0;
        int i = begin + Group.IdxX;
        for (; i + 3 * stride < end; i += 4 * stride)
        {
            float a = logits[rowStart + i];
            float b = logits[rowStart + i + stride];
            float c = logits[rowStart + i + 2 * stride];
            float d = logits[rowStart + i + 3 * stride];
            best = Max(best, Max(Max(Key(a, i), Key(b, i + stride)), Max(Key(c, i + 2 * stride), Key(d, i + 3 * stride))));
        }

        for (; i < end; i += stride)
            best = Max(best, Key(logits[rowStart + i], i));

        // Reduce: the warp's lanes, then the group's warps.
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            best = Max(best, ShuffleDown(best, offset));
        if (Warp.LaneIdx == 0) warpBest[Warp.WarpIdx] = best;
        Group.Barrier();
        if (Group.IdxX == 0)
        {
            int warps = (Group.DimX + Warp.WarpSize - 1) / Warp.WarpSize;
            for (int w = 1; w < warps; w++) best = Max(best, warpBest[w]);
            keys[Grid.IdxX] = best;
        }
    }

    private static ulong Max(ulong a, ulong b) => a > b ? a : b;

    /// <summary>A 64-bit shuffle as two 32-bit ones (the shuffles ILGPU's backends all lower).</summary>
    private static ulong ShuffleDown(ulong v, int delta)
    {
        uint lo = (uint)Warp.ShuffleDown((int)(uint)v, delta);
        uint hi = (uint)Warp.ShuffleDown((int)(uint)(v >> 32), delta);
        return ((ulong)hi << 32) | lo;
    }
}
