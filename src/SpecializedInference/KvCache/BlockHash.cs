using System.Numerics;

namespace SpecializedInference.KvCache;

/// <summary>
/// Identity of a FULL block's contents in the prefix cache: a 128-bit hash of (parent block's hash, the
/// block's token ids). Chaining through the parent makes the hash name the whole prefix up to this block,
/// so two sequences share a block only when everything before it matches too. The pool also keeps the
/// parent hash and token ids of every cached block and compares them on lookup, so a hit needs an exact
/// token match, not just equal hashes.
/// </summary>
public readonly record struct BlockHash(UInt128 Value)
{
    // Distinct starting points for the two 64-bit lanes; the root (no parent) has its own value.
    private const ulong RootLo = 0x243F6A8885A308D3UL, RootHi = 0x13198A2E03707344UL;
    private const ulong MulLo = 0x9E3779B97F4A7C15UL, MulHi = 0xC2B2AE3D27D4EB4FUL;

    /// <summary>Hash of a block whose parent is <paramref name="parent"/> (null for the first block).</summary>
    public static BlockHash Compute(BlockHash? parent, ReadOnlySpan<int> tokens)
    {
        ulong lo = parent is { } p ? (ulong)p.Value : RootLo;
        ulong hi = parent is { } q ? (ulong)(q.Value >> 64) : RootHi;
        foreach (int token in tokens)
        {
            // Two independent multiply-rotate lanes (different constants and rotations).
            lo = BitOperations.RotateLeft((lo ^ (uint)token) * MulLo, 29);
            hi = BitOperations.RotateLeft((hi + (uint)token + 1) * MulHi, 37) ^ lo;
        }
        lo = Finalize(lo ^ (ulong)tokens.Length);
        hi = Finalize(hi + (ulong)tokens.Length * MulLo);
        return new BlockHash(new UInt128(hi, lo));
    }

    // The splitmix64 finalizer: every input bit affects every output bit.
    private static ulong Finalize(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public override string ToString() => Value.ToString("x32");
}
