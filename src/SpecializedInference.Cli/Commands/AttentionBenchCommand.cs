using System.ComponentModel;
using SpecializedInference.Accelerators;
using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Kernels.Reference;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary><c>si attention-bench</c>: device time of decode and prefill attention, generated vs generic kernels.</summary>
internal sealed class AttentionBenchCommand : Command<AttentionBenchCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--device <DEVICE>")]
        [DefaultValue("auto")]
        public string Device { get; init; } = "auto";

        [CommandOption("--heads <N>")]
        [DefaultValue(32)]
        public int Heads { get; init; } = 32;

        [CommandOption("--kv-heads <N>")]
        [DefaultValue(8)]
        public int KvHeads { get; init; } = 8;

        [CommandOption("--head-dim <N>")]
        [DefaultValue(128)]
        public int HeadDim { get; init; } = 128;

        [CommandOption("--block-size <N>")]
        [DefaultValue(16)]
        public int BlockSize { get; init; } = 16;

        [CommandOption("--context <LIST>")]
        [Description("Context length of the decode timing; a comma-separated list times each (every variant compiled once).")]
        [DefaultValue("4096")]
        public string Context { get; init; } = "4096";

        [CommandOption("--batch <LIST>")]
        [Description("Decodes per step; a comma-separated list times each, with every context.")]
        [DefaultValue("1")]
        public string Batch { get; init; } = "1";

        [CommandOption("--prefill-tokens <N>")]
        [Description("Prompt length of the prefill timing (0 skips it).")]
        [DefaultValue(1024)]
        public int PrefillTokens { get; init; } = 1024;

        [CommandOption("--iterations <N>")]
        [DefaultValue(100)]
        public int Iterations { get; init; } = 100;

        [CommandOption("--generic-partitions <LIST>")]
        [Description("Extra generic-kernel runs with these decode partition sizes (comma-separated).")]
        public string? GenericPartitions { get; init; }

        [CommandOption("--sets <LIST>")]
        [Description("Only these generated kernel sets (comma-separated names, grouped heads), no generic runs.")]
        public string? Sets { get; init; }

        [CommandOption("--max-registers <LIST>")]
        [Description("Register caps to compare for the generated sets, ';'-separated, e.g. \"decode=0,prefill=0;decode=168,prefill=128\" (CUDA only; 0 = uncapped).")]
        public string? MaxRegisters { get; init; }

        [CommandOption("--tensor-core-decode")]
        [Description("Also time each generated set's decode on tensor cores (DecodeCores.Tensor), where it has one.")]
        public bool TensorCoreDecode { get; init; }

        [CommandOption("--stage-times")]
        [Description("With --tensor-core-decode: also time those decodes with each group's stages clocked (AttentionOptions.TimeDecodeStages) and print where a group's time goes (CUDA only).")]
        public bool StageTimes { get; init; }

        [CommandOption("--cuda-graphs")]
        [Description("Also time each decode with its back-to-back calls captured once as a CUDA graph and replayed as one launch (what a decode step replayed as a graph pays a call). Needs CUDA and the non-blocking stream, which it implies unless --stream says otherwise.")]
        public bool CudaGraphs { get; init; }

        [CommandOption("--programmatic")]
        [Description("Also time each generated decode launched programmatically (DecodeLaunch.Programmatic, CUDA sm_90): back to back, a call's K/V loads start while the call before it finishes.")]
        public bool Programmatic { get; init; }

        [CommandOption("--stream <KIND>")]
        [Description("legacy (the default, but under --cuda-graphs) or non-blocking: the CUDA stream every launch goes to (see si generate --stream).")]
        public string? Stream { get; init; }

        [CommandOption("--kv-dtype <DTYPE>")]
        [DefaultValue("f16")]
        public string KvDtype { get; init; } = "f16";
    }

    /// <summary>A comma-separated list of positive integers (--batch, --context).</summary>
    internal static int[] ParseList(string option, string text)
    {
        var values = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(v => int.TryParse(v, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n) && n > 0 ? n
                : throw new ArgumentException($"{option} '{text}': expected positive integers, comma-separated (e.g. 1,32)"))
            .ToArray();
        return values.Length > 0 ? values : throw new ArgumentException($"{option}: no value given");
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        int[] batches, contexts;
        DeviceStream stream;
        try
        {
            batches = ParseList("--batch", settings.Batch);
            contexts = ParseList("--context", settings.Context);
            stream = settings.Stream is not null ? DeviceStreamNames.Parse(settings.Stream) : settings.CudaGraphs ? DeviceStream.NonBlocking : DeviceStream.Legacy;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }

        var kind = settings.Device switch { "cpu" => DeviceKind.Cpu, "cuda" => DeviceKind.Cuda, _ => DeviceKind.Auto };
        using var handle = AcceleratorFactory.Create(new AcceleratorOptions(kind, Profiling: true, Stream: stream));
        var shape = new AttentionShape(settings.Heads, settings.KvHeads, settings.HeadDim, settings.BlockSize);
        var dtype = settings.KvDtype == "f32" ? KvDtype.F32 : KvDtype.F16;
        Console.WriteLine($"si attention-bench on {handle.Description}: {shape}, kv {dtype.ToString().ToLowerInvariant()}");
        if (handle.Notice is not null) Console.WriteLine($"  notice: {handle.Notice}");

        var variants = new List<Func<IAttentionKernels>>();
        if (settings.Sets is not null)
        {
            foreach (var name in settings.Sets.Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var set = KernelRegistry.All.FirstOrDefault(s => s.Name == name);
                if (set is null) { Console.Error.WriteLine($"--sets: no kernel set named {name} (si engines lists them)"); return 2; }
                // A set's kernels have its shape compiled in: on buffers of another shape they would read and write
                // the wrong rows, and the GB/s would count bytes they never moved.
                var setShape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
                if (setShape != shape)
                {
                    Console.Error.WriteLine($"--sets {name}: the set is specialized for {setShape}, not the shape asked for ({shape}); " +
                        $"pass --heads {setShape.NumHeads} --kv-heads {setShape.NumKvHeads} --head-dim {setShape.HeadDim} --block-size {setShape.BlockSize}");
                    return 2;
                }
                foreach (var limits in RegisterVariants(settings))
                {
                    var options = new List<AttentionOptions> { new(dtype, MaxRegisters: limits) };
                    if (settings.TensorCoreDecode)
                    {
                        // The set's own tensor-core decode, then its large-batch decode where the config has one.
                        options.Add(new(dtype, MaxRegisters: limits, DecodeCores: DecodeCores.Tensor, LargeBatchDecode: LargeBatchDecodePolicy.Never));
                        options.Add(new(dtype, MaxRegisters: limits, DecodeCores: DecodeCores.Tensor, LargeBatchDecode: LargeBatchDecodePolicy.Always));
                    }
                    // Each of those launched programmatically, right after it (the same warm device, the same buffers' sizes).
                    if (settings.Programmatic)
                        options = options.SelectMany(o => new[] { o, o with { DecodeLaunch = DecodeLaunch.Programmatic } }).ToList();
                    if (settings.TensorCoreDecode && settings.StageTimes)
                        foreach (var policy in new[] { LargeBatchDecodePolicy.Never, LargeBatchDecodePolicy.Always })
                            options.Add(new(dtype, MaxRegisters: limits, DecodeCores: DecodeCores.Tensor, LargeBatchDecode: policy, TimeDecodeStages: true));
                    foreach (var o in options)
                        variants.Add(() => set.CreateAttentionKernels!(handle.Accelerator, o));
                }
            }
            return Run(settings, shape, handle, variants, batches, contexts);
        }
        var match = KernelSelector.FindMatch(shape, KernelRegistry.All);
        if (match is null) Console.WriteLine(KernelSelector.NoticeFor(shape));
        else
        {
            foreach (var limits in RegisterVariants(settings))
            {
                variants.Add(() => match.CreateAttentionKernels!(handle.Accelerator, new AttentionOptions(dtype, MaxRegisters: limits)));
                if (settings.Programmatic)
                    variants.Add(() => match.CreateAttentionKernels!(handle.Accelerator, new AttentionOptions(dtype, MaxRegisters: limits, DecodeLaunch: DecodeLaunch.Programmatic)));
            }
            variants.Add(() => match.CreateAttentionKernels!(handle.Accelerator, new AttentionOptions(dtype, HeadMapping: HeadMapping.Expanded)));
            variants.Add(() => match.CreateAttentionKernels!(handle.Accelerator, new AttentionOptions(dtype, AttentionAlgorithm.Materialized)));
        }
        variants.Add(() => new GenericAttentionKernels(handle.Accelerator, shape, new AttentionOptions(dtype)));
        variants.Add(() => new GenericAttentionKernels(handle.Accelerator, shape, new AttentionOptions(dtype, HeadMapping: HeadMapping.Expanded)));
        variants.Add(() => new GenericAttentionKernels(handle.Accelerator, shape, new AttentionOptions(dtype, AttentionAlgorithm.Materialized)));
        foreach (var p in (settings.GenericPartitions ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var tiles = GenericAttentionKernels.DefaultTiles(shape) with { DecodePartitionSize = int.Parse(p, System.Globalization.CultureInfo.InvariantCulture) };
            variants.Add(() => new GenericAttentionKernels(handle.Accelerator, shape, new AttentionOptions(dtype), tiles));
        }
        return Run(settings, shape, handle, variants, batches, contexts);
    }

    /// <summary>The --max-registers variants (null: the sets' defaults).</summary>
    private static IEnumerable<RegisterLimits?> RegisterVariants(Settings settings)
        => settings.MaxRegisters is null
            ? [null]
            : settings.MaxRegisters.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(text => (RegisterLimits?)RegisterLimits.Parse(text));

    private static int Run(Settings settings, AttentionShape shape, AcceleratorHandle handle, List<Func<IAttentionKernels>> variants, int[] batches, int[] contexts)
    {
        // --cuda-graphs: each decode's timed calls again, captured once and replayed.
        Func<Action, ICapturedLaunches>? replay = null;
        if (settings.CudaGraphs)
        {
            if (CudaGraph.WhyNotCapturable(handle.Accelerator) is { } whyNot) Console.WriteLine($"  notice: --cuda-graphs: {whyNot}");
            else replay = calls => CudaGraph.Capture(handle.Accelerator, calls);
        }
        foreach (var create in variants)
        {
            using var kernels = create();
            if (kernels is AttentionKernelsBase b)
            {
                var large = b.Options.LargeBatchDecode == LargeBatchDecodePolicy.Always ? b.LargeBatchDecode : null;
                if (b.Options.LargeBatchDecode == LargeBatchDecodePolicy.Always && large is null) continue;   // the set has none
                Console.WriteLine($"  {kernels.Name}: tiles {b.Tiles}, {b.HeadsPerGroup} heads per group" +
                    (b.IsSpecialized ? $", registers {b.MaxRegisters}" : "") + (b.DecodeOnTensorCores ? ", decode on tensor cores" : "") +
                    (large is null ? "" : $", large-batch decode {large}") + (b.Options.TimeDecodeStages ? ", stages clocked" : "") +
                    (b.DecodeProgrammatic ? ", decode launched programmatically" : ""));
                if (b.ProgrammaticNotice is { } notice) Console.WriteLine($"    notice: {notice}");
            }
            foreach (int batch in batches)
                foreach (int keys in contexts)
                {
                    var decode = AttentionBenchmark.Decode(kernels, shape, handle.Accelerator, batch, keys, settings.Iterations);
                    Console.WriteLine(decode);
                    if (replay is not null && !kernels.Options.TimeDecodeStages)
                        Console.WriteLine(AttentionBenchmark.Decode(kernels, shape, handle.Accelerator, batch, keys, settings.Iterations, replay));
                    if (kernels.Options.TimeDecodeStages && decode.Stages is null)
                        Console.WriteLine(kernels is AttentionKernelsBase { DecodeOnTensorCores: false }
                            ? "    stage times: none (only the tensor-core decodes are clocked; this decode runs on CUDA cores)"
                            : "    stage times: none recorded (the clocks are CUDA's; this accelerator has none)");
                }
            if (settings.PrefillTokens > 0)
                Console.WriteLine(AttentionBenchmark.Prefill(kernels, shape, handle.Accelerator, 1, settings.PrefillTokens, Math.Max(3, settings.Iterations / 10)));
        }
        return 0;
    }
}
