using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits <c>{Name}.AttentionKernels</c>: the kernel set's <c>IAttentionKernels</c>, which loads the generated
/// KV write, prefill and decode kernels (decode combines its partitions in the same launch) for the options' KV dtype and head mapping, and
/// the materialized (non-flash) baseline's scores and P·V when the options ask for it.
/// </summary>
internal static class AttentionKernelsEmitter
{
    public static string HintName(KernelSetSpec spec) => $"{spec.Name}.AttentionKernels.g.cs";

    public static string Emit(KernelSetSpec spec)
    {
        var grouped = new AttentionLayout(spec, expanded: false);
        bool mma = DecodeMmaEmitter.Supports(grouped);
        bool large = spec.Engine.Tiles.LargeBatchDecode is not null;
        var w = new SourceWriter();
        KernelSetEmitter.Header(w, spec, "ILGPU", "ILGPU.Runtime", "SpecializedInference.Accelerators", "SpecializedInference.Kernels");
        using (w.Block($"public static partial class {spec.Name}"))
        {
            w.Line("/// <summary>Query heads one thread group serves from each K/V load (the whole group when it fits shared memory).</summary>");
            w.Line($"public const int AttentionHeadsPerGroup = {Int(grouped.HeadsPerGroup)};");
            w.Line();
            w.Line($"/// <summary>The attention and KV-cache kernels specialized for configs/{spec.ConfigFileName}.</summary>");
            using (w.Block("public sealed class AttentionKernels : AttentionKernelsBase"))
            {
                const string attention = "System.Action<KernelConfig, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>, ArrayView<float>>";
                const string writeKv = "System.Action<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>>";
                w.Line("/// <summary>The shape these kernels are specialized for.</summary>");
                w.Line("public static readonly AttentionShape SpecializedShape = new(NumAttentionHeads, NumKeyValueHeads, HeadDim, KvBlockSize);");
                w.Line();
                w.Line("/// <summary>The tiles these kernels are specialized for.</summary>");
                w.Line("public static readonly AttentionTiles SpecializedTiles = new(PrefillTileQ, PrefillTileKv, DecodePartitionSize, AttentionWarps);");
                w.Line();
                w.Line($"private readonly {writeKv} _writeKv;");
                w.Line($"private readonly {attention} _prefill;");
                w.Line($"private readonly {attention} _decode;");
                if (large)
                    w.Line($"private readonly {attention}? _decodeLargeBatch;");
                w.Line();
                if (mma)
                {
                    w.Line("/// <summary>Whether <see cref=\"DecodeMma\"/> runs the decode (asked for, grouped heads, f16 cache).</summary>");
                    w.Line("public override bool DecodeOnTensorCores { get; }");
                    w.Line();
                }
                if (large)
                {
                    w.Line("/// <summary><see cref=\"DecodeMmaLargeBatch\"/>'s layout where the decode runs on tensor cores, else null.</summary>");
                    w.Line("public override DecodeLayout? LargeBatchDecode { get; }");
                    w.Line();
                }
                w.Line("public AttentionKernels(Accelerator accelerator, AttentionOptions options)");
                w.Line($"    : base(accelerator, \"{spec.Name}\", isSpecialized: true, SpecializedShape, SpecializedTiles, options,");
                w.Line("        options.HeadMapping == HeadMapping.Expanded ? 1 : AttentionHeadsPerGroup)");
                using (w.Scope())
                {
                    const string tensorCores = "options.DecodeCores == DecodeCores.Tensor && options.KvDtype == KvDtype.F16 && options.HeadMapping == HeadMapping.Grouped";
                    if (mma)
                        w.Line($"DecodeOnTensorCores = {tensorCores};");
                    if (large)
                    {
                        w.Line(mma ? "if (DecodeOnTensorCores)" : $"if ({tensorCores})");
                        using (w.Scope())
                        {
                            w.Line("LargeBatchDecode = new DecodeLayout(LargeBatchDecodePartitionSize, LargeBatchDecodeWarps, NumAttentionHeads / LargeBatchDecodeHeadsPerGroup);");
                            w.Line("_decodeLargeBatch = options.TimeDecodeStages");
                            w.Line($"    ? {LoadDecode("DecodeMmaLargeBatch<SmStageClock, {0}>")}");
                            w.Line($"    : {LoadDecode("DecodeMmaLargeBatch<NoStageClock, {0}>")};");
                        }
                    }
                    using (w.Block("if (options.KvDtype == KvDtype.F16)"))
                        EmitLoads(w, "F16Codec", attention, writeKv, mma);
                    using (w.Block("else"))
                        EmitLoads(w, "F32Codec", attention, writeKv, mma: false);
                }
                w.Line();
                w.Line("protected override void LaunchWriteKv(AttentionPlan plan, ArrayView<float> keys, ArrayView<float> values, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache)");
                w.Line("    => _writeKv(plan.Batch.NumTokens * KvWriteThreadsPerToken, plan.Meta.SlotMapping, keys, values, keyCache, valueCache);");
                w.Line();
                w.Line("protected override void LaunchPrefill(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
                w.Line("    => _prefill(new KernelConfig(plan.NumPrefillItems * Dims.HeadGroups, Options.HeadMapping == HeadMapping.Expanded ? PrefillExpandedThreads : PrefillThreads),");
                w.Line("        plan.Meta, queries, keyCache, valueCache, output);");
                w.Line();
                w.Line("protected override void LaunchDecode(AttentionPlan plan, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
                if (large)
                {
                    using (w.Scope())
                    {
                        w.Line("if (plan.DecodeLayout is { } layout && _decodeLargeBatch is not null)");
                        w.Line("    _decodeLargeBatch(new KernelConfig(plan.NumDecodeItems * layout.HeadGroups, layout.Warps * 32), plan.Meta, queries, keyCache, valueCache, output);");
                        w.Line("else");
                        w.Line("    _decode(new KernelConfig(plan.NumDecodeItems * Dims.HeadGroups, DecodeWarps * 32), plan.Meta, queries, keyCache, valueCache, output);");
                    }
                }
                else
                    w.Line("    => _decode(new KernelConfig(plan.NumDecodeItems * Dims.HeadGroups, DecodeWarps * 32), plan.Meta, queries, keyCache, valueCache, output);");
                w.Line();
                w.Line("/// <summary>This set's non-flash scores and P·V (<see cref=\"MaterializedScores\"/>, <see cref=\"MaterializedValues\"/>).</summary>");
                w.Line("private protected override MaterializedKernels CreateMaterialized() => Options.KvDtype == KvDtype.F16");
                foreach (var (lead, codec) in new[] { ("?", "F16Codec"), (":", "F32Codec") })
                {
                    w.Line($"    {lead} new MaterializedKernels(Accelerator, Shape, specialized: true,");
                    w.Line($"        Accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionMeta, ArrayView<float>, ArrayView<Chunk16>>(MaterializedScores<{codec}>),");
                    w.Line($"        Accelerator.LoadAutoGroupedStreamKernel<Index1D, AttentionMeta, ArrayView<Chunk16>, ArrayView<float>>(MaterializedValues<{codec}>))" + (codec == "F32Codec" ? ";" : ""));
                }
                w.Line();
                w.Line("/// <summary>The decode this set would launch for the step, as a struct type (grouped heads only).</summary>");
                w.Line("protected override bool HandDecode<TVisitor>(DecodeGroupsLaunch launch, ref TVisitor visitor)");
                using (w.Scope())
                {
                    w.Line("if (Options.HeadMapping == HeadMapping.Expanded) return false;");
                    w.Line("launch = launch with { Threads = DecodeWarps * 32 };");
                    if (mma)
                        w.Line("if (DecodeOnTensorCores) visitor.Visit<DecodeMmaGroups>(launch);");
                    w.Line($"{(mma ? "else " : "")}if (Options.KvDtype == KvDtype.F16) visitor.Visit<DecodeGroups<F16Codec>>(launch);");
                    w.Line("else visitor.Visit<DecodeGroups<F32Codec>>(launch);");
                    w.Line("return true;");
                }
            }
            w.Line();
            const string run = "public readonly void Run(int group, AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)";
            w.Line("/// <summary><see cref=\"Decode\"/>'s per-group body as a struct type parameter (<see cref=\"IDecodeGroups\"/>): a grid-synced layer launch's attention stage.</summary>");
            using (w.Block("public struct DecodeGroups<TCodec> : IDecodeGroups where TCodec : struct, IKvCodec"))
            {
                w.Line(run);
                w.Line("    => DecodeGroup<TCodec, StreamOrdered>(group, m, queries, keyCache, valueCache, output);");
            }
            if (mma)
            {
                w.Line();
                w.Line("/// <summary><see cref=\"DecodeMma\"/>'s per-group body as a struct type parameter (<see cref=\"IDecodeGroups\"/>), unclocked.</summary>");
                using (w.Block("public struct DecodeMmaGroups : IDecodeGroups"))
                {
                    w.Line(run);
                    w.Line("    => DecodeMmaGroup<NoStageClock, StreamOrdered>(group, m, queries, keyCache, valueCache, output);");
                }
            }
        }
        return w.ToString();
    }

    private static void EmitLoads(SourceWriter w, string codec, string attention, string writeKv, bool mma)
    {
        string args = "AttentionMeta, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>, ArrayView<float>";
        w.Line($"_writeKv = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<Chunk16>, ArrayView<Chunk16>>(KvCacheWrite<{codec}>);");
        w.Line("_prefill = options.HeadMapping == HeadMapping.Expanded");
        w.Line($"    ? accelerator.LoadStreamKernel<{args}>(PrefillExpanded<{codec}>, MaxRegisters.Prefill)");
        w.Line($"    : accelerator.LoadStreamKernel<{args}>(Prefill<{codec}>, MaxRegisters.Prefill);");
        w.Line("_decode = options.HeadMapping == HeadMapping.Expanded");
        w.Line($"    ? {LoadDecode($"DecodeExpanded<{codec}, {{0}}>")}");
        if (mma)
        {
            w.Line($"    : DecodeOnTensorCores && options.TimeDecodeStages ? {LoadDecode("DecodeMma<SmStageClock, {0}>")}");
            w.Line($"    : DecodeOnTensorCores ? {LoadDecode("DecodeMma<NoStageClock, {0}>")}");
        }
        w.Line($"    : {LoadDecode($"Decode<{codec}, {{0}}>")};");
    }

    /// <summary>The base class's <c>LoadDecode</c> of <paramref name="kernel"/> (a format whose {0} is the launch dependency):
    /// stream-ordered, and programmatic for <c>DecodeLaunch.Programmatic</c>.</summary>
    private static string LoadDecode(string kernel)
        => $"LoadDecode({string.Format(kernel, "StreamOrdered")}, {string.Format(kernel, "ProgrammaticallyDependent")}, MaxRegisters.Decode)";
}
