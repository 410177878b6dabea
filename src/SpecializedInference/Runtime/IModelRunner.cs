namespace SpecializedInference.Runtime;

/// <summary>
/// One sequence's share of a step: its new tokens, where they go, and the blocks that hold its KV cache.
/// The scheduler builds these from block ids alone; only the model runner touches device memory.
/// </summary>
/// <param name="SequenceId">The scheduler's id of the sequence (stable across steps).</param>
/// <param name="TokenIds">The tokens to run this step (a prefill chunk, or one token for a decode).</param>
/// <param name="StartPosition">Position of <c>TokenIds[0]</c>; the sequence then attends to
/// <c>StartPosition + TokenIds.Length</c> keys, the earlier ones already in the cache.</param>
/// <param name="BlockTable">Physical KV block ids in logical order, covering every position up to the last new token.</param>
/// <param name="WantLogits">Whether the caller needs the logits of the chunk's last token (false for a
/// prefill chunk that does not reach the end of the prompt).</param>
public sealed record SequenceChunk(long SequenceId, int[] TokenIds, int StartPosition, int[] BlockTable, bool WantLogits)
{
    public int ContextLength => StartPosition + TokenIds.Length;
}

/// <summary>A block copy the runner performs before the step (copy-on-write of a shared partial block).</summary>
public readonly record struct BlockCopy(int Source, int Destination);

/// <summary>Everything the model runner executes in one engine step.</summary>
public sealed record StepBatch(IReadOnlyList<SequenceChunk> Chunks, IReadOnlyList<BlockCopy> BlockCopies)
{
    public static StepBatch Of(params SequenceChunk[] chunks) => new(chunks, Array.Empty<BlockCopy>());
}

/// <summary>
/// Runs the model over a step's batch. Implementations own the weights, the paged KV cache
/// (<see cref="NumBlocks"/> blocks of <see cref="BlockSize"/> slots per layer) and the kernels.
/// </summary>
public interface IModelRunner : IDisposable
{
    int BlockSize { get; }

    int NumBlocks { get; }

    int VocabSize { get; }

    int MaxSeqLen { get; }

    /// <summary>Runs one forward step and returns, per chunk in order, the logits [vocab_size] of its last
    /// token, or null where <see cref="SequenceChunk.WantLogits"/> is false.</summary>
    float[]?[] Execute(StepBatch batch);
}
