using SpecializedInference.Runtime;

namespace SpecializedInference.Cli;

/// <summary>
/// A model runner without a model, for exercising and measuring everything around one (HTTP server,
/// scheduler, KV-cache bookkeeping, streaming) with <c>si serve --synthetic</c> and <c>si loadtest</c>.
/// It keeps the token id of every cached position in its "KV cache" (block table and all, like a real
/// paged cache) and returns logits that are a hash of the sequence's history read back through the block
/// table, so outputs are deterministic per prompt. Figures measured with it are the serving overhead, not
/// model speed; it never pretends to be a model.
/// </summary>
internal sealed class SyntheticModelRunner : IModelRunner
{
    private readonly int[] _slots; // [block, slot] -> token id

    public SyntheticModelRunner(int vocabSize, int maxSeqLen, int numBlocks, int blockSize = 16, TimeSpan stepDelay = default)
    {
        if (vocabSize < 2 || maxSeqLen < 2 || numBlocks < 1 || blockSize < 1)
            throw new ArgumentOutOfRangeException(nameof(vocabSize), "vocab size and max_seq_len must be at least 2, blocks and block size at least 1.");
        VocabSize = vocabSize;
        MaxSeqLen = maxSeqLen;
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        StepDelay = stepDelay;
        _slots = new int[checked(numBlocks * blockSize)];
    }

    public int BlockSize { get; }

    public int NumBlocks { get; }

    public int VocabSize { get; }

    public int MaxSeqLen { get; }

    /// <summary>Time added to every step, to stand in for model compute.</summary>
    public TimeSpan StepDelay { get; }

    public float[]?[] Execute(StepBatch batch)
    {
        if (StepDelay > TimeSpan.Zero)
            Thread.Sleep(StepDelay);
        foreach (var copy in batch.BlockCopies)
            Array.Copy(_slots, copy.Source * BlockSize, _slots, copy.Destination * BlockSize, BlockSize);
        foreach (var chunk in batch.Chunks)
            for (int i = 0; i < chunk.TokenIds.Length; i++)
            {
                int position = chunk.StartPosition + i;
                _slots[chunk.BlockTable[position / BlockSize] * BlockSize + position % BlockSize] = chunk.TokenIds[i];
            }

        var logits = new float[]?[batch.Chunks.Count];
        for (int c = 0; c < logits.Length; c++)
        {
            var chunk = batch.Chunks[c];
            if (!chunk.WantLogits)
                continue;
            ulong h = 0xCBF29CE484222325UL;
            for (int position = 0; position < chunk.ContextLength; position++)
                h = (h ^ (uint)_slots[chunk.BlockTable[position / BlockSize] * BlockSize + position % BlockSize]) * 0x100000001B3UL;
            var row = new float[VocabSize];
            for (int v = 0; v < row.Length; v++)
                row[v] = (Mix(h + (ulong)v * 0x9E3779B97F4A7C15UL) >> 40) / (float)(1 << 24);
            logits[c] = row;
        }
        return logits;
    }

    public void Dispose()
    {
    }

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
