using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// How the warp schedule's decode matvec brings its weights in (<see cref="DenseKernels.Loads"/>).
/// </summary>
public enum MatvecLoads
{
    /// <summary>Each lane loads <see cref="MatvecDepth"/> chunks of its row into registers per step, then uses them: the
    /// warp waits one memory round trip per step, and the chunks in flight hold registers (12 per f16 chunk with the
    /// activations they meet), so deeper steps cost occupancy (ptxas sm_90: 64, 96, 168 registers at 2, 4, 8 chunks).</summary>
    Registers,

    /// <summary>Each lane keeps <see cref="AsyncCopyBodies.Stages"/> chunks of its row (of each row of a fused pair) in
    /// flight as asynchronous copies into its slots of shared memory (<c>cp.async</c>, sm_80+), which hold no registers
    /// while they fly, and uses one chunk per step as the copies land (<see cref="AsyncCopyBodies.LinearWarpAsync{TW, TE}"/>,
    /// <see cref="FusedKernelBodies.NormLinearWarpAsync{TW, TO}"/>).</summary>
    AsyncCopy,
}

/// <summary>Names of <see cref="MatvecLoads"/> on the command line.</summary>
public static class MatvecLoadNames
{
    public static string Name(MatvecLoads loads) => loads switch
    {
        MatvecLoads.AsyncCopy => "async-copy",
        _ => "registers",
    };

    /// <summary>Parses <c>registers</c> or <c>async-copy</c>.</summary>
    public static MatvecLoads Parse(string text)
    {
        foreach (var loads in Enum.GetValues<MatvecLoads>())
            if (Name(loads) == text) return loads;
        throw new ArgumentException($"--matvec-loads '{text}': expected registers or async-copy");
    }
}

/// <summary>
/// The decode matvec with its weights streamed through shared memory by asynchronous copies (<see cref="MatvecLoads.AsyncCopy"/>).
/// <para>Why: at batch 1 a matvec is a stream of weights, and what bounds it is the bytes each SM keeps in flight
/// (about 30 KB an SM hides HBM's latency on an H200). With the loads in registers those bytes hold registers until they
/// land, so each warp keeps 2–8 chunks per lane in flight and its row is a chain of round trips (run 12: TinyLlama's
/// small matvecs at 0.9–2.0 TB/s; run 23: Llama-3-8B's largest at 3.1–3.2 TB/s against a 4.1 TB/s copy). A
/// <c>cp.async</c> copy holds no register while it flies: a lane keeps <see cref="Stages"/> chunks of its row in flight
/// (4 KB a warp) in its own ring of shared-memory slots, waits for the oldest, uses it, and sends the copy
/// <see cref="Stages"/> chunks ahead into the freed slot, so a row costs one round trip and then streams.</para>
/// <para>Each lane reads only the slots it filled, so the copies need no barrier: <c>cp.async.wait_group</c> makes a
/// lane's own copies visible to it. ILGPU keeps a shared allocation's address to itself; the copies name the kernel's
/// only shared allocation by the symbol ILGPU gives it (<c>__shared_alloca0</c>, checked by the PTX compile tests). On
/// ILGPU's CPU accelerator, which has neither, the lane stores the chunk into its slot itself: the same ring, in order.</para>
/// </summary>
public static class AsyncCopyBodies
{
    /// <summary>Chunks of its row a lane keeps in flight (8 × 16 bytes: a warp's 4 KB, TinyLlama's whole o_proj row).</summary>
    public const int Stages = 8;

    /// <summary>Warps per group of <see cref="LinearWarpAsync{TW, TE}"/>.</summary>
    public const int WarpsPerGroup = 4;

    /// <summary>The group's ring: 16 KB of shared memory, [warp of the group, stage, lane] chunks.</summary>
    public const int RingChunks = WarpsPerGroup * Stages * 32;

    /// <summary>The ring of <see cref="FusedKernelBodies.NormLinearWarpAsync{TW, TO}"/>, whose warps stream two rows: 32 KB,
    /// [warp of the group, stage, row of the pair, lane] chunks.</summary>
    public const int PairRingChunks = 2 * RingChunks;

    /// <summary>
    /// <see cref="DenseKernelBodies.LinearWarp{TW, TE, TD, TP}"/>'s work, warp (row n, token group) for up to
    /// <see cref="DenseKernelBodies.WarpTokens"/> tokens, with the row streamed through the lane's ring: lane l uses chunks
    /// l, l + 32, … of the row one per step (past the row's end the last chunk again, its product dropped).
    /// </summary>
    /// <param name="w">[rows, cols] weights as 16-byte chunks</param>
    /// <param name="x">[tokens, cols] f32 as Vec4</param>
    /// <param name="y">[tokens, rows] f32</param>
    /// <param name="wAddress">the device address of <paramref name="w"/>'s first chunk (for the copies)</param>
    /// <typeparam name="TDependency">Stream-ordered, or launched programmatically (<see cref="DecodeLaunches.PerStageProgrammatic"/>):
    /// then the ring fills with the first <see cref="Stages"/> steps of weights, which no kernel writes, before the wait for the
    /// kernel that wrote <paramref name="x"/> and reads <paramref name="y"/>.</typeparam>
    public static void LinearWarpAsync<TW, TE, TDependency>(ArrayView<Bits128> w, ArrayView<Vec4> x, ArrayView<float> y, int rows, int cols, int tokens, long wAddress)
        where TW : struct, IWeightFormat
        where TE : struct, IEpilogue
        where TDependency : struct, ILaunchDependency
    {
        default(TDependency).LetTheNextStart();
        var ring = SharedMemory.Allocate<Bits128>(RingChunks);          // [warp of group, stage, lane]
        const int warpTokens = DenseKernelBodies.WarpTokens;
        int lane = Warp.LaneIdx;
        int warp = (Grid.IdxX * Group.DimX + Group.IdxX) / Warp.WarpSize;
        int tokenGroups = (tokens + warpTokens - 1) / warpTokens;
        if (warp >= rows * tokenGroups) return; // uniform across the warp; no group barrier follows

        int n = warp % rows;
        int t0 = warp / rows * warpTokens;
        int chunks = cols / default(TW).ElementsPerChunk;
        int vecsPerChunk = default(TW).ElementsPerChunk / 4;
        int vecsPerToken = cols / 4;
        bool has1 = t0 + 1 < tokens, has2 = t0 + 2 < tokens, has3 = t0 + 3 < tokens;
        long x0 = (long)t0 * vecsPerToken;
        long row = (long)n * chunks;
        int steps = (chunks + Warp.WarpSize - 1) / Warp.WarpSize;       // the same for every lane of the warp
        int lane0 = Group.IdxX / Warp.WarpSize * Stages * Warp.WarpSize + lane; // the lane's slot of stage 0

        // Fill the ring: steps 0 … Stages − 1 in flight, a commit group each (empty past the row's end, so the waits
        // below count the same for every row).
        for (int k = 0; k < Stages; k++)
        {
            if (k < steps) Send(w, ring, wAddress, row, ChunkAt(lane, k, chunks), lane0 + k * Warp.WarpSize);
            Commit();
        }
        default(TDependency).WaitForThePrevious();                     // x is the previous kernel's output

        var sums = default(DenseKernelBodies.WarpTokenSums);
        for (int k = 0; k < steps; k++)
        {
            WaitOldest();                                               // step k's copy has landed
            int slot = lane0 + (k % Stages) * Warp.WarpSize;
            var chunk = ring[slot];
            int c = lane + k * Warp.WarpSize;
            bool valid = c < chunks;                                    // past the row's end: the last chunk, dropped
            long xAt = (long)(valid ? c : chunks - 1) * vecsPerChunk;
            float d0 = default(TW).Dot(chunk, x, x0 + xAt);
            float d1 = has1 ? default(TW).Dot(chunk, x, x0 + vecsPerToken + xAt) : 0f;
            float d2 = has2 ? default(TW).Dot(chunk, x, x0 + 2L * vecsPerToken + xAt) : 0f;
            float d3 = has3 ? default(TW).Dot(chunk, x, x0 + 3L * vecsPerToken + xAt) : 0f;
            if (valid) sums = sums.Plus(new DenseKernelBodies.WarpTokenSums { A0 = d0, A1 = d1, A2 = d2, A3 = d3 });
            // The slot is read (its products depend on it): send step k + Stages into it.
            if (k + Stages < steps) Send(w, ring, wAddress, row, ChunkAt(lane, k + Stages, chunks), slot);
            Commit();
        }
        WaitAll();

        sums.Write<TE>(y, rows, n, t0, has1, has2, has3, lane);
    }

    /// <summary>Chunk l + 32k of the row, or its last chunk once past the end.</summary>
    internal static int ChunkAt(int lane, int k, int chunks)
    {
        int c = lane + k * Warp.WarpSize;
        return c < chunks ? c : chunks - 1;
    }

    /// <summary>Chunk <paramref name="c"/> of the row at chunk <paramref name="row"/> into ring slot <paramref name="slot"/>:
    /// an asynchronous 16-byte copy on CUDA, a store on the CPU accelerator.</summary>
    internal static void Send(ArrayView<Bits128> w, ArrayView<Bits128> ring, long wAddress, long row, int c, int slot)
    {
        if (!CudaAsm.IsSupported)
        {
            ring[slot] = w[row + c];
            return;
        }
        long source = wAddress + (row + c) * 16;
        long offset = (long)slot * 16;
        CudaAsm.Emit("{ .reg .u64 si_ring; mov.u64 si_ring, __shared_alloca0; add.u64 si_ring, si_ring, %0; cp.async.cg.shared.global [si_ring], [%1], 16; }",
            offset, source);
    }

    /// <summary>Closes the copies sent since the last commit into one group.</summary>
    internal static void Commit()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.commit_group;");
    }

    /// <summary>Waits until at most <see cref="Stages"/> − 1 groups are in flight: the oldest has landed.</summary>
    internal static void WaitOldest()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_group 7;");   // Stages − 1
    }

    /// <summary>Waits for every copy (the empty groups past the row's end), so none is in flight when the warp exits.</summary>
    internal static void WaitAll()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_all;");
    }
}
