using System.ComponentModel;
using SpecializedInference.Accelerators;
using SpecializedInference.Generated;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Generic;
using SpecializedInference.Kernels.Reference;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary>
/// <c>si selftest</c>: every generated kernel set, and the generic kernels, run KV write, prefill and decode (flash, and
/// the non-flash baseline) at
/// small random shapes on the device and are checked against the float64 reference; the greedy argmax against the
/// host's; the tensor-core instruction and projection, and the decode step's projections, against float64. One line per kernel;
/// the exit code is non-zero when any check fails.
/// </summary>
internal sealed class SelftestCommand : Command<SelftestCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--device <DEVICE>")]
        [Description("cpu, cuda or auto (CUDA when usable, else the CPU accelerator). Default: auto.")]
        [DefaultValue("auto")]
        public string Device { get; init; } = "auto";

        [CommandOption("--seed <SEED>")]
        [Description("Seed of the random inputs (default: a fresh one, printed).")]
        public int? Seed { get; init; }

        [CommandOption("--set <NAME>")]
        [Description("Only the kernel set with this name (\"generic\" for the generic kernels, \"sampling\" for the greedy argmax, \"tensor-cores\" for the mma path, \"dense\" for the projections).")]
        public string? Set { get; init; }

        public override Spectre.Console.ValidationResult Validate()
        {
            if (Device is not ("cpu" or "cuda" or "auto"))
                return Spectre.Console.ValidationResult.Error($"--device must be cpu, cuda or auto, not '{Device}'.");
            // A misspelt set would otherwise run no check and pass.
            if (Set is not null && !SetNames.Contains(Set))
                return Spectre.Console.ValidationResult.Error($"--set '{Set}' is not one of: {string.Join(", ", SetNames)}.");
            return Spectre.Console.ValidationResult.Success();
        }
    }

    /// <summary>What <c>--set</c> can name: the generated kernel sets of this build, then the other checks' groups.</summary>
    internal static IReadOnlyList<string> SetNames { get; } =
        KernelRegistry.All.Select(s => s.Name).Concat(["generic", "sampling", "tensor-cores", "dense"]).ToList();

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var kind = settings.Device switch { "cpu" => DeviceKind.Cpu, "cuda" => DeviceKind.Cuda, _ => DeviceKind.Auto };
        AcceleratorHandle handle;
        try
        {
            handle = AcceleratorFactory.Create(new AcceleratorOptions(kind));
        }
        catch (InvalidOperationException ex)
        {
            Console.Error.WriteLine($"si selftest: {ex.Message}");
            return 2;
        }
        using (handle)
        {
            int seed = settings.Seed ?? Random.Shared.Next();
            Console.WriteLine($"si selftest on {handle.Description}, seed {seed}, tolerance {AttentionSelfTest.Tolerance:E0} x row norm");
            var results = new List<SelfTestResult>();
            foreach (var set in KernelRegistry.All)
            {
                if (cancellationToken.IsCancellationRequested) break;
                if (settings.Set is not null && settings.Set != set.Name) continue;
                var shape = AttentionShape.From(set.Shape, set.Engine.KvBlockSize);
                results.AddRange(RunOne(set.Name, () => set.CreateAttentionKernels!(handle.Accelerator, new AttentionOptions(set.Engine.KvDtype)), shape, handle, seed));
                // The set's non-flash baseline (use_flash_attention: false): its own scores and P·V, the generic softmax.
                var nonFlash = new AttentionOptions(set.Engine.KvDtype, AttentionAlgorithm.Materialized);
                results.AddRange(RunOne($"{set.Name} materialized", () => set.CreateAttentionKernels!(handle.Accelerator, nonFlash), shape, handle, seed));
                // The tensor-core decode where the set has one (its prefill and KV write are the same kernels again). On the
                // CPU accelerator the mma would be emulated with warp shuffles, a minute per preset: the tests run that.
                if (handle.Accelerator is not ILGPU.Runtime.CPU.CPUAccelerator)
                {
                    var mma = new AttentionOptions(KvDtype.F16, DecodeCores: DecodeCores.Tensor);
                    results.AddRange(RunOne($"{set.Name} mma", () => set.CreateAttentionKernels!(handle.Accelerator, mma), shape, handle, seed,
                        applies: k => k is AttentionKernelsBase { DecodeOnTensorCores: true }));
                    // The same decode launched programmatically (sm_90: its K/V loads before its wait for the kernel before).
                    var programmatic = mma with { DecodeLaunch = DecodeLaunch.Programmatic };
                    results.AddRange(RunOne($"{set.Name} mma programmatic", () => set.CreateAttentionKernels!(handle.Accelerator, programmatic), shape, handle, seed,
                        applies: k => k is AttentionKernelsBase { DecodeOnTensorCores: true, DecodeProgrammatic: true }));
                    var largeBatch = mma with { LargeBatchDecode = LargeBatchDecodePolicy.Always };
                    results.AddRange(RunOne($"{set.Name} mma large-batch", () => set.CreateAttentionKernels!(handle.Accelerator, largeBatch), shape, handle, seed,
                        applies: k => k is AttentionKernelsBase { LargeBatchDecode: not null }));
                }
            }
            if (handle.Accelerator is ILGPU.Runtime.CPU.CPUAccelerator)
                Console.WriteLine("(the tensor-core decode lines run on CUDA only: the CPU accelerator has no tensor cores, and its tests run the kernels' emulation)");
            if (settings.Set is null or "generic")
            {
                // The generic kernels at a specialized shape, and at one no config specializes (head_dim 48, 6/2 heads, blocks of 8).
                foreach (var (shape, dtype) in new[] { (new AttentionShape(8, 2, 16, 16), KvDtype.F16), (new AttentionShape(6, 2, 48, 8), KvDtype.F32) })
                {
                    results.AddRange(RunOne("generic", () => new GenericAttentionKernels(handle.Accelerator, shape, new AttentionOptions(dtype)), shape, handle, seed));
                    results.AddRange(RunOne("generic materialized", () => new GenericAttentionKernels(handle.Accelerator, shape,
                        new AttentionOptions(dtype, AttentionAlgorithm.Materialized)), shape, handle, seed));
                }
            }
            if (settings.Set is null or "sampling")
            {
                // The greedy argmax the model runner takes on the device.
                var argMax = GreedyArgMaxSelfTest.Run(handle.Accelerator, seed);
                Console.WriteLine(argMax);
                results.Add(argMax);
            }
            if (settings.Set is null or "tensor-cores")
            {
                // The mma instruction with the fragment layout the tensor-core projection assumes, and the projection.
                foreach (var r in TensorCoreSelfTest.Run(handle.Accelerator, seed))
                {
                    Console.WriteLine(r);
                    results.Add(r);
                }
            }
            if (settings.Set is null or "dense")
            {
                // The decode step's matvecs, fused norm projections and batched projection, each launch variant.
                foreach (var r in DenseSelfTest.Run(handle.Accelerator, seed))
                {
                    Console.WriteLine(r);
                    results.Add(r);
                }
            }
            int failed = results.Count(r => !r.Passed);
            Console.WriteLine(failed == 0 ? $"all {results.Count} checks passed" : $"{failed} of {results.Count} checks FAILED (seed {seed})");
            return failed == 0 ? 0 : 1;
        }
    }

    /// <param name="applies">Whether the created kernels are worth a run (no lines when not).</param>
    private static IEnumerable<SelfTestResult> RunOne(string name, Func<IAttentionKernels> create, AttentionShape shape, AcceleratorHandle handle, int seed,
        Func<IAttentionKernels, bool>? applies = null)
    {
        IReadOnlyList<SelfTestResult> results;
        try
        {
            using var kernels = create();
            if (applies is not null && !applies(kernels)) return [];
            results = AttentionSelfTest.Run(kernels, shape, handle.Accelerator, seed);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            var line = new SelfTestResult(name, "load/run", $"{shape}", new Comparison(double.NaN, double.NaN, -1), false, TimeSpan.Zero);
            Console.WriteLine($"{line}  {ex.GetType().Name}: {ex.Message}");
            return new[] { line };
        }
        foreach (var r in results) Console.WriteLine(r);
        return results;
    }
}
