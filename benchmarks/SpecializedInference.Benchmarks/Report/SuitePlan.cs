using SpecializedInference.Benchmarks.EndToEnd;
using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Benchmarks.Kernels;
using SpecializedInference.Generated;
using SpecializedInference.Kernels;

namespace SpecializedInference.Benchmarks.Report;

/// <summary>
/// What one report measures on one device: the copy size, the kernel cases, the end-to-end runs, and the
/// timing. GPU shapes are the presets (configs small/medium/large); the CPU accelerator simulates every GPU
/// thread with an OS thread, so it gets the tiny configs and short contexts.
/// Sized so that a full GPU report finishes in about 6 minutes on an H100/H200, a quick CPU one in seconds.
/// </summary>
public sealed record SuitePlan(
    string Name,
    long CopyBytes,
    IReadOnlyList<AttentionCase> KernelCases,
    IReadOnlyList<AttentionCase> VariantCases,
    TimingOptions KernelTiming,
    EndToEndPlan EndToEnd,
    IReadOnlyList<DenseCase>? DenseCases = null)
{
    /// <summary>The read-only launches the copy section times: the K/V bytes of each decode case of the first kernel
    /// set, the sizes whose GB/s the kernel section reports (rounded up to whole groups of the read kernel), and twice
    /// and four times the smallest, whose differences are the device's time per byte once the launch is paid.</summary>
    public IReadOnlyList<long> ReadCeilingBytes
    {
        get
        {
            var sizes = KernelCases.Where(c => c.Op == AttentionOp.Decode && c.Set == KernelCases[0].Set && c.Context == KernelCases[0].Context)
                .Select(c => (c.KvBytesRead + ReadCeiling.Granule - 1) / ReadCeiling.Granule * ReadCeiling.Granule)
                .ToList();
            if (sizes.Count == 0) return [];
            long smallest = sizes.Min();
            return sizes.Append(2 * smallest).Append(4 * smallest).Distinct().Order().ToList();
        }
    }

    /// <summary>The Llama-3-8B shape's projections (qkv, o, gate|up, down, LM head) at <paramref name="tokens"/>.</summary>
    private static IEnumerable<DenseCase> Llama3Projections(params int[] tokens) =>
        from t in tokens
        from m in new (string Name, int Rows, int Cols)[] { ("qkv", 6144, 4096), ("o", 4096, 4096), ("gate|up", 28672, 4096), ("down", 4096, 14336), ("lm_head", 128256, 4096) }
        select new DenseCase(m.Name, m.Rows, m.Cols, t);

    public static SuitePlan For(bool cuda, bool quick) => (cuda, quick) switch
    {
        (true, false) => GpuFull(),
        (true, true) => GpuQuick(),
        (false, false) => CpuFull(),
        _ => CpuQuick(),
    };

    /// <summary>The kernel set a variant (ablation) is measured on: the Llama-3-8B shape on a GPU.</summary>
    private static IEnumerable<AttentionCase> Variants(KernelSetInfo set, IEnumerable<(AttentionOp Op, int Batch, int Context)> shapes)
    {
        foreach (var (op, batch, context) in shapes)
        {
            yield return new AttentionCase(set, op, batch, context, AttentionAlgorithm.Materialized, HeadMapping.Grouped);
            yield return new AttentionCase(set, op, batch, context, AttentionAlgorithm.Flash, HeadMapping.Expanded);
        }
    }

    /// <summary>The presets at 1k/4k/16k. The Llama-3-8B shape comes first, its headline cases (decode B=1 and 32
    /// at 4k, prefill at 4k) leading, so a run cut short still has them.</summary>
    private static SuitePlan GpuFull()
    {
        var cases = new List<AttentionCase>
        {
            new(Llama3_8B.Info, AttentionOp.Decode, 1, 4096),
            new(Llama3_8B.Info, AttentionOp.Decode, 32, 4096),
            new(Llama3_8B.Info, AttentionOp.Prefill, 1, 4096),
        };
        // The tensor-core decode beside them (grouped sets with a DecodeMma kernel).
        foreach (var set in new[] { Llama3_8B.Info, TinyLlama_1_1B.Info })
            foreach (int batch in new[] { 1, 32 })
                cases.Add(new AttentionCase(set, AttentionOp.Decode, batch, 4096, DecodeCores: DecodeCores.Tensor));
        foreach (var set in new[] { Llama3_8B.Info, TinyLlama_1_1B.Info, Llama2_13B.Info })
        {
            foreach (int batch in new[] { 1, 32 })
                foreach (int context in new[] { 1024, 4096, 16384 })
                    cases.Add(new AttentionCase(set, AttentionOp.Decode, batch, context));
            foreach (int context in new[] { 1024, 4096 })
                cases.Add(new AttentionCase(set, AttentionOp.Prefill, 1, context));
            cases.Add(new AttentionCase(set, AttentionOp.KvWrite, 1, 4096));
        }
        var variants = Variants(Llama3_8B.Info, [(AttentionOp.Decode, 1, 4096), (AttentionOp.Decode, 32, 4096), (AttentionOp.Prefill, 1, 4096)]).ToList();
        // The projections at decode batches 16 and 64 and at a 512-token prefill chunk.
        return new SuitePlan("gpu", 1L << 30, cases.Distinct().ToList(), variants, TimingOptions.Full, EndToEndPlan.GpuFull,
            Llama3Projections(16, 64, 512).ToList());
    }

    private static SuitePlan GpuQuick()
    {
        var set = Llama3_8B.Info;
        AttentionCase[] cases =
        [
            new(set, AttentionOp.Decode, 1, 4096),
            new(set, AttentionOp.Decode, 32, 4096),
            new(set, AttentionOp.Prefill, 1, 4096),
            new(set, AttentionOp.KvWrite, 1, 4096),
            new(set, AttentionOp.Decode, 1, 4096, DecodeCores: DecodeCores.Tensor),
            new(set, AttentionOp.Decode, 32, 4096, DecodeCores: DecodeCores.Tensor),
        ];
        var variants = Variants(set, [(AttentionOp.Decode, 32, 4096)]).ToList();
        return new SuitePlan("gpu-quick", 256L << 20, cases, variants, TimingOptions.Full with { Repetitions = 7 }, EndToEndPlan.GpuQuick,
            Llama3Projections(64).ToList());
    }

    private static SuitePlan CpuFull()
    {
        KernelSetInfo[] sets = [gqa_tiny.Info, mha_tiny.Info, gqa_hd128_long.Info];
        var cases = new List<AttentionCase>();
        foreach (var set in sets)
        {
            foreach (int batch in new[] { 1, 4 })
                foreach (int context in new[] { 64, 256 })
                    cases.Add(new AttentionCase(set, AttentionOp.Decode, batch, context));
            cases.Add(new AttentionCase(set, AttentionOp.Prefill, 1, 64));
            cases.Add(new AttentionCase(set, AttentionOp.KvWrite, 1, 256));
        }
        cases.Add(new AttentionCase(gqa_hd128_long.Info, AttentionOp.Decode, 1, 300, DecodeCores: DecodeCores.Tensor));
        var variants = Variants(gqa_tiny.Info, [(AttentionOp.Decode, 4, 256), (AttentionOp.Prefill, 1, 64)]).ToList();
        return new SuitePlan("cpu", 256L << 10, cases, variants, new TimingOptions(Warmup: 1, Repetitions: 3, MinRepetitionSeconds: 0, MaxCallsPerRepetition: 1), EndToEndPlan.CpuFull,
            [new DenseCase("tiny", 64, 256, 16), new DenseCase("tiny", 67, 512, 33)]);
    }

    /// <summary>Seconds on two cores: what the CI smoke test runs.</summary>
    private static SuitePlan CpuQuick()
    {
        var set = gqa_tiny.Info;
        AttentionCase[] cases =
        [
            new(set, AttentionOp.Decode, 2, 32),
            new(set, AttentionOp.Prefill, 1, 16),
            new(set, AttentionOp.KvWrite, 1, 32),
        ];
        var variants = Variants(set, [(AttentionOp.Decode, 2, 32)]).ToList();
        return new SuitePlan("cpu-quick", 64L << 10, cases, variants, new TimingOptions(Warmup: 0, Repetitions: 1, MinRepetitionSeconds: 0, MaxCallsPerRepetition: 1), EndToEndPlan.CpuQuick,
            [new DenseCase("tiny", 64, 256, 16)]);
    }
}
