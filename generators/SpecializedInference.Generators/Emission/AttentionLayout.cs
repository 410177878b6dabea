using System;
using SpecializedInference.Generators.Models;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Every size one generated attention kernel is written for: the config's shape and tiles, and the thread
/// mapping derived from them. <paramref name="expanded"/> is the <c>HeadMapping.Expanded</c> variant: one
/// query head per thread group.
/// </summary>
internal sealed class AttentionLayout
{
    public AttentionLayout(KernelSetSpec spec, bool expanded)
        : this(spec, expanded, spec.Engine.Tiles.DecodePartitionSize, spec.Engine.Tiles.DecodeWarps,
            expanded ? 1 : SharedMemoryBudget.HeadsPerGroup(spec.Model, spec.Engine.Tiles))
    {
    }

    /// <summary>The large-batch decode's layout (grouped, tensor cores): its own partition, warps and heads per group.</summary>
    public static AttentionLayout LargeBatchDecode(KernelSetSpec spec, DecodeTiles decode)
        => new(spec, expanded: false, decode.PartitionSize, decode.Warps,
            SharedMemoryBudget.LargeBatchHeadsPerGroup(spec.Model, decode, spec.Engine.KvBlockSize));

    private AttentionLayout(KernelSetSpec spec, bool expanded, int partition, int warps, int headsPerGroup)
    {
        var m = spec.Model;
        var t = spec.Engine.Tiles;
        HeadDim = m.HeadDim;
        D4 = HeadDim / 4;
        Units = HeadDim / 8;
        Heads = m.NumAttentionHeads;
        KvHeads = m.NumKeyValueHeads;
        GroupSize = m.GroupSize;
        BlockSize = spec.Engine.KvBlockSize;
        TileQ = t.PrefillTileQ;
        TileKv = t.PrefillTileKv;
        Partition = partition;
        Warps = warps;
        Threads = 32 * Warps;
        ThreadsPerKey = SharedMemoryBudget.DecodeThreadsPerKey(Warps, Partition);
        Expanded = expanded;
        HeadsPerGroup = headsPerGroup;
        HeadGroups = Heads / HeadsPerGroup;
        Positions = SharedMemoryBudget.PrefillPositions(TileQ, HeadsPerGroup);
        Rows = Positions * HeadsPerGroup;
        KeySlots = SharedMemoryBudget.DecodeKeySlots(HeadDim, Warps);
        RegistersPerUnit = spec.Engine.KvDtype == KvDtype.F16 ? 4 : 8;
        Scale = 1.0 / Math.Sqrt(HeadDim);
    }

    public int HeadDim { get; }
    /// <summary>Float4s per head row.</summary>
    public int D4 { get; }
    /// <summary>8-element units (one 16-byte f16 chunk) per head row.</summary>
    public int Units { get; }
    public int Heads { get; }
    public int KvHeads { get; }
    public int GroupSize { get; }
    public int BlockSize { get; }
    public int TileQ { get; }
    public int TileKv { get; }
    public int Partition { get; }
    /// <summary>Warps of a decode group (decode_warps).</summary>
    public int Warps { get; }
    /// <summary>Threads of a decode group.</summary>
    public int Threads { get; }
    /// <summary>Decode threads that score one key together, each over head_dim / ThreadsPerKey of its row (more
    /// than 1 when the group has more threads than the partition has keys).</summary>
    public int ThreadsPerKey { get; }
    public bool Expanded { get; }
    /// <summary>Query heads a thread group serves from each K/V load.</summary>
    public int HeadsPerGroup { get; }
    /// <summary>Thread groups per work item: Heads / HeadsPerGroup.</summary>
    public int HeadGroups { get; }
    /// <summary>Query positions per prefill group.</summary>
    public int Positions { get; }
    /// <summary>Prefill rows: Positions × HeadsPerGroup (row = position * HeadsPerGroup + head).</summary>
    public int Rows { get; }
    /// <summary>Decode P·V threads per 8-dim V column.</summary>
    public int KeySlots { get; }
    /// <summary>32-bit registers one loaded 8-element K/V unit takes in the config's KV dtype (one 16-byte chunk
    /// for f16, two for f32).</summary>
    public int RegistersPerUnit { get; }
    public double Scale { get; }

    /// <summary>"Expanded" for the expanded variant, else empty: the kernel method name suffix.</summary>
    public string Suffix => Expanded ? "Expanded" : "";

    /// <summary>What the head mapping specializes, for hint names: Mha, Mqa8, Gqa4.</summary>
    public static string HeadTag(ModelShape m) => m.GroupSize == 1 ? "Mha" : m.NumKeyValueHeads == 1 ? $"Mqa{m.GroupSize}" : $"Gqa{m.GroupSize}";

    public static int CeilDiv(int a, int b) => (a + b - 1) / b;
}
