using SpecializedInference.KvCache;

namespace SpecializedInference.Scheduling;

public enum SequenceStatus
{
    /// <summary>Queued: new, or preempted and waiting to be recomputed.</summary>
    Waiting,

    /// <summary>Admitted: holds KV blocks and is scheduled every step (prefill chunks, then decodes).</summary>
    Running,

    /// <summary>Done (any reason); holds no blocks.</summary>
    Finished,
}

/// <summary>
/// A request as the scheduler sees it: token ids (prompt then generated), how many of them already have KV
/// in the cache, and the blocks that hold it.
/// </summary>
public sealed class Sequence
{
    private readonly List<int> _tokens;

    public Sequence(long id, IReadOnlyList<int> promptTokenIds, int maxNewTokens, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(promptTokenIds);
        Id = id;
        Name = name;
        _tokens = new List<int>(promptTokenIds);
        PromptLength = _tokens.Count;
        MaxNewTokens = maxNewTokens;
    }

    public long Id { get; }

    /// <summary>The caller's label, used in messages.</summary>
    public string? Name { get; }

    /// <summary>How messages name this request: its label and id.</summary>
    public string DisplayName => Name is null ? $"request {Id}" : $"request '{Name}' (id {Id})";

    /// <summary>Prompt then generated tokens.</summary>
    public IReadOnlyList<int> Tokens => _tokens;

    public int PromptLength { get; }

    public int OutputLength => _tokens.Count - PromptLength;

    public int MaxNewTokens { get; }

    /// <summary>Whether its next token is the argmax of the logits (greedy decoding): the model runner may then pick it
    /// on the device rather than return the logits row (<see cref="Runtime.SequenceChunk.GreedyToken"/>).</summary>
    public bool TakesArgMax { get; init; }

    /// <summary>Whether the caller needs the logits after every prompt token (prompt log-probabilities). Until its first
    /// token is generated the prefix cache is not used for it (a cached prefix is not computed, so it has no logits), and
    /// its chunks ask for every token's logits (<see cref="Runtime.SequenceChunk.AllLogits"/>).</summary>
    public bool WantsPromptLogits { get; init; }

    /// <summary>Whether its prompt's logits are still to be computed.</summary>
    internal bool NeedsPromptLogits => WantsPromptLogits && OutputLength == 0;

    /// <summary>Tokens whose KV is in the cache (the next chunk starts here). Reset to 0 by preemption.</summary>
    public int NumComputedTokens { get; internal set; }

    /// <summary>Tokens still to run before the next token can be sampled.</summary>
    public int RemainingTokens => _tokens.Count - NumComputedTokens;

    public SequenceStatus Status { get; internal set; } = SequenceStatus.Waiting;

    public SequenceBlocks Blocks { get; } = new();

    /// <summary>Times this sequence lost its blocks to make room and was re-queued for recomputation.</summary>
    public int NumPreemptions { get; internal set; }

    /// <summary>Prompt tokens served from the prefix cache at first admission.</summary>
    public int NumCachedPromptTokens { get; internal set; }

    /// <summary>Whether the sequence has been admitted at least once (its first admission fixes <see cref="NumCachedPromptTokens"/>).</summary>
    public bool EverAdmitted { get; internal set; }

    /// <summary>Admission order among running sequences (the newest is preempted first).</summary>
    internal long AdmissionOrder { get; set; }

    /// <summary>Arrival order (FCFS for the waiting queue).</summary>
    internal long ArrivalOrder { get; set; }

    internal void Append(int token) => _tokens.Add(token);

    public override string ToString() => $"{DisplayName} [{Status}, {NumComputedTokens}/{_tokens.Count} computed, {Blocks.Count} blocks]";
}
