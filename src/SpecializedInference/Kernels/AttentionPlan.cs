using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels;

/// <summary>
/// One step's batch metadata on the device, as the kernels read it. Passed to every kernel as one argument.
/// </summary>
public struct AttentionMeta
{
    /// <summary>[num_seqs + 1] first token of each sequence (cu_seqlens); the last entry is num_tokens.</summary>
    public ArrayView<int> QueryStart;
    /// <summary>[num_seqs] keys each sequence attends to, the step's new tokens included.</summary>
    public ArrayView<int> ContextLens;
    /// <summary>[num_seqs, MaxBlocksPerSeq] physical block ids in logical order.</summary>
    public ArrayView<int> BlockTables;
    /// <summary>[num_tokens] cache slot of each new token (block * block_size + offset), -1 skips.</summary>
    public ArrayView<int> SlotMapping;
    /// <summary>[num_tokens] sequence of each token (the materialized path).</summary>
    public ArrayView<int> TokenSeq;
    /// <summary>[num_prefill_items, 2] (sequence, first query index) of each prefill query tile.</summary>
    public ArrayView<int> PrefillWork;
    /// <summary>[num_decode_items, 5] (decode index, partition, query token, context length, block-table row
    /// offset = sequence * MaxBlocksPerSeq) of each split-K partition: everything a decode group needs before its
    /// block-table read, in independent loads (one memory round trip, not a chain through the sequence's
    /// QueryStart and ContextLens). The generated decode takes the blocks from <see cref="DecodeBlocks"/> in that
    /// same round trip instead.</summary>
    public ArrayView<int> DecodeWork;
    /// <summary>[num_decode_items, DecodeBlocksPerItem] the physical blocks of each partition, from the block of its
    /// first key (partition * partition_size / block_size) on; past the sequence's last block, that block again.
    /// The generated decode reads them in the same round trip as its work item instead of one after it, through
    /// the block table.</summary>
    public ArrayView<int> DecodeBlocks;
    /// <summary>[num_decodes, head_groups] partitions of a multi-partition decode that have published their
    /// partials this launch. Uploaded as zeros with the step's metadata; the group that draws the last ticket
    /// combines and puts the counter back to 0 for the next launch (the next layer).</summary>
    public ArrayView<int> DecodeTickets;
    /// <summary>[num_decodes, num_heads, PartitionSlots, head_dim] each partition's output, normalized by its own sum.</summary>
    public ArrayView<float> PartialOut;
    /// <summary>[num_decodes, num_heads, PartitionSlots, 2] each partition's (max, sum).</summary>
    public ArrayView<float> PartialMaxSum;
    /// <summary>[num_tokens, num_heads, MaxContext] scores, then probabilities (the materialized path only).</summary>
    public ArrayView<float> Scores;
    public int MaxBlocksPerSeq;
    /// <summary>Entries per <see cref="DecodeBlocks"/> item: <see cref="AttentionPlan.DecodeBlocksPerItem"/>.</summary>
    public int DecodeBlocksPerItem;
    /// <summary>Scratch slots per (decode, head): the most partitions any decode spans, rounded up to
    /// <see cref="AttentionPlan.PartitionSlotAlignment"/> so each head's partials start on a 128-byte line
    /// (1 when no decode spans more than one partition: then no partial is written).</summary>
    public int PartitionSlots;
    /// <summary>The longest context of the step: the row length of <see cref="Scores"/> (the materialized path only; 0 otherwise).</summary>
    public int MaxContext;
    /// <summary>[decode groups, DecodeStage.SlotsPerGroup] where a timed tensor-core decode (<see cref="SmStageClock"/>,
    /// <see cref="AttentionOptions.TimeDecodeStages"/>) marks its stages; empty otherwise.</summary>
    public ArrayView<long> StageTimes;
}

/// <summary>
/// A step's batch metadata uploaded once (one int buffer, one copy) and reused by every layer, with the work
/// lists of the kernel set that planned it: prefill query tiles and decode partitions. Its device buffers are
/// borrowed from the kernel set's <see cref="PlanBufferPool"/> and given back on <see cref="Dispose"/>.
/// </summary>
public sealed class AttentionPlan : IAttentionPlan
{
    private readonly PlanBuffers _buffers;

    private AttentionPlan(object owner, AttentionBatch batch, PlanBuffers buffers, AttentionMeta meta)
    {
        Owner = owner;
        Batch = batch;
        _buffers = buffers;
        Meta = meta;
    }

    public AttentionBatch Batch { get; }

    /// <summary>The kernel set that planned this step (its tiles shaped the work lists).</summary>
    internal object Owner { get; }

    public AttentionMeta Meta { get; }

    public int NumPrefillItems { get; private init; }

    public int NumDecodes { get; private init; }

    public int NumDecodeItems { get; private init; }

    /// <summary>The large-batch decode's layout when this step's decodes were planned for it (its partitions and head
    /// groups), null for the set's own decode.</summary>
    public DecodeLayout? DecodeLayout { get; private init; }

    /// <summary>Partition scratch slots per head are a multiple of this: 16 slots of (max, sum) are 128 bytes,
    /// one cache line, so the partials of different heads never share a line.</summary>
    public const int PartitionSlotAlignment = 16;

    /// <summary>Ints per <see cref="AttentionMeta.DecodeWork"/> item.</summary>
    public const int DecodeWorkInts = 5;

    /// <summary>Physical blocks a decode partition can touch: partition / block_size when blocks tile partitions,
    /// else two more (a partition that starts or ends inside a block). The generator's decode emitter sizes its
    /// block list with the same formula.</summary>
    public static int DecodeBlocksPerItem(int partition, int blockSize)
        => partition % blockSize == 0 ? partition / blockSize : partition / blockSize + 2;

    /// <summary>Largest physical block id any block table names (checked against the cache at launch).</summary>
    public int MaxBlockId { get; private init; }

    /// <summary>Largest slot the slot mapping names.</summary>
    public long MaxSlot { get; private init; }

    public bool IsDisposed { get; private set; }

    /// <summary>Checks the batch and builds its work lists for the given tiles.</summary>
    /// <param name="prefillPositions">Query positions per prefill work item.</param>
    /// <param name="decodePartition">Keys per decode partition.</param>
    /// <param name="headGroups">Thread groups per decode partition (each a set of query heads): one ticket
    /// counter per (decode, head group).</param>
    /// <param name="materialized">Whether to allocate the [num_tokens, num_heads, max_context] score matrix.</param>
    /// <param name="largeBatchDecode">The large-batch decode's layout when the step runs it (then
    /// <paramref name="decodePartition"/> and <paramref name="headGroups"/> are its own), recorded for the launch.</param>
    /// <param name="stageTimes">Whether to give the decode groups a <see cref="AttentionMeta.StageTimes"/> row each (zeroed).</param>
    internal static AttentionPlan Create(object owner, PlanBufferPool pool, AttentionBatch batch, AttentionShape shape,
        int prefillPositions, int decodePartition, int headGroups, bool materialized, DecodeLayout? largeBatchDecode = null, bool stageTimes = false)
    {
        ArgumentNullException.ThrowIfNull(batch);
        Validate(batch, shape);
        int numSeqs = batch.NumSeqs;
        int numTokens = batch.NumTokens;
        // The block tables' row stride rounds up to a power of two: as contexts grow it changes at doublings, not at every
        // block, so the metadata a decode step's launches take repeats from step to step (LaunchSignature, CUDA graphs).
        int maxBlocks = (int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, batch.BlockTables.Max(t => t.Length)));
        int maxContext = Math.Max(1, batch.ContextLens.DefaultIfEmpty(0).Max());

        var queryStart = new int[numSeqs + 1];
        for (int s = 0; s < numSeqs; s++) queryStart[s + 1] = queryStart[s] + batch.QueryLens[s];
        var blockTables = new int[numSeqs * maxBlocks];
        int maxBlockId = -1;
        for (int s = 0; s < numSeqs; s++)
        {
            int used = (batch.ContextLens[s] + shape.BlockSize - 1) / shape.BlockSize;
            for (int b = 0; b < batch.BlockTables[s].Length; b++)
            {
                blockTables[s * maxBlocks + b] = batch.BlockTables[s][b];
                if (b < used) maxBlockId = Math.Max(maxBlockId, batch.BlockTables[s][b]);
            }
        }
        var tokenSeq = new int[numTokens];
        for (int s = 0; s < numSeqs; s++)
            for (int t = queryStart[s]; t < queryStart[s + 1]; t++) tokenSeq[t] = s;

        var prefill = new List<int>();
        int numDecodes = 0;
        var decodeWork = new List<int>();
        var decodeBlocks = new List<int>();
        int blocksPerItem = DecodeBlocksPerItem(decodePartition, shape.BlockSize);
        int maxPartitions = 1;
        for (int s = 0; s < numSeqs; s++)
        {
            int queryLen = batch.QueryLens[s];
            if (queryLen == 0) continue;
            if (queryLen == 1 && !materialized)
            {
                int decodeIndex = numDecodes++;
                int partitions = (batch.ContextLens[s] + decodePartition - 1) / decodePartition;
                maxPartitions = Math.Max(maxPartitions, partitions);
                for (int p = 0; p < partitions; p++)
                {
                    decodeWork.Add(decodeIndex);
                    decodeWork.Add(p);
                    decodeWork.Add(queryStart[s]);
                    decodeWork.Add(batch.ContextLens[s]);
                    decodeWork.Add(s * maxBlocks);
                    int usedBlocks = (batch.ContextLens[s] + shape.BlockSize - 1) / shape.BlockSize;
                    int firstBlock = p * decodePartition / shape.BlockSize;
                    for (int b = 0; b < blocksPerItem; b++)
                        decodeBlocks.Add(batch.BlockTables[s][Math.Min(firstBlock + b, usedBlocks - 1)]);
                }
                continue;
            }
            for (int i0 = 0; i0 < queryLen; i0 += prefillPositions)
            {
                prefill.Add(s);
                prefill.Add(i0);
            }
        }

        // One int buffer for everything, the decode tickets as zeros; each segment gets at least one element
        // so every sub-view is valid.
        var tickets = new int[numDecodes * headGroups];
        var segments = new[] { queryStart, batch.ContextLens, blockTables, batch.SlotMapping, tokenSeq,
            prefill.ToArray(), decodeWork.ToArray(), tickets, decodeBlocks.ToArray() };
        var offsets = new long[segments.Length + 1];
        for (int i = 0; i < segments.Length; i++) offsets[i + 1] = offsets[i] + Math.Max(1, segments[i].Length);
        var host = new int[offsets[^1]];
        for (int i = 0; i < segments.Length; i++) segments[i].CopyTo(host, offsets[i]);

        int slots = maxPartitions == 1 ? 1 : (maxPartitions + PartitionSlotAlignment - 1) / PartitionSlotAlignment * PartitionSlotAlignment;
        // No decode spans two partitions: no partial is written (one Float4 keeps the kernels' Float4 view non-empty).
        long partialOut = maxPartitions == 1 ? 4L : (long)numDecodes * shape.NumHeads * slots * shape.HeadDim;
        long partialMaxSum = maxPartitions == 1 ? 1L : (long)numDecodes * shape.NumHeads * slots * 2;
        long scores = materialized ? Math.Max(1L, (long)numTokens * shape.NumHeads * maxContext) : 1L;
        // The stage times as longs after the floats, from an even float offset (8-byte aligned).
        long timesAt = (partialOut + partialMaxSum + scores + 1) / 2 * 2;
        long times = stageTimes ? Math.Max(1L, (long)decodeWork.Count / DecodeWorkInts * headGroups * DecodeStage.SlotsPerGroup) : 0;

        var buffers = pool.Rent(host.Length, timesAt + 2 * times);
        try
        {
            ArrayView<int> all = buffers.Ints.View.SubView(0, host.Length);
            all.CopyFromCPU(host);
            ArrayView<float> f = buffers.Floats.View;
            ArrayView<int> Seg(int i) => all.SubView(offsets[i], offsets[i + 1] - offsets[i]);
            var meta = new AttentionMeta
            {
                QueryStart = Seg(0),
                ContextLens = Seg(1),
                BlockTables = Seg(2),
                SlotMapping = Seg(3),
                TokenSeq = Seg(4),
                PrefillWork = Seg(5),
                DecodeWork = Seg(6),
                DecodeTickets = Seg(7),
                DecodeBlocks = Seg(8),
                DecodeBlocksPerItem = blocksPerItem,
                PartialOut = f.SubView(0, partialOut),
                PartialMaxSum = f.SubView(partialOut, partialMaxSum),
                Scores = f.SubView(partialOut + partialMaxSum, scores),
                MaxBlocksPerSeq = maxBlocks,
                PartitionSlots = slots,
                // Only the materialized path reads it; elsewhere a context growing by a token must not change the launch arguments.
                MaxContext = materialized ? maxContext : 0,
                StageTimes = times > 0 ? f.SubView(timesAt, 2 * times).Cast<long>() : default,
            };
            if (times > 0) meta.StageTimes.MemSetToZero();
            return new AttentionPlan(owner, batch, buffers, meta)
            {
                NumPrefillItems = prefill.Count / 2,
                NumDecodes = numDecodes,
                NumDecodeItems = decodeWork.Count / DecodeWorkInts,
                DecodeLayout = largeBatchDecode,
                MaxBlockId = maxBlockId,
                MaxSlot = batch.SlotMapping.DefaultIfEmpty(-1).Max(),
            };
        }
        catch
        {
            buffers.Dispose();
            throw;
        }
    }

    private static void Validate(AttentionBatch batch, AttentionShape shape)
    {
        int n = batch.NumSeqs;
        if (batch.ContextLens.Length != n || batch.BlockTables.Length != n)
            throw new ArgumentException($"attention batch: QueryLens has {n} sequences but ContextLens has {batch.ContextLens.Length} and BlockTables {batch.BlockTables.Length}.");
        long tokens = 0;
        for (int s = 0; s < n; s++)
        {
            int q = batch.QueryLens[s], c = batch.ContextLens[s];
            if (q < 0) throw new ArgumentException($"attention batch: sequence {s} has QueryLens {q}; expected >= 0.");
            if (c < q) throw new ArgumentException($"attention batch: sequence {s} has ContextLens {c} < QueryLens {q}; the context includes the new tokens.");
            if (batch.BlockTables[s] is null) throw new ArgumentException($"attention batch: sequence {s} has no block table.");
            int needed = (c + shape.BlockSize - 1) / shape.BlockSize;
            if (batch.BlockTables[s].Length < needed)
                throw new ArgumentException($"attention batch: sequence {s} has context {c} and needs {needed} blocks of {shape.BlockSize}, but its block table has {batch.BlockTables[s].Length}.");
            for (int b = 0; b < needed; b++)
                if (batch.BlockTables[s][b] < 0)
                    throw new ArgumentException($"attention batch: sequence {s} block table entry {b} is {batch.BlockTables[s][b]}; expected a block id >= 0.");
            tokens += q;
        }
        if (tokens != batch.SlotMapping.Length)
            throw new ArgumentException($"attention batch: QueryLens add up to {tokens} tokens but SlotMapping has {batch.SlotMapping.Length} entries.");
    }

    /// <summary>The decode groups' <see cref="AttentionMeta.StageTimes"/> after the launches so far (waits for the
    /// device): [groups, DecodeStage.SlotsPerGroup], empty when the plan has none.</summary>
    public long[] ReadStageTimes()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (Meta.StageTimes.Length == 0) return [];
        var times = new long[Meta.StageTimes.Length];
        Meta.StageTimes.CopyToCPU(times);
        return times;
    }

    /// <summary>
    /// Everything of this plan that the attention kernels take as launch arguments: the metadata as they receive it (each
    /// view's device address and length, <see cref="AttentionMeta.MaxBlocksPerSeq"/> and the other ints), the work-item
    /// counts that size their grids, and the large-batch layout that picks the decode. Two plans with equal signatures
    /// are launched with identical arguments; only the data in their buffers differs. Between decode steps of the same
    /// sequences it changes when a sequence's partitions or its block tables' power-of-two stride change, or the pooled
    /// buffers grow.
    /// </summary>
    internal byte[] LaunchSignature()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        int metaBytes = Accelerators.KernelParameters.Of(typeof(AttentionMeta)).Size;
        var signature = new byte[metaBytes + 6 * sizeof(int)];
        Accelerators.KernelParameters.Write(Meta, signature, 0);
        var counts = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(signature.AsSpan(metaBytes));
        (counts[0], counts[1], counts[2]) = (NumPrefillItems, NumDecodes, NumDecodeItems);
        (counts[3], counts[4], counts[5]) = DecodeLayout is { } l ? (l.PartitionSize, l.Warps, l.HeadGroups) : (0, 0, 0);
        return signature;
    }

    /// <summary>Throws unless this plan was made by <paramref name="owner"/> and is still alive.</summary>
    internal static AttentionPlan Check(IAttentionPlan plan, object owner)
    {
        if (plan is not AttentionPlan p || !ReferenceEquals(p.Owner, owner))
            throw new ArgumentException("the attention plan was made by another kernel set; call Plan on the kernels that run it.", nameof(plan));
        ObjectDisposedException.ThrowIf(p.IsDisposed, p);
        return p;
    }

    public void Dispose()
    {
        if (IsDisposed) return;
        IsDisposed = true;
        _buffers.Dispose();
    }
}
