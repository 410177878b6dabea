using ILGPU;

namespace SpecializedInference.Kernels;

/// <summary>Which attention algorithm a kernel set runs (the <c>use_flash_attention</c> toggle).</summary>
public enum AttentionAlgorithm
{
    /// <summary>Tiled, online softmax; no score matrix in global memory.</summary>
    Flash,

    /// <summary>Scores materialised in global memory, softmax, then P·V: the baseline for the toggle.</summary>
    Materialized,
}

/// <summary>How query heads find their K/V head (the <c>use_gqa</c> toggle).</summary>
public enum HeadMapping
{
    /// <summary>One K/V load serves every query head of its group (GQA/MQA).</summary>
    Grouped,

    /// <summary>Every query head reads its K/V head on its own, as if K/V were repeated per head (MHA expansion).</summary>
    Expanded,
}

/// <summary>Which units compute the decode's two products, S = Q·Kᵀ and O = P·V.</summary>
public enum DecodeCores
{
    /// <summary>FMAs on CUDA cores (every kernel set, every KV dtype).</summary>
    Cuda,

    /// <summary><c>mma.m16n8k16</c> on tensor cores where the generated set has a <c>DecodeMma</c> kernel (grouped
    /// heads, 2 to 8 per K/V head, head_dim a multiple of 64, f16 cache); elsewhere the CUDA-core kernel.</summary>
    Tensor,
}

/// <summary>When a kernel set with a large-batch decode (<see cref="AttentionKernelsBase.LargeBatchDecode"/>) runs it.</summary>
public enum LargeBatchDecodePolicy
{
    /// <summary>For steps whose decode groups at the large-batch layout would take at least
    /// <see cref="AttentionKernelsBase.LargeBatchMinThreadShare"/> of the device's threads: then fewer, longer partitions
    /// win; below that the set's own decode spreads a few sequences over more of the GPU.</summary>
    Auto,

    /// <summary>Never: always the set's own decode.</summary>
    Never,

    /// <summary>Every step with a decode (tests and benchmarks).</summary>
    Always,
}

/// <summary>How a generated set launches its flash decode.</summary>
public enum DecodeLaunch
{
    /// <summary>ILGPU's launch: the decode starts once the kernel before it has finished.</summary>
    StreamOrdered,

    /// <summary>
    /// Programmatic dependent launch (<see cref="Accelerators.ProgrammaticLauncher"/>, CUDA sm_90; elsewhere the same
    /// kernel through ILGPU, or the stream-ordered one with <see cref="AttentionKernelsBase.ProgrammaticNotice"/>). The
    /// decode lets the next kernel start at once, reads its partitions' blocks and loads their K/V rows while the kernel
    /// before it still runs, and waits for it only before it loads the queries, which that kernel wrote. The partition
    /// holding the query's own key waits before its K/V loads: the qkv projection writes that key's row.
    /// </summary>
    Programmatic,
}

/// <summary>A decode kernel's layout: keys per partition, warps per group, and thread groups per partition (each a set
/// of query heads).</summary>
public sealed record DecodeLayout(int PartitionSize, int Warps, int HeadGroups);

/// <summary>Options for compiling a set of attention kernels.</summary>
/// <param name="MaxRegisters">Registers per thread of a generated set's flash kernels on CUDA; null: the set's
/// defaults (<see cref="RegisterLimits.Generated"/>). The generic kernels, the baseline, always load uncapped.</param>
/// <param name="DecodeCores">Where the flash decode's products run (<see cref="AttentionKernelsBase.DecodeOnTensorCores"/>
/// says what a kernel set chose).</param>
/// <param name="LargeBatchDecode">When a set's large-batch decode runs (tensor cores only).</param>
/// <param name="TimeDecodeStages">Load the tensor-core decodes with <see cref="SmStageClock"/>: every decode group's thread 0
/// records the clock at each <see cref="DecodeStage"/> into its plan (<see cref="AttentionPlan.ReadStageTimes"/>;
/// <c>si attention-bench --stage-times</c>). For measuring the chain of a group, not for serving.</param>
/// <param name="DecodeLaunch">How a generated set launches its flash decode (the generic kernels: stream-ordered).</param>
public sealed record AttentionOptions(
    KvDtype KvDtype = KvDtype.F16,
    AttentionAlgorithm Algorithm = AttentionAlgorithm.Flash,
    HeadMapping HeadMapping = HeadMapping.Grouped,
    RegisterLimits? MaxRegisters = null,
    DecodeCores DecodeCores = DecodeCores.Cuda,
    LargeBatchDecodePolicy LargeBatchDecode = LargeBatchDecodePolicy.Auto,
    bool TimeDecodeStages = false,
    DecodeLaunch DecodeLaunch = DecodeLaunch.StreamOrdered);

/// <summary>
/// Caps on registers per thread for the generated decode and prefill kernels on CUDA, 0 for the compiler's choice
/// (which is up to 255: see <see cref="Accelerators.RegisterLimitedKernels"/>). A lower cap fits more thread groups
/// per SM at the risk of spilling to local memory.
/// </summary>
public sealed record RegisterLimits(int Decode = 0, int Prefill = 0)
{
    /// <summary>The compiler's choice for both.</summary>
    public static RegisterLimits None { get; } = new();

    /// <summary>
    /// What generated sets use unless told otherwise: no cap. On the H200 (2026-11-26, run 5) decode at 168 and prefill
    /// at 128 registers fit three and four groups per SM instead of two, but spilled: decode 5–50% slower, prefill
    /// 1.5–2.6× slower (ncu: the capped prefill's DRAM traffic was mostly local memory). A cap that pays needs kernels
    /// that hold fewer values, not a tighter limit on these.
    /// </summary>
    public static RegisterLimits Generated { get; } = None;

    /// <summary>Parses <c>decode=168,prefill=128</c> (either part may be left out; 0 means uncapped).</summary>
    public static RegisterLimits Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var limits = None;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = part.Split('=', 2, StringSplitOptions.TrimEntries);
            if (kv.Length != 2 || !int.TryParse(kv[1], out int value) || (value != 0 && value is < 16 or > 255))
                throw new FormatException($"register limit '{part}': expected decode=N or prefill=N with N 0 (uncapped) or 16..255");
            limits = kv[0] switch
            {
                "decode" => limits with { Decode = value },
                "prefill" => limits with { Prefill = value },
                _ => throw new FormatException($"register limit '{part}': unknown kernel '{kv[0]}' (expected decode or prefill)"),
            };
        }
        return limits;
    }

    public override string ToString() => $"decode={Decode},prefill={Prefill}";
}

/// <summary>
/// One layer's paged KV cache. Keys and values are each laid out
/// <c>[num_blocks, num_kv_heads, block_size, head_dim]</c> in the cache dtype (f32 or f16), viewed as bytes
/// so one type serves both dtypes.
/// </summary>
public readonly record struct PagedKvLayer(ArrayView<byte> Keys, ArrayView<byte> Values);

/// <summary>
/// The host's description of one step's attention batch. Tokens are ordered by sequence: sequence 0's
/// query tokens, then sequence 1's, and so on.
/// </summary>
/// <param name="QueryLens">[num_seqs] new query tokens of each sequence this step (1 for a decode).</param>
/// <param name="ContextLens">[num_seqs] keys each sequence attends to, the new tokens included
/// (their K/V are written to the cache before attention runs).</param>
/// <param name="BlockTables">[num_seqs][blocks] physical KV block ids in logical order.</param>
/// <param name="SlotMapping">[num_tokens] cache slot (block * block_size + offset) of each new token;
/// -1 skips the token.</param>
public sealed record AttentionBatch(int[] QueryLens, int[] ContextLens, int[][] BlockTables, int[] SlotMapping)
{
    public int NumSeqs => QueryLens.Length;

    public int NumTokens => SlotMapping.Length;
}

/// <summary>A step's batch metadata uploaded to the device once and reused by every layer.</summary>
public interface IAttentionPlan : IDisposable
{
    AttentionBatch Batch { get; }
}

/// <summary>
/// The attention and KV-cache kernels for one model shape: either generated and specialized for a config,
/// or the generic kernels that take every size as an argument.
/// </summary>
public interface IAttentionKernels : IDisposable
{
    /// <summary>The kernel set's name (the config it was generated from, or "generic").</summary>
    string Name { get; }

    bool IsSpecialized { get; }

    AttentionOptions Options { get; }

    /// <summary>Uploads the batch metadata (block tables, offsets, work lists) for one step. The plan's device
    /// buffers are pooled by the kernel set: disposing it before the next step's plan lets that plan reuse them
    /// (no device allocation); a plan made while another is alive gets buffers of its own.</summary>
    IAttentionPlan Plan(AttentionBatch batch);

    /// <summary>Appends the step's new K and V rows to the cache at the plan's slot mapping.</summary>
    /// <param name="keys">[num_tokens, num_kv_heads, head_dim] f32</param>
    /// <param name="values">[num_tokens, num_kv_heads, head_dim] f32</param>
    void WriteKvCache(IAttentionPlan plan, ArrayView<float> keys, ArrayView<float> values, PagedKvLayer cache);

    /// <summary>The cache checked for the plan's KV write, for a kernel that writes the new K and V rows itself (the
    /// qkv projection's epilogue, <see cref="PagedKvRows{TCodec}"/>) instead of <see cref="WriteKvCache"/>: the same
    /// checks, the same rounding, one launch fewer per layer.</summary>
    KvCacheTarget CacheWriteTarget(IAttentionPlan plan, PagedKvLayer cache);

    /// <summary>Causal attention of the step's queries over each sequence's cached keys and values.</summary>
    /// <param name="queries">[num_tokens, num_heads, head_dim] f32</param>
    /// <param name="output">[num_tokens, num_heads, head_dim] f32</param>
    void Attend(IAttentionPlan plan, ArrayView<float> queries, PagedKvLayer cache, ArrayView<float> output);
}
