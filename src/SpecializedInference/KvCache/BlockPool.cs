namespace SpecializedInference.KvCache;

/// <summary>Where a block is: every block is in exactly one of these states.</summary>
public enum BlockState
{
    /// <summary>Unreferenced and holds nothing worth keeping: on the free list.</summary>
    Free,

    /// <summary>Unreferenced but holds a cached full block: reusable by a prefix hit until evicted (LRU).</summary>
    Cached,

    /// <summary>Referenced by at least one sequence (or held for a pending copy).</summary>
    Used,
}

/// <summary>Block counts of a pool at one moment: <c>Used + Cached + Free == Total</c>.</summary>
public readonly record struct KvCacheUsage(int TotalBlocks, int UsedBlocks, int CachedBlocks, int FreeBlocks, int BlockSize)
{
    /// <summary>Blocks an allocation can get now (free ones first, then cached ones by eviction).</summary>
    public int AvailableBlocks => FreeBlocks + CachedBlocks;
}

/// <summary>
/// The physical KV blocks as ids 0..NumBlocks-1 with reference counts. Pure host bookkeeping: the model
/// runner owns the memory the ids point at.
/// <para>Allocation and release are O(1): a free list (stack) of blocks that hold nothing, and an intrusive
/// doubly linked LRU list of unreferenced blocks that still hold a cached full block. Allocation takes a
/// free block first and only then evicts the least recently released cached block, so cached prefixes
/// survive as long as the pool does not need their memory.</para>
/// </summary>
public sealed class BlockPool
{
    private const int None = -1;

    private readonly int[] _refCount;

    // Free list: a stack of ids in _freeStack[0.._freeCount).
    private readonly int[] _freeStack;
    private int _freeCount;

    // LRU of cached, unreferenced blocks: _lruHead is evicted first, released blocks join at _lruTail.
    private readonly int[] _prev;
    private readonly int[] _next;
    private int _lruHead = None, _lruTail = None, _lruCount;

    // Prefix cache: hash -> block, and per block what it was registered with (for exact verification).
    private readonly Dictionary<BlockHash, int> _cached = new();
    private readonly bool[] _hashed;
    private readonly BlockHash[] _hash;
    private readonly BlockHash?[] _parent;
    private readonly int[]?[] _tokens;

    public BlockPool(int numBlocks, int blockSize)
    {
        if (numBlocks <= 0)
            throw new ArgumentOutOfRangeException(nameof(numBlocks), numBlocks, "A KV block pool needs at least one block.");
        if (blockSize <= 0)
            throw new ArgumentOutOfRangeException(nameof(blockSize), blockSize, "The KV block size must be positive.");
        NumBlocks = numBlocks;
        BlockSize = blockSize;
        _refCount = new int[numBlocks];
        _freeStack = new int[numBlocks];
        _prev = new int[numBlocks];
        _next = new int[numBlocks];
        _hashed = new bool[numBlocks];
        _hash = new BlockHash[numBlocks];
        _parent = new BlockHash?[numBlocks];
        _tokens = new int[]?[numBlocks];
        // Pushed in reverse so that block 0 is handed out first (only to make traces easy to read).
        for (int b = numBlocks - 1; b >= 0; b--)
            _freeStack[_freeCount++] = b;
        Array.Fill(_prev, None);
        Array.Fill(_next, None);
    }

    public int NumBlocks { get; }

    public int BlockSize { get; }

    public int FreeBlocks => _freeCount;

    public int CachedBlocks => _lruCount;

    public int UsedBlocks => NumBlocks - _freeCount - _lruCount;

    /// <summary>Blocks an allocation can get now: free ones plus evictable cached ones.</summary>
    public int AvailableBlocks => _freeCount + _lruCount;

    /// <summary>Cached blocks evicted (their cache entry dropped) to satisfy an allocation.</summary>
    public long Evictions { get; private set; }

    public KvCacheUsage Usage => new(NumBlocks, UsedBlocks, CachedBlocks, FreeBlocks, BlockSize);

    public int RefCount(int block) => _refCount[CheckId(block)];

    /// <summary>Whether the block is registered in the prefix cache (holds a full block of known tokens).</summary>
    public bool IsHashed(int block) => _hashed[CheckId(block)];

    public BlockState GetState(int block)
    {
        CheckId(block);
        if (_refCount[block] > 0) return BlockState.Used;
        return _hashed[block] ? BlockState.Cached : BlockState.Free;
    }

    /// <summary>Takes a block with reference count 1: a free one, else evicts the least recently used cached one.</summary>
    public int Allocate()
    {
        int block;
        if (_freeCount > 0)
        {
            block = _freeStack[--_freeCount];
        }
        else if (_lruHead != None)
        {
            block = _lruHead;
            RemoveFromLru(block);
            Unregister(block);
            Evictions++;
        }
        else
        {
            throw new InvalidOperationException(
                $"The KV block pool is exhausted: all {NumBlocks} blocks are referenced. The scheduler must check AvailableBlocks first.");
        }

        _refCount[block] = 1;
        return block;
    }

    /// <summary>Adds a reference to a block that is in use or cached (a prefix-cache hit takes it off the LRU list).</summary>
    public void Retain(int block)
    {
        CheckId(block);
        if (_refCount[block] == 0)
        {
            if (!_hashed[block])
                throw new InvalidOperationException($"Block {block} is free: only used or cached blocks can be shared.");
            RemoveFromLru(block);
        }
        _refCount[block]++;
    }

    /// <summary>Drops a reference; at zero the block becomes cached (if registered) or free.</summary>
    public void Release(int block)
    {
        CheckId(block);
        if (_refCount[block] <= 0)
            throw new InvalidOperationException($"Block {block} was released more times than it was referenced.");
        if (--_refCount[block] > 0)
            return;
        if (_hashed[block])
            AppendToLru(block);
        else
            _freeStack[_freeCount++] = block;
    }

    /// <summary>
    /// Looks up the cached block holding <paramref name="tokens"/> after the prefix named by
    /// <paramref name="parent"/>. A hit needs the hash, the parent hash and every token to match.
    /// </summary>
    public bool TryGetCached(BlockHash hash, BlockHash? parent, ReadOnlySpan<int> tokens, out int block)
    {
        if (_cached.TryGetValue(hash, out block)
            && _parent[block] == parent
            && _tokens[block] is { } cachedTokens
            && tokens.SequenceEqual(cachedTokens))
            return true;
        block = None;
        return false;
    }

    /// <summary>
    /// Registers a referenced, fully written block in the prefix cache. Returns false (and leaves the block
    /// private) when another block already caches the same contents.
    /// </summary>
    public bool TryRegister(int block, BlockHash hash, BlockHash? parent, ReadOnlySpan<int> tokens)
    {
        CheckId(block);
        if (tokens.Length != BlockSize)
            throw new ArgumentException($"Only full blocks are cached: got {tokens.Length} tokens for a block of {BlockSize}.", nameof(tokens));
        if (_refCount[block] == 0)
            throw new InvalidOperationException($"Block {block} is not referenced: only a sequence's own block can be registered.");
        if (_hashed[block])
            throw new InvalidOperationException($"Block {block} is already registered in the prefix cache.");
        if (_cached.ContainsKey(hash))
            return false;
        _cached.Add(hash, block);
        _hashed[block] = true;
        _hash[block] = hash;
        _parent[block] = parent;
        _tokens[block] = tokens.ToArray();
        return true;
    }

    /// <summary>Checks the pool's internal structure; throws naming the first inconsistency.</summary>
    internal void AssertConsistent()
    {
        var seen = new BlockState?[NumBlocks];
        for (int i = 0; i < _freeCount; i++)
        {
            int b = _freeStack[i];
            if (seen[b] is not null) throw new InvalidOperationException($"Block {b} is on the free list twice.");
            if (_refCount[b] != 0 || _hashed[b]) throw new InvalidOperationException($"Free-list block {b} has ref {_refCount[b]}, hashed {_hashed[b]}.");
            seen[b] = BlockState.Free;
        }
        int count = 0;
        for (int b = _lruHead, prev = None; b != None; prev = b, b = _next[b])
        {
            if (_prev[b] != prev) throw new InvalidOperationException($"LRU list link broken at block {b}.");
            if (seen[b] is not null) throw new InvalidOperationException($"Block {b} is on the LRU list and elsewhere.");
            if (_refCount[b] != 0 || !_hashed[b]) throw new InvalidOperationException($"LRU block {b} has ref {_refCount[b]}, hashed {_hashed[b]}.");
            seen[b] = BlockState.Cached;
            if (++count > NumBlocks) throw new InvalidOperationException("LRU list has a cycle.");
        }
        if (count != _lruCount) throw new InvalidOperationException($"LRU count {_lruCount} but {count} linked.");
        for (int b = 0; b < NumBlocks; b++)
        {
            if (_refCount[b] < 0) throw new InvalidOperationException($"Block {b} has negative reference count {_refCount[b]}.");
            if (_refCount[b] > 0 && seen[b] is not null) throw new InvalidOperationException($"Referenced block {b} is also {seen[b]}.");
            if (_refCount[b] == 0 && seen[b] is null) throw new InvalidOperationException($"Unreferenced block {b} is on neither list (leaked).");
            if (_hashed[b] && (!_cached.TryGetValue(_hash[b], out int owner) || owner != b))
                throw new InvalidOperationException($"Block {b} is marked hashed but the cache map does not point at it.");
        }
        foreach (var (hash, b) in _cached)
            if (!_hashed[b] || _hash[b] != hash) throw new InvalidOperationException($"Cache entry {hash} points at block {b} which does not hold it.");
    }

    private void Unregister(int block)
    {
        _cached.Remove(_hash[block]);
        _hashed[block] = false;
        _hash[block] = default;
        _parent[block] = null;
        _tokens[block] = null;
    }

    private void AppendToLru(int block)
    {
        _prev[block] = _lruTail;
        _next[block] = None;
        if (_lruTail != None) _next[_lruTail] = block; else _lruHead = block;
        _lruTail = block;
        _lruCount++;
    }

    private void RemoveFromLru(int block)
    {
        int p = _prev[block], n = _next[block];
        if (p != None) _next[p] = n; else _lruHead = n;
        if (n != None) _prev[n] = p; else _lruTail = p;
        _prev[block] = _next[block] = None;
        _lruCount--;
    }

    private int CheckId(int block)
    {
        if ((uint)block >= (uint)NumBlocks)
            throw new ArgumentOutOfRangeException(nameof(block), block, $"Block ids are 0..{NumBlocks - 1}.");
        return block;
    }
}
