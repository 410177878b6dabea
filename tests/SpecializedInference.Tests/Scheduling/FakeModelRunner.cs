using SpecializedInference.Runtime;

namespace SpecializedInference.Tests.Scheduling;

/// <summary>
/// A model stand-in that behaves like a paged-KV model without any arithmetic. Its "KV cache" stores, per
/// block slot, the token id and position that were written there; each step it performs the block copies,
/// writes every chunk's new tokens into the slots its block table names, then reads each sequence's whole
/// history back THROUGH THE BLOCK TABLE and returns logits that are a hash of that history. A scheduling
/// mistake (wrong block table, a shared block overwritten, a copy missed, a recompute that skips a token,
/// wrong positions) changes the history it reads, so it changes the tokens, or trips a check here.
/// </summary>
internal sealed class FakeModelRunner : IModelRunner
{
    private const long Unwritten = -1;
    private readonly long[] _slots; // [block, slot] -> (position << 32) | token, or Unwritten
    private readonly object _sync = new();

    public FakeModelRunner(int numBlocks, int blockSize, int vocabSize = 32, int maxSeqLen = 4096)
    {
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        VocabSize = vocabSize;
        MaxSeqLen = maxSeqLen;
        _slots = new long[numBlocks * blockSize];
        Array.Fill(_slots, Unwritten);
    }

    public int BlockSize { get; }

    public int NumBlocks { get; }

    public int VocabSize { get; }

    public int MaxSeqLen { get; }

    /// <summary>Called first in every Execute (to inspect the batch, or to slow steps down).</summary>
    public Action<StepBatch>? BeforeExecute { get; set; }

    /// <summary>Every batch executed, in order.</summary>
    public List<StepBatch> Batches { get; } = new();

    public bool Disposed { get; private set; }

    public int ExecutingThreadId { get; private set; } = -1;

    /// <summary>Whether <see cref="Run"/> returns the argmax of a <see cref="SequenceChunk.GreedyToken"/> chunk instead of
    /// its logits, as a GPU runner does.</summary>
    public bool PicksGreedyTokens { get; init; }

    /// <summary>Tokens <see cref="Run"/> picked.</summary>
    public int PickedTokens { get; private set; }

    public bool ReturnsAllLogits => true;

    public StepResult Run(StepBatch batch)
    {
        var logits = Execute(batch, out var allLogits);
        if (!PicksGreedyTokens) return new StepResult(logits) { AllLogits = allLogits };
        var tokens = new int[logits.Length];
        Array.Fill(tokens, StepResult.NoToken);
        for (int c = 0; c < logits.Length; c++)
            if (batch.Chunks[c].GreedyToken && logits[c] is { } row)
            {
                tokens[c] = SpecializedInference.Sampling.Sampler.ArgMax(row);
                logits[c] = null;
                PickedTokens++;
            }
        return new StepResult(logits, tokens) { AllLogits = allLogits };
    }

    public float[]?[] Execute(StepBatch batch) => Execute(batch, out _);

    /// <param name="allLogits">Per chunk, for an AllLogits chunk the logits after each of its tokens.</param>
    private float[]?[] Execute(StepBatch batch, out float[][]?[]? allLogits)
    {
        lock (_sync)
        {
            if (Disposed) throw new ObjectDisposedException(nameof(FakeModelRunner));
            if (ExecutingThreadId == -1) ExecutingThreadId = Environment.CurrentManagedThreadId;
            else if (ExecutingThreadId != Environment.CurrentManagedThreadId)
                throw new InvalidOperationException("The runner was called from two threads.");
            BeforeExecute?.Invoke(batch);
            Batches.Add(batch);

            // Copies happen before the step, so a copy reads what earlier steps wrote.
            var copied = new HashSet<int>();
            foreach (var copy in batch.BlockCopies)
            {
                if (copy.Source == copy.Destination || !copied.Add(copy.Destination))
                    throw new InvalidOperationException($"Bad block copy {copy}.");
                Array.Copy(_slots, copy.Source * BlockSize, _slots, copy.Destination * BlockSize, BlockSize);
            }

            // Write: every chunk's new tokens, each into a slot no other chunk of this step touches.
            var written = new Dictionary<int, long>(); // block -> sequence that writes it
            foreach (var chunk in batch.Chunks)
            {
                if (chunk.TokenIds.Length == 0) throw new InvalidOperationException($"Empty chunk for sequence {chunk.SequenceId}.");
                int needBlocks = (chunk.ContextLength + BlockSize - 1) / BlockSize;
                if (chunk.BlockTable.Length < needBlocks)
                    throw new InvalidOperationException($"Sequence {chunk.SequenceId}: block table has {chunk.BlockTable.Length} blocks for {chunk.ContextLength} positions.");
                for (int i = 0; i < chunk.TokenIds.Length; i++)
                {
                    int position = chunk.StartPosition + i;
                    int block = chunk.BlockTable[position / BlockSize];
                    if (written.TryGetValue(block, out long owner) && owner != chunk.SequenceId)
                        throw new InvalidOperationException($"Block {block} is written by sequences {owner} and {chunk.SequenceId} in one step.");
                    written[block] = chunk.SequenceId;
                    if ((uint)chunk.TokenIds[i] >= (uint)VocabSize)
                        throw new InvalidOperationException($"Token {chunk.TokenIds[i]} outside the vocabulary.");
                    _slots[block * BlockSize + position % BlockSize] = ((long)position << 32) | (uint)chunk.TokenIds[i];
                }
            }
            foreach (var chunk in batch.Chunks)
                foreach (int block in chunk.BlockTable.Take((chunk.StartPosition + BlockSize - 1) / BlockSize))
                    if (written.TryGetValue(block, out long writer) && writer != chunk.SequenceId)
                        throw new InvalidOperationException($"Block {block} holds earlier context of sequence {chunk.SequenceId} but sequence {writer} writes it.");

            // Read: each sequence attends to positions [0, ContextLength) through its block table.
            var logits = new float[]?[batch.Chunks.Count];
            allLogits = batch.Chunks.Any(ch => ch.AllLogits) ? new float[][]?[batch.Chunks.Count] : null;
            for (int c = 0; c < batch.Chunks.Count; c++)
            {
                var chunk = batch.Chunks[c];
                var history = new int[chunk.ContextLength];
                for (int position = 0; position < history.Length; position++)
                {
                    int block = chunk.BlockTable[position / BlockSize];
                    long slot = _slots[block * BlockSize + position % BlockSize];
                    if (slot == Unwritten || (int)(slot >> 32) != position)
                        throw new InvalidOperationException(
                            $"Sequence {chunk.SequenceId} reads position {position} from block {block} which holds {(slot == Unwritten ? "nothing" : $"position {slot >> 32}")}.");
                    history[position] = (int)(uint)slot;
                }
                logits[c] = chunk.WantLogits ? Logits(history, VocabSize) : null;
                if (chunk.AllLogits)
                    allLogits![c] = Enumerable.Range(chunk.StartPosition + 1, chunk.TokenIds.Length).Select(n => Logits(history.AsSpan(0, n), VocabSize)).ToArray();
            }
            return logits;
        }
    }

    public void Dispose()
    {
        lock (_sync) Disposed = true;
    }

    /// <summary>The fake model: logits are a hash of the whole token history (positions included implicitly by order).</summary>
    public static float[] Logits(ReadOnlySpan<int> history, int vocabSize)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (int token in history)
            h = (h ^ (uint)token) * 0x100000001B3UL;
        var logits = new float[vocabSize];
        for (int v = 0; v < vocabSize; v++)
            logits[v] = (Mix(h + (ulong)v * 0x9E3779B97F4A7C15UL) >> 40) / (float)(1 << 24);
        return logits;
    }

    /// <summary>
    /// What a request produces when run ALONE with greedy decoding, computed straight from the model
    /// function (no scheduler, no cache): the reference every scheduled run must reproduce.
    /// </summary>
    public static List<int> GreedyReference(IReadOnlyList<int> prompt, int maxNewTokens, int vocabSize, IReadOnlyCollection<int>? stopTokens = null)
    {
        var history = new List<int>(prompt);
        var output = new List<int>();
        while (output.Count < maxNewTokens)
        {
            var logits = Logits(history.ToArray(), vocabSize);
            int best = 0;
            for (int v = 1; v < vocabSize; v++)
                if (logits[v] > logits[best]) best = v;
            output.Add(best);
            history.Add(best);
            if (stopTokens is not null && stopTokens.Contains(best))
                break;
        }
        return output;
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
