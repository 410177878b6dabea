using SpecializedInference.Runtime;

namespace SpecializedInference.KvCache;

/// <summary>One sequence's blocks: its block table and the content hashes of its full, computed blocks.</summary>
public sealed class SequenceBlocks
{
    internal readonly List<int> Blocks = new();

    // Hash chain of the sequence's full computed blocks, Hashes[i] naming tokens [0, (i+1)*blockSize).
    internal readonly List<BlockHash> Hashes = new();

    /// <summary>Physical block ids in logical order.</summary>
    public IReadOnlyList<int> BlockTable => Blocks;

    public int Count => Blocks.Count;
}

/// <summary>
/// The longest cached prefix of a sequence's tokens. <see cref="CopyLastBlock"/> is set when the match
/// covers every token: the last token must still be run to get its logits, and it lives in the last
/// (shared) block, so that block is copied (copy-on-write) instead of written.
/// </summary>
public sealed record PrefixMatch(IReadOnlyList<int> Blocks, IReadOnlyList<BlockHash> Hashes, int ComputedTokens, bool CopyLastBlock)
{
    public static readonly PrefixMatch Empty = new(Array.Empty<int>(), Array.Empty<BlockHash>(), 0, false);
}

/// <summary>
/// Per-sequence block tables over a <see cref="BlockPool"/>, with prefix caching. Host bookkeeping only:
/// it hands out block ids and <see cref="BlockCopy"/> orders; the model runner does the memory work.
/// <para>Rules: a block is registered in the prefix cache only once full AND computed (after the step that
/// wrote its last slot); a registered or shared block is never written again; a sequence that must run a
/// token inside a shared block gets a private copy first.</para>
/// </summary>
public sealed class KvCacheManager
{
    private readonly BlockPool _pool;

    public KvCacheManager(BlockPool pool, bool enablePrefixCaching)
    {
        _pool = pool ?? throw new ArgumentNullException(nameof(pool));
        PrefixCachingEnabled = enablePrefixCaching;
    }

    public BlockPool Pool => _pool;

    public int BlockSize => _pool.BlockSize;

    public bool PrefixCachingEnabled { get; }

    /// <summary>Tokens looked up in the prefix cache at admission (every admitted sequence's full token count).</summary>
    public long PrefixQueryTokens { get; private set; }

    /// <summary>Tokens whose KV came from the prefix cache instead of being computed.</summary>
    public long PrefixHitTokens { get; private set; }

    public KvCacheUsage Usage => _pool.Usage;

    public int BlocksFor(int tokens) => (tokens + BlockSize - 1) / BlockSize;

    /// <summary>Finds the cached blocks of the longest full-block prefix of <paramref name="tokens"/>. No side effects.</summary>
    public PrefixMatch MatchPrefix(IReadOnlyList<int> tokens)
    {
        if (!PrefixCachingEnabled || tokens.Count < BlockSize)
            return PrefixMatch.Empty;
        var blocks = new List<int>();
        var hashes = new List<BlockHash>();
        var buffer = new int[BlockSize];
        BlockHash? parent = null;
        int fullBlocks = tokens.Count / BlockSize;
        for (int i = 0; i < fullBlocks; i++)
        {
            for (int j = 0; j < BlockSize; j++)
                buffer[j] = tokens[i * BlockSize + j];
            var hash = BlockHash.Compute(parent, buffer);
            if (!_pool.TryGetCached(hash, parent, buffer, out int block))
                break;
            blocks.Add(block);
            hashes.Add(hash);
            parent = hash;
        }
        if (blocks.Count == 0)
            return PrefixMatch.Empty;
        int computed = blocks.Count * BlockSize;
        bool copyLast = computed == tokens.Count;
        return new PrefixMatch(blocks, hashes, copyLast ? computed - 1 : computed, copyLast);
    }

    /// <summary>
    /// Gives a sequence that holds no blocks its cached prefix (shared, reference counted) and fresh
    /// blocks up to <paramref name="tokensAfterStep"/> tokens. All or nothing: returns false, changing
    /// nothing, when the pool cannot supply the blocks. <paramref name="releaseAfterStep"/> receives the
    /// source of a copy-on-write: it stays referenced until the runner has copied it.
    /// </summary>
    public bool TryAllocateWithPrefix(SequenceBlocks sequence, PrefixMatch match, int tokensAfterStep,
        List<BlockCopy> copies, List<int> releaseAfterStep)
    {
        if (sequence.Blocks.Count != 0)
            throw new InvalidOperationException("A sequence takes a cached prefix only when it holds no blocks.");
        int required = BlocksFor(tokensAfterStep);
        int shared = match.CopyLastBlock ? match.Blocks.Count - 1 : match.Blocks.Count;
        if (required < match.Blocks.Count)
            throw new ArgumentException($"The step must reach past the cached prefix ({match.ComputedTokens} tokens); got {tokensAfterStep}.");

        // Referencing an unreferenced cached block takes it off the evictable list, like an allocation.
        int revived = 0;
        foreach (int b in match.Blocks)
            if (_pool.RefCount(b) == 0) revived++;
        if (required - shared + revived > _pool.AvailableBlocks)
            return false;

        for (int i = 0; i < shared; i++)
        {
            _pool.Retain(match.Blocks[i]);
            sequence.Blocks.Add(match.Blocks[i]);
        }
        if (match.CopyLastBlock)
        {
            int source = match.Blocks[^1];
            _pool.Retain(source);
            releaseAfterStep.Add(source);
            int copy = _pool.Allocate();
            copies.Add(new BlockCopy(source, copy));
            sequence.Blocks.Add(copy);
        }
        while (sequence.Blocks.Count < required)
            sequence.Blocks.Add(_pool.Allocate());
        // The copy holds the same contents, so the hash chain covers it too (it is simply not registered).
        sequence.Hashes.AddRange(match.Hashes);

        PrefixHitTokens += match.ComputedTokens;
        return true;
    }

    /// <summary>Records a prefix-cache query of <paramref name="tokens"/> tokens (one per admission).</summary>
    public void RecordQuery(int tokens) => PrefixQueryTokens += tokens;

    /// <summary>Adds blocks so the sequence covers <paramref name="tokensAfterStep"/> tokens; false (no change) if the pool is short.</summary>
    public bool TryAllocate(SequenceBlocks sequence, int tokensAfterStep)
    {
        int missing = BlocksFor(tokensAfterStep) - sequence.Blocks.Count;
        if (missing <= 0)
            return true;
        if (missing > _pool.AvailableBlocks)
            return false;
        for (int i = 0; i < missing; i++)
            sequence.Blocks.Add(_pool.Allocate());
        return true;
    }

    /// <summary>Blocks the sequence still needs from the pool to cover <paramref name="tokensAfterStep"/> tokens.</summary>
    public int MissingBlocks(SequenceBlocks sequence, int tokensAfterStep) =>
        Math.Max(0, BlocksFor(tokensAfterStep) - sequence.Blocks.Count);

    /// <summary>
    /// Registers the sequence's blocks that became full with computed tokens (call after the step ran).
    /// A block whose contents another block already caches stays private.
    /// </summary>
    public void CommitComputed(SequenceBlocks sequence, IReadOnlyList<int> tokens, int computedTokens)
    {
        var buffer = new int[BlockSize];
        while ((sequence.Hashes.Count + 1) * BlockSize <= computedTokens)
        {
            int i = sequence.Hashes.Count;
            for (int j = 0; j < BlockSize; j++)
                buffer[j] = tokens[i * BlockSize + j];
            BlockHash? parent = i == 0 ? null : sequence.Hashes[i - 1];
            var hash = BlockHash.Compute(parent, buffer);
            sequence.Hashes.Add(hash);
            if (PrefixCachingEnabled && !_pool.IsHashed(sequence.Blocks[i]))
                _pool.TryRegister(sequence.Blocks[i], hash, parent, buffer);
        }
    }

    /// <summary>
    /// Releases every block of the sequence, last block first: the pool's LRU then evicts a sequence's tail
    /// before its prefix, which is the part other requests are likeliest to share.
    /// </summary>
    public void Free(SequenceBlocks sequence)
    {
        for (int i = sequence.Blocks.Count - 1; i >= 0; i--)
            _pool.Release(sequence.Blocks[i]);
        sequence.Blocks.Clear();
        sequence.Hashes.Clear();
    }
}
