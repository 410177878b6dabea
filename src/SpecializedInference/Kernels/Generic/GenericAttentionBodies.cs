using ILGPU;
using ILGPU.Algorithms;

namespace SpecializedInference.Kernels.Generic;

/// <summary>
/// The generic attention kernels: every size (head_dim, heads, K/V heads, block size, tiles) is a run-time
/// argument in <see cref="AttentionDims"/> and no loop is unrolled. Same algorithms as the generated,
/// specialized kernels; these are their baseline and the fallback for shapes no config specializes.
/// </summary>
public static class GenericAttentionBodies
{
    /// <summary>Largest number of query heads one generic thread group serves (per-thread accumulators live
    /// in fixed-size local arrays).</summary>
    public const int MaxHeadsPerGroup = 8;

    /// <summary>Appends the step's new K/V rows to the paged cache: one thread per (token, kv_head, 8-element unit),
    /// one 16-byte store per f16 unit (two per f32 unit). Tokens whose slot is negative are skipped.</summary>
    /// <param name="keys">[num_tokens, num_kv_heads, head_dim] f32</param>
    /// <param name="values">[num_tokens, num_kv_heads, head_dim] f32</param>
    /// <param name="keyCache">[num_blocks, num_kv_heads, block_size, head_dim] cache dtype</param>
    /// <param name="valueCache">[num_blocks, num_kv_heads, block_size, head_dim] cache dtype</param>
    public static void WriteKv<TCodec>(Index1D thread, AttentionDims d, AttentionMeta m, ArrayView<float> keys, ArrayView<float> values,
        ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache)
        where TCodec : struct, IKvCodec
    {
        int perToken = d.NumKvHeads * d.Units;
        int token = thread / perToken;
        int head = thread / d.Units % d.NumKvHeads;
        int unit = thread % d.Units;
        int slot = m.SlotMapping[token];
        if (slot < 0) return;

        // The source row [token, head, :] is contiguous, so the thread index is the unit's offset.
        long src = (long)thread.X * 8;
        // Destination [block, head, offset, unit * 8].
        long dst = (((long)(slot / d.BlockSize) * d.NumKvHeads + head) * d.BlockSize + slot % d.BlockSize) * d.HeadDim + unit * 8;
        default(TCodec).Store8(keyCache, dst, Load8(keys, src));
        default(TCodec).Store8(valueCache, dst, Load8(values, src));
    }

    /// <summary>
    /// Flash prefill, causal, for a variable-length batch in one launch. Thread group = (query tile of one
    /// sequence, head group). K/V are read through the sequence's block table, so a chunk of a long prompt
    /// attends to the earlier chunks already in the cache. Per K/V tile: load the tile into shared memory,
    /// score every (row, key) pair, update each row's online softmax (running max, running sum, rescale),
    /// accumulate P·V. No score matrix reaches global memory.
    /// </summary>
    /// <param name="queries">[num_tokens, num_heads, head_dim] f32</param>
    /// <param name="keyCache">[num_blocks, num_kv_heads, block_size, head_dim]</param>
    /// <param name="valueCache">[num_blocks, num_kv_heads, block_size, head_dim]</param>
    /// <param name="output">[num_tokens, num_heads, head_dim] f32</param>
    public static void Prefill<TCodec, THeads>(AttentionDims d, AttentionMeta m, ArrayView<float> queries,
        ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)
        where TCodec : struct, IKvCodec
        where THeads : struct, IHeadMapping
    {
        int heads = default(THeads).HeadsPerGroup(d);
        int headGroups = d.NumHeads / heads;
        int item = Grid.IdxX / headGroups;
        int firstHead = Grid.IdxX % headGroups * heads;
        int kvHead = firstHead / d.GroupSize;
        int seq = m.PrefillWork[2 * item];
        int i0 = m.PrefillWork[2 * item + 1];
        int queryStart = m.QueryStart[seq];
        int queryLen = m.QueryStart[seq + 1] - queryStart;
        int context = m.ContextLens[seq];

        int threads = Group.DimX;
        int t = Group.IdxX;
        int d4 = d.HeadDim4;
        int tileKv = d.TileKv;
        int positions = d.PrefillPositions;
        int rows = positions * heads;                      // row = position * heads + head
        int tilePositions = queryLen - i0 < positions ? queryLen - i0 : positions;
        int firstQueryPos = context - queryLen + i0;       // absolute position of the tile's first query
        int numKeys = firstQueryPos + tilePositions;       // causal: keys up to the tile's last query
        int tiles = (numKeys + tileKv - 1) / tileKv;
        int blockRow = seq * m.MaxBlocksPerSeq;

        // Shared memory, in Float4s then floats.
        var shared = SharedMemory.GetDynamic<Float4>();
        int kStride = d4 + 1;                              // K rows padded by 4 floats: no bank conflicts
        var sQ = shared.SubView(0, rows * d4);             // [rows, head_dim] pre-scaled queries
        var sK = shared.SubView(rows * d4, tileKv * kStride);          // [tile_kv, head_dim + 4]
        var sV = shared.SubView(rows * d4 + tileKv * kStride, tileKv * d4);   // [tile_kv, head_dim]
        var sO = shared.SubView(rows * d4 + tileKv * kStride + tileKv * d4, rows * d4); // [rows, head_dim] output accumulators
        int scalarStart = 2 * rows * d4 + tileKv * kStride + tileKv * d4;
        var scalars = shared.SubView(scalarStart, (rows * tileKv + 3 * rows + 3) / 4).Cast<float>();
        var sS = scalars.SubView(0, rows * tileKv);        // [rows, tile_kv] scores, then probabilities
        var sMax = scalars.SubView(rows * tileKv, rows);   // [rows] running max
        var sSum = scalars.SubView(rows * tileKv + rows, rows);       // [rows] running sum
        var sAlpha = scalars.SubView(rows * tileKv + 2 * rows, rows); // [rows] this tile's rescale factor

        // Q tile, scaled by 1/sqrt(head_dim); rows past the sequence's queries are zero.
        for (int f = t; f < rows * d4; f += threads)
        {
            int r = f / d4;
            int pos = r / heads;
            var q = default(Float4);
            if (pos < tilePositions)
            {
                long src = ((long)(queryStart + i0 + pos) * d.NumHeads + firstHead + r % heads) * d.HeadDim + f % d4 * 4;
                q = new Float4(queries[src], queries[src + 1], queries[src + 2], queries[src + 3]) * d.Scale;
            }
            sQ[f] = q;
            sO[f] = default;
        }
        for (int r = t; r < rows; r += threads)
        {
            sMax[r] = float.NegativeInfinity;
            sSum[r] = 0f;
        }

        for (int tile = 0; tile < tiles; tile++)
        {
            int k0 = tile * tileKv;
            Group.Barrier(); // the previous tile's readers are done

            // K/V tile, one 8-element unit per thread; keys past the last one are zero.
            for (int e = t; e < tileKv * d.Units; e += threads)
            {
                int j = e / d.Units;
                int unit = e % d.Units;
                int key = k0 + j;
                var k8 = default(Float8);
                var v8 = default(Float8);
                if (key < numKeys)
                {
                    long row = KeyRow(d, m, blockRow, kvHead, key);
                    k8 = default(TCodec).Load8(keyCache, row + unit * 8);
                    v8 = default(TCodec).Load8(valueCache, row + unit * 8);
                }
                sK[j * kStride + 2 * unit] = k8.Lo;
                sK[j * kStride + 2 * unit + 1] = k8.Hi;
                sV[j * d4 + 2 * unit] = v8.Lo;
                sV[j * d4 + 2 * unit + 1] = v8.Hi;
            }
            Group.Barrier();

            // Scores s = q·k for every (row, key) pair; causally masked pairs are -inf.
            for (int p = t; p < rows * tileKv; p += threads)
            {
                int r = p / tileKv;
                int j = p % tileKv;
                int pos = r / heads;
                float s = float.NegativeInfinity;
                if (pos < tilePositions && k0 + j <= firstQueryPos + pos)
                {
                    s = 0f;
                    for (int c = 0; c < d4; c++) s += sQ[r * d4 + c].Dot(sK[j * kStride + c]);
                }
                sS[p] = s;
            }
            Group.Barrier();

            // Online softmax, one thread per row: new max, rescale factor, probabilities, running sum.
            for (int r = t; r < rows; r += threads)
            {
                float mOld = sMax[r];
                float mNew = mOld;
                for (int j = 0; j < tileKv; j++) mNew = XMath.Max(mNew, sS[r * tileKv + j]);
                bool any = mNew != float.NegativeInfinity;
                float alpha = any ? AttentionMath.ExpOrZero(mOld - mNew) : 1f;
                float sum = 0f;
                for (int j = 0; j < tileKv; j++)
                {
                    float prob = any ? AttentionMath.ExpOrZero(sS[r * tileKv + j] - mNew) : 0f;
                    sS[r * tileKv + j] = prob;
                    sum += prob;
                }
                sMax[r] = mNew;
                sSum[r] = sSum[r] * alpha + sum;
                sAlpha[r] = alpha;
            }
            Group.Barrier();

            // Accumulate: o = o * alpha + P·V, each thread owning Float4s of the output rows.
            for (int f = t; f < rows * d4; f += threads)
            {
                int r = f / d4;
                int c = f % d4;
                var o = sO[f] * sAlpha[r];
                for (int j = 0; j < tileKv; j++) o = o.Fma(sV[j * d4 + c], sS[r * tileKv + j]);
                sO[f] = o;
            }
        }

        // Normalize and write the rows that are real queries.
        for (int f = t; f < rows * d4; f += threads)
        {
            int r = f / d4;
            int pos = r / heads;
            if (pos >= tilePositions) continue;
            var o = sO[f] * (1f / sSum[r]);
            long dst = ((long)(queryStart + i0 + pos) * d.NumHeads + firstHead + r % heads) * d.HeadDim + f % d4 * 4;
            Store4(output, dst, o);
        }
    }

    /// <summary>
    /// Flash decode, split-K: thread group = (decode, partition of DecodePartition keys, head group). Each
    /// thread scores one key against every head of the group (one K load serves them all), a warp per head
    /// takes the partition's max and sum, then threads own (key slot, 8 dims) for P·V with 16-byte V loads.
    /// A single-partition decode writes its output. Otherwise the partition's (max, sum, output) go to
    /// scratch and the group takes a ticket for its (decode, head group): the last of the decode's partitions
    /// to arrive combines them all (<see cref="CombinePartitions"/>), so decode is one launch.
    /// </summary>
    public static void Decode<TCodec, THeads>(AttentionDims d, AttentionMeta m, ArrayView<float> queries,
        ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)
        where TCodec : struct, IKvCodec
        where THeads : struct, IHeadMapping
    {
        int heads = default(THeads).HeadsPerGroup(d);
        int headGroups = d.NumHeads / heads;
        int item = Grid.IdxX / headGroups;
        int headGroup = Grid.IdxX % headGroups;
        int firstHead = headGroup * heads;
        int kvHead = firstHead / d.GroupSize;
        int work = item * AttentionPlan.DecodeWorkInts;   // (decode, partition, token, context, block-table row)
        int decode = m.DecodeWork[work];
        int part = m.DecodeWork[work + 1];
        int token = m.DecodeWork[work + 2];
        int context = m.DecodeWork[work + 3];
        int blockRow = m.DecodeWork[work + 4];
        int partition = d.DecodePartition;
        int k0 = part * partition;
        int numKeys = context - k0 < partition ? context - k0 : partition;
        int partitions = (context + partition - 1) / partition;

        int threads = Group.DimX;
        int t = Group.IdxX;
        int d4 = d.HeadDim4;
        int units = d.Units;
        int keySlots = threads / units;                    // P·V: threads per unit column

        var shared = SharedMemory.GetDynamic<Float4>();
        var sQ = shared.SubView(0, heads * d4);            // [heads, head_dim] pre-scaled queries
        var scalars = shared.SubView(heads * d4, (heads * partition + keySlots * heads * d.HeadDim + 2 * heads + 1 + 3) / 4).Cast<float>();
        var sP = scalars.SubView(0, heads * partition);    // [heads, partition] scores, then exp(s - max)
        var sRed = scalars.SubView(heads * partition, keySlots * heads * d.HeadDim); // [key_slots, heads, head_dim]
        var sMax = scalars.SubView(heads * partition + keySlots * heads * d.HeadDim, heads);
        var sSum = scalars.SubView(heads * partition + keySlots * heads * d.HeadDim + heads, heads);
        var sLast = scalars.SubView(heads * partition + keySlots * heads * d.HeadDim + 2 * heads, 1).Cast<int>(); // [1] drew the last ticket

        for (int f = t; f < heads * d4; f += threads)
        {
            long src = ((long)token * d.NumHeads + firstHead + f / d4) * d.HeadDim + f % d4 * 4;
            sQ[f] = new Float4(queries[src], queries[src + 1], queries[src + 2], queries[src + 3]) * d.Scale;
        }
        Group.Barrier();

        // Scores: one key per thread, 16-byte K loads, every head of the group from the same load.
        var s = LocalMemory.Allocate<float>(MaxHeadsPerGroup);
        for (int j = t; j < partition; j += threads)
        {
            for (int h = 0; h < heads; h++) s[h] = 0f;
            bool valid = j < numKeys;
            if (valid)
            {
                long row = KeyRow(d, m, blockRow, kvHead, k0 + j);
                for (int u = 0; u < units; u++)
                {
                    var k8 = default(TCodec).Load8(keyCache, row + u * 8);
                    for (int h = 0; h < heads; h++)
                        s[h] += sQ[h * d4 + 2 * u].Dot(k8.Lo) + sQ[h * d4 + 2 * u + 1].Dot(k8.Hi);
                }
            }
            for (int h = 0; h < heads; h++) sP[h * partition + j] = valid ? s[h] : float.NegativeInfinity;
        }
        Group.Barrier();

        // Softmax over the partition, a warp per head: max, then exp(s - max) and its sum.
        int warps = threads / Warp.WarpSize;
        for (int h = Warp.WarpIdx; h < heads; h += warps)
        {
            float mx = float.NegativeInfinity;
            for (int j = Warp.LaneIdx; j < partition; j += Warp.WarpSize) mx = XMath.Max(mx, sP[h * partition + j]);
            mx = WarpMax(mx);
            float sum = 0f;
            for (int j = Warp.LaneIdx; j < partition; j += Warp.WarpSize)
            {
                float prob = AttentionMath.ExpOrZero(sP[h * partition + j] - mx);
                sP[h * partition + j] = prob;
                sum += prob;
            }
            sum = WarpSum(sum);
            if (Warp.LaneIdx == 0)
            {
                sMax[h] = mx;
                sSum[h] = sum;
            }
        }
        Group.Barrier();

        // P·V: thread = (key slot, 8-dim unit); one 16-byte V load serves every head.
        var o = LocalMemory.Allocate<float>(MaxHeadsPerGroup * 8);
        int unit = t % units;
        int slot = t / units;
        if (slot < keySlots)
        {
            for (int i = 0; i < heads * 8; i++) o[i] = 0f;
            for (int j = slot; j < numKeys; j += keySlots)
            {
                var v8 = default(TCodec).Load8(valueCache, KeyRow(d, m, blockRow, kvHead, k0 + j) + unit * 8);
                for (int h = 0; h < heads; h++)
                {
                    float p = sP[h * partition + j];
                    o[h * 8 + 0] += p * v8.Lo.X;
                    o[h * 8 + 1] += p * v8.Lo.Y;
                    o[h * 8 + 2] += p * v8.Lo.Z;
                    o[h * 8 + 3] += p * v8.Lo.W;
                    o[h * 8 + 4] += p * v8.Hi.X;
                    o[h * 8 + 5] += p * v8.Hi.Y;
                    o[h * 8 + 6] += p * v8.Hi.Z;
                    o[h * 8 + 7] += p * v8.Hi.W;
                }
            }
            for (int h = 0; h < heads; h++)
                for (int e = 0; e < 8; e++) sRed[(slot * heads + h) * d.HeadDim + unit * 8 + e] = o[h * 8 + e];
        }
        Group.Barrier();

        // Sum the key slots, normalize by this partition's sum, write the output or the partial.
        for (int f = t; f < heads * d.HeadDim; f += threads)
        {
            int h = f / d.HeadDim;
            int dim = f % d.HeadDim;
            float acc = 0f;
            for (int k = 0; k < keySlots; k++) acc += sRed[(k * heads + h) * d.HeadDim + dim];
            float value = acc / sSum[h];
            int head = firstHead + h;
            if (partitions == 1)
            {
                output[((long)token * d.NumHeads + head) * d.HeadDim + dim] = value;
            }
            else
            {
                long partial = ((long)decode * d.NumHeads + head) * m.PartitionSlots + part;
                m.PartialOut[partial * d.HeadDim + dim] = value;
                if (dim == 0)
                {
                    m.PartialMaxSum[partial * 2] = sMax[h];
                    m.PartialMaxSum[partial * 2 + 1] = sSum[h];
                }
            }
        }
        if (partitions == 1) return;

        // Ticket: the group that completes the decode's set of partitions combines them. Release: every
        // thread's partial stores, the barrier, then thread 0's device fence and ticket (a cumulative
        // release through the barrier, the split-K semaphore pattern).
        Group.Barrier();
        if (t == 0)
        {
            ref int ticket = ref m.DecodeTickets[decode * headGroups + headGroup];
            MemoryFence.DeviceLevel();
            bool last = Atomic.Add(ref ticket, 1) == partitions - 1;
            if (last)
            {
                ticket = 0;                                // every group has drawn: ready for the next launch
                MemoryFence.DeviceLevel();                 // acquire: the other groups' partials before ours are read
            }
            sLast[0] = last ? 1 : 0;
        }
        Group.Barrier();
        if (sLast[0] != 0) CombinePartitions(d, m, decode, token, firstHead, heads, partitions, sMax, sSum, sRed, output);
    }

    /// <summary>
    /// Combines the split-K partitions of one decode for the group's heads (run by the group that drew the
    /// last ticket): per head M = max_p m_p and L = Σ_p l_p·exp(m_p - M), a warp per head; then
    /// out = Σ_p l_p·exp(m_p - M)·o_p / L with threads split into slices of partitions × Float4 columns (each
    /// slice's loads independent), the slices summed in shared memory.
    /// </summary>
    /// <remarks>The partials were written by other groups, maybe on other SMs. Their lines are not stale in this
    /// SM's L1: the acquire fence after the ticket orders these loads after the writers' release (the PTX memory
    /// model makes plain loads after it observe those stores), and each head's scratch starts on a 128-byte line
    /// (<see cref="AttentionMeta.PartitionSlots"/>), so no other group ever loaded a line of it this launch.</remarks>
    private static void CombinePartitions(AttentionDims d, AttentionMeta m, int decode, int token, int firstHead, int heads,
        int partitions, ArrayView<float> sMax, ArrayView<float> sInvSum, ArrayView<float> sRed, ArrayView<float> output)
    {
        int t = Group.IdxX;
        int threads = Group.DimX;
        int warps = threads / Warp.WarpSize;
        int d4 = d.HeadDim4;
        long first = ((long)decode * d.NumHeads + firstHead) * m.PartitionSlots;   // partial (decode, firstHead, 0)

        // M and L of each head, a warp per head.
        for (int h = Warp.WarpIdx; h < heads; h += warps)
        {
            long row = first + (long)h * m.PartitionSlots;
            float mx = float.NegativeInfinity;
            for (int p = Warp.LaneIdx; p < partitions; p += Warp.WarpSize) mx = XMath.Max(mx, m.PartialMaxSum[(row + p) * 2]);
            mx = WarpMax(mx);
            float sum = 0f;
            for (int p = Warp.LaneIdx; p < partitions; p += Warp.WarpSize)
                sum += m.PartialMaxSum[(row + p) * 2 + 1] * AttentionMath.ExpOrZero(m.PartialMaxSum[(row + p) * 2] - mx);
            sum = WarpSum(sum);
            if (Warp.LaneIdx == 0)
            {
                sMax[h] = mx;
                sInvSum[h] = 1f / sum;
            }
        }
        Group.Barrier();

        // Σ_p w_p·o_p: thread = (slice of partitions, Float4 column of the group's heads).
        int columns = heads * d4;
        int slices = threads / columns > 1 ? threads / columns : 1;
        var sSlice = sRed.Cast<Float4>();                  // [slices, heads, head_dim / 4] per-slice sums
        for (int i = t; i < slices * columns; i += threads)
        {
            int slice = i / columns;
            int f = i % columns;
            int h = f / d4;
            long row = first + (long)h * m.PartitionSlots;
            float mx = sMax[h];
            var acc = default(Float4);
            for (int p = slice; p < partitions; p += slices)
            {
                float weight = m.PartialMaxSum[(row + p) * 2 + 1] * AttentionMath.ExpOrZero(m.PartialMaxSum[(row + p) * 2] - mx);
                acc = acc.Fma(Load4(m.PartialOut, (row + p) * d.HeadDim + f % d4 * 4), weight);
            }
            if (slices == 1) Store4(output, ((long)token * d.NumHeads + firstHead) * d.HeadDim + f * 4, acc * sInvSum[h]);
            else sSlice[i] = acc;
        }
        if (slices == 1) return;
        Group.Barrier();
        for (int f = t; f < columns; f += threads)
        {
            var acc = default(Float4);
            for (int k = 0; k < slices; k++) acc = acc + sSlice[k * columns + f];
            Store4(output, ((long)token * d.NumHeads + firstHead) * d.HeadDim + f * 4, acc * sInvSum[f / d4]);
        }
    }

    /// <summary>Materialized attention, step 1: every score s[token, head, key] = q·k / sqrt(head_dim) to
    /// global memory; causally masked keys are -inf. One thread per (token, head, key).</summary>
    public static void MaterializedScores<TCodec>(Index1D thread, AttentionDims d, AttentionMeta m, ArrayView<float> queries,
        ArrayView<Chunk16> keyCache)
        where TCodec : struct, IKvCodec
    {
        int key = thread % m.MaxContext;
        int rowIndex = thread / m.MaxContext;
        int head = rowIndex % d.NumHeads;
        int token = rowIndex / d.NumHeads;
        int seq = m.TokenSeq[token];
        int queryStart = m.QueryStart[seq];
        int context = m.ContextLens[seq];
        int queryPos = context - (m.QueryStart[seq + 1] - queryStart) + token - queryStart;
        float s = float.NegativeInfinity;
        if (key <= queryPos)
        {
            long row = KeyRow(d, m, seq * m.MaxBlocksPerSeq, head / d.GroupSize, key);
            long q = ((long)token * d.NumHeads + head) * d.HeadDim;
            s = 0f;
            for (int u = 0; u < d.Units; u++)
            {
                var k8 = default(TCodec).Load8(keyCache, row + u * 8);
                s += Load4(queries, q + u * 8).Dot(k8.Lo) + Load4(queries, q + u * 8 + 4).Dot(k8.Hi);
            }
            s *= d.Scale;
        }
        m.Scores[thread] = s;
    }

    /// <summary>Materialized attention, step 2: softmax of each score row in place, one warp per (token, head).</summary>
    public static void MaterializedSoftmax(AttentionMeta m)
    {
        var row = m.Scores.SubView((long)Grid.IdxX * m.MaxContext, m.MaxContext);
        float mx = float.NegativeInfinity;
        for (int j = Warp.LaneIdx; j < m.MaxContext; j += Warp.WarpSize) mx = XMath.Max(mx, row[j]);
        mx = WarpMax(mx);
        float sum = 0f;
        for (int j = Warp.LaneIdx; j < m.MaxContext; j += Warp.WarpSize)
        {
            float prob = AttentionMath.ExpOrZero(row[j] - mx);
            row[j] = prob;
            sum += prob;
        }
        sum = WarpSum(sum);
        float inv = 1f / sum;
        for (int j = Warp.LaneIdx; j < m.MaxContext; j += Warp.WarpSize) row[j] *= inv;
    }

    /// <summary>Materialized attention, step 3: o = P·V, one thread per (token, head, 8-dim unit).</summary>
    public static void MaterializedValues<TCodec>(Index1D thread, AttentionDims d, AttentionMeta m, ArrayView<Chunk16> valueCache,
        ArrayView<float> output)
        where TCodec : struct, IKvCodec
    {
        int unit = thread % d.Units;
        int rowIndex = thread / d.Units;
        int head = rowIndex % d.NumHeads;
        int token = rowIndex / d.NumHeads;
        int seq = m.TokenSeq[token];
        int queryStart = m.QueryStart[seq];
        int context = m.ContextLens[seq];
        int queryPos = context - (m.QueryStart[seq + 1] - queryStart) + token - queryStart;
        var lo = default(Float4);
        var hi = default(Float4);
        for (int key = 0; key <= queryPos; key++)
        {
            float p = m.Scores[(long)rowIndex * m.MaxContext + key];
            var v8 = default(TCodec).Load8(valueCache, KeyRow(d, m, seq * m.MaxBlocksPerSeq, head / d.GroupSize, key) + unit * 8);
            lo = lo.Fma(v8.Lo, p);
            hi = hi.Fma(v8.Hi, p);
        }
        long dst = ((long)token * d.NumHeads + head) * d.HeadDim + unit * 8;
        Store4(output, dst, lo);
        Store4(output, dst + 4, hi);
    }

    /// <summary>Element offset of key <paramref name="key"/>'s row [block, kv_head, slot, :] in the cache.</summary>
    private static long KeyRow(AttentionDims d, AttentionMeta m, int blockRow, int kvHead, int key)
    {
        int block = m.BlockTables[blockRow + key / d.BlockSize];
        return (((long)block * d.NumKvHeads + kvHead) * d.BlockSize + key % d.BlockSize) * d.HeadDim;
    }

    private static Float4 Load4(ArrayView<float> a, long i) => new(a[i], a[i + 1], a[i + 2], a[i + 3]);

    private static Float8 Load8(ArrayView<float> a, long i) => new(Load4(a, i), Load4(a, i + 4));

    private static void Store4(ArrayView<float> a, long i, Float4 v)
    {
        a[i] = v.X;
        a[i + 1] = v.Y;
        a[i + 2] = v.Z;
        a[i + 3] = v.W;
    }

    private static float WarpMax(float v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset >>= 1) v = XMath.Max(v, Warp.ShuffleXor(v, offset));
        return v;
    }

    private static float WarpSum(float v)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset >>= 1) v += Warp.ShuffleXor(v, offset);
        return v;
    }
}
