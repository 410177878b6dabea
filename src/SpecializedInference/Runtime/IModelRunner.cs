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

    /// <summary>With <see cref="WantLogits"/>: the caller only takes the argmax of the logits (a greedy request), so
    /// <see cref="IModelRunner.Run"/> may pick the token on the device and return it instead of the row.</summary>
    public bool GreedyToken { get; init; }

    /// <summary>The caller needs the logits of every token of the chunk (a prompt's log-probabilities), in
    /// <see cref="StepResult.AllLogits"/>; only for a runner with <see cref="IModelRunner.ReturnsAllLogits"/>.</summary>
    public bool AllLogits { get; init; }
}

/// <summary>What <see cref="IModelRunner.Run"/> returns, per chunk in batch order.</summary>
/// <param name="Logits">The logits row [vocab_size] of the chunk's last token where the runner returned it; null where
/// the chunk wants no logits, or where <paramref name="Tokens"/> holds its token.</param>
/// <param name="Tokens">Null, or per chunk the greedy token the runner picked (a <see cref="SequenceChunk.GreedyToken"/>
/// chunk), else <see cref="NoToken"/>.</param>
public sealed record StepResult(float[]?[] Logits, int[]? Tokens = null)
{
    public const int NoToken = -1;

    /// <summary>The token the runner picked for chunk <paramref name="chunk"/>, if it picked one.</summary>
    public int? TokenAt(int chunk) => Tokens is { } tokens && tokens[chunk] != NoToken ? tokens[chunk] : null;

    /// <summary>Per chunk in batch order, for a <see cref="SequenceChunk.AllLogits"/> chunk the logits rows of each of its
    /// tokens [chunk_tokens][vocab_size] (valid until the runner's next call, as <see cref="Logits"/>); else null.</summary>
    public float[][]?[]? AllLogits { get; init; }
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

    /// <summary>Runs one step for the engine: as <see cref="Execute"/>, except that a chunk marked
    /// <see cref="SequenceChunk.GreedyToken"/> may come back as its token rather than its logits, and that the logits
    /// rows may be the runner's own, valid until the next call (copy a row to keep it). The default leaves every
    /// argmax to the caller.</summary>
    StepResult Run(StepBatch batch) => new(Execute(batch));

    /// <summary>Whether <see cref="Run"/> honours <see cref="SequenceChunk.AllLogits"/> (needed for prompt log-probabilities).</summary>
    bool ReturnsAllLogits => false;
}
