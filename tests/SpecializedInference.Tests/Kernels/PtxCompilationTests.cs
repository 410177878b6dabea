using System.Reflection;
using System.Text.RegularExpressions;
using ILGPU;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Sampling;
using SpecializedInference.Kernels.Generic;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// Compiles the GPU kernels with ILGPU's PTX backend for sm_80 (what it emits on an H100/H200), without a GPU:
/// every kernel the CPU tests check must also get through the CUDA code generator (intrinsics such as fences,
/// atomics and warp shuffles, struct parameters), so a machine without a GPU catches what would otherwise fail
/// only on the next GPU run. Each kernel's local-memory bytes (arrays ILGPU could not keep in registers) are printed.
/// Where ptxas is installed (<c>benchmarks/ptx/install-ptxas.sh</c>; CI installs it) every kernel is also assembled
/// for sm_90 and must not spill registers to local memory: ILGPU's ordering of unrolled code once cost the decode
/// and prefill 0.7–1.6 KB of spills per thread at 255 registers, found only by reading the GPU profile.
/// </summary>
[CiSeconds(125)]
public sealed class PtxCompilationTests(ITestOutputHelper output)
{
    /// <summary>Every generated kernel: both head mappings (grouped, and expanded for <c>use_gqa: false</c>), and the
    /// non-flash baseline's scores and P·V (<c>use_flash_attention: false</c>).</summary>
    private static readonly string[] GeneratedKernels = ["Decode", "Prefill", "KvCacheWrite", "DecodeExpanded", "PrefillExpanded", "MaterializedScores", "MaterializedValues"];

    /// <summary>The generated kernels launched with a 1-D index (ILGPU picks their group size).</summary>
    private static bool AutoGrouped(string kernel) => kernel is "KvCacheWrite" or "MaterializedScores" or "MaterializedValues";

    public static TheoryData<string> KernelSets()
    {
        var data = new TheoryData<string>();
        foreach (var set in SpecializedInference.Generated.KernelRegistry.All) data.Add(set.Name);
        return data;
    }

    [Theory]
    [MemberData(nameof(KernelSets))]
    public void GeneratedAttentionKernelsCompileToPtx(string name)
    {
        var type = typeof(SpecializedInference.Generated.KernelRegistry).Assembly.GetType($"SpecializedInference.Generated.{name}")
            ?? throw new InvalidOperationException($"no generated class for kernel set {name}");
        // The codec of the config's kv_dtype: the one the set's tiles were sized for (the other one runs too, and
        // is tested on the CPU, but an f32 cache holds twice the registers per K/V row).
        var info = SpecializedInference.Generated.KernelRegistry.All.Single(set => set.Name == name);
        var codec = info.Engine.KvDtype == KvDtype.F16 ? typeof(F16Codec) : typeof(F32Codec);
        using var compiler = new PtxCompiler();
        foreach (var kernel in GeneratedKernels)
        {
            var method = type.GetMethod(kernel, BindingFlags.Public | BindingFlags.Static)
                ?? throw new InvalidOperationException($"{name} has no {kernel} kernel");
            // The decodes as the engine loads them by default (stream-ordered); the programmatic form is checked below.
            var closed = kernel.StartsWith("Decode") ? method.MakeGenericMethod(codec, typeof(StreamOrdered)) : method.MakeGenericMethod(codec);
            string ptx = compiler.Compile(closed, explicitlyGrouped: !AutoGrouped(kernel));
            Report($"{name}.{kernel}<{codec.Name}>", ptx);
            if (kernel.StartsWith("Decode"))
            {
                // The one-launch combine: a device-scope fence around an atomic ticket.
                Assert.Contains("membar.gl", ptx);
                Assert.Matches(@"atom(\.\w+)*\.add", ptx);
                Assert.DoesNotContain("griddepcontrol", ptx);
            }
        }
        // The tensor-core decodes, where the set has them (f16 only, not generic over the codec).
        // Each as the engine loads it (NoStageClock), and for Llama3_8B (the shape the pending GPU run clocks; the marks are
        // the same emitter's in every set) also as si attention-bench --stage-times does (SmStageClock: the SM's cycle
        // counter at every stage, the device's ns timer at entry and exit).
        foreach (var kernel in new[] { "DecodeMma", "DecodeMmaLargeBatch" })
        {
            if (type.GetMethod(kernel, BindingFlags.Public | BindingFlags.Static) is not { } mma) continue;
            string ptx = compiler.Compile(mma.MakeGenericMethod(typeof(NoStageClock), typeof(StreamOrdered)), explicitlyGrouped: true);
            Report($"{name}.{kernel}", ptx);
            Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", ptx);
            Assert.Contains("membar.gl", ptx);
            Assert.DoesNotContain("%clock64", ptx);
            Assert.DoesNotContain("griddepcontrol", ptx);
            if (name != "Llama3_8B") continue;
            string timed = compiler.Compile(mma.MakeGenericMethod(typeof(SmStageClock), typeof(StreamOrdered)), explicitlyGrouped: true);
            Report($"{name}.{kernel}<SmStageClock>", timed);
            Assert.Equal(DecodeStage.Count, Regex.Matches(timed, @"%clock64").Count);
            Assert.Equal(2, Regex.Matches(timed, @"%globaltimer").Count);
            if (kernel != "DecodeMma") continue;
            // Launched programmatically (DecodeLaunch.Programmatic): assembled at the target ProgrammaticLauncher raises
            // ILGPU's sm_80 to; one launch_dependents, the newest key's partition's wait and everyone's wait before the
            // queries; its parameters (the plan's AttentionMeta, the views) where KernelParameters marshals them.
            var programmatic = mma.MakeGenericMethod(typeof(NoStageClock), typeof(ProgrammaticallyDependent));
            string raised = Regex.Replace(compiler.Compile(programmatic, explicitlyGrouped: true), @"^\.target sm_\d+", ".target sm_90", RegexOptions.Multiline);
            Report($"{name}.{kernel}<NoStageClock, ProgrammaticallyDependent>", raised);
            Assert.Single(Regex.Matches(raised, @"griddepcontrol\.launch_dependents;"));
            Assert.Equal(2, Regex.Matches(raised, @"griddepcontrol\.wait;").Count);
            Assert.Equal(programmatic.GetParameters().Select(p => KernelParameters.Of(p.ParameterType).Size), KernelParameters.PtxSizes(raised));
        }
    }

    /// <summary>A whole grid-synced layer (DecodeLaunches.GridSyncedLayers) around the two preset shapes' tensor-core
    /// decodes: its registers (with the decode's shared memory) set how many groups an SM holds, and with them its grid.</summary>
    [Theory]
    [InlineData(typeof(SpecializedInference.Generated.TinyLlama_1_1B.DecodeMmaGroups))]
    [InlineData(typeof(SpecializedInference.Generated.Llama3_8B.DecodeMmaGroups))]
    public void GridSyncedLayersCompileToPtx(Type decode)
    {
        using var compiler = new PtxCompiler();
        var layer = typeof(LayerTailBodies).GetMethod(nameof(LayerTailBodies.Layer))!.MakeGenericMethod(typeof(F16Weights), typeof(PagedKvRows<F16Codec>), decode,
            typeof(FourChunks), typeof(TwoChunks), typeof(TwoChunks), typeof(NoRowPrefetch), typeof(NoStageClock), typeof(NoCarry));
        string ptx = compiler.Compile(layer, explicitlyGrouped: true);
        Report($"Layer<F16Weights, PagedKvRows<F16Codec>, {decode.DeclaringType!.Name}.{decode.Name}, FourChunks, TwoChunks, TwoChunks, NoRowPrefetch>", ptx);
        Assert.Contains("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", ptx);   // the decode's products
        Assert.Contains("ld.relaxed.gpu.global.b32", ptx);                           // the grid barrier's polls
    }

    [Fact]
    public void DenseDecodeKernelsCompileToPtx()
    {
        using var compiler = new PtxCompiler();
        // Every output type at the default depth; the other depths (MatvecDepth) once each, with the largest epilogue.
        var fused = typeof(FusedKernelBodies).GetMethod(nameof(FusedKernelBodies.NormLinearWarp))!;
        var qkv = ("RopeSplitOutput<PagedKvRows<F16Codec>>", typeof(RopeSplitOutput<PagedKvRows<F16Codec>>));
        foreach (var ((name, output), depth) in new[] { (qkv, typeof(TwoChunks)), (("SwiGluOutput", typeof(SwiGluOutput)), typeof(TwoChunks)),
                     (("RowPairOutput", typeof(RowPairOutput)), typeof(TwoChunks)), (qkv, typeof(FourChunks)), (qkv, typeof(EightChunks)) })
        {
            string ptx = compiler.Compile(fused.MakeGenericMethod(typeof(F16Weights), output, depth, typeof(NoRowPrefetch)), explicitlyGrouped: true);
            Report($"NormLinearWarp<F16Weights, {name}, {depth.Name}>", ptx);
            Assert.Equal(2, Regex.Matches(ptx, @"prefetch\.L2").Count); // the next projection's weights (L2Prefetch), before or after the rows' loads
            // FusedMatvecLaunch's cap of 88 registers (22 warps per SM in groups of 2) must not spill at the default depth.
            if (depth == typeof(TwoChunks))
                Report($"NormLinearWarp<F16Weights, {name}, {depth.Name}> capped at 88", RegisterLimitedKernels.WithMaxRegisters(ptx, 88));
        }
        // Each warp pulling its own rows too (WeightPrefetch.OwnRows): the unit's two rows, then the next matrix as above.
        foreach (var (name, output) in new[] { qkv, ("SwiGluOutput", typeof(SwiGluOutput)) })
        {
            string ptx = compiler.Compile(fused.MakeGenericMethod(typeof(F16Weights), output, typeof(TwoChunks), typeof(OwnRowPrefetch)), explicitlyGrouped: true);
            Report($"NormLinearWarp<F16Weights, {name}, TwoChunks, OwnRowPrefetch>", ptx);
            Assert.Equal(4, Regex.Matches(ptx, @"prefetch\.L2").Count);
        }
        // The grid-synced layer tail (DecodeLaunches.GridSyncedTails) as it runs at the default depths (its qkv at the fused
        // pairs' 2 chunks), with each warp's own rows, and with the qkv at 4 (168 registers, measured slower: runs 24-25):
        // its registers set how many groups an SM holds, and with them its grid. Then as the benchmarks' layer-tail clocks
        // it (SmStageClock: the SM's cycle counter at each TailStage mark, the device's ns timer at entry and exit), and with
        // each warp's first rows of a stage loaded before the barrier (CarryFirstStep: held across it).
        var tail = typeof(LayerTailBodies).GetMethod(nameof(LayerTailBodies.LayerTail))!;
        foreach (var (qkvDepth, rows, clock, carry) in new[]
                 {
                     (typeof(FourChunks), typeof(NoRowPrefetch), typeof(NoStageClock), typeof(NoCarry)), (typeof(TwoChunks), typeof(NoRowPrefetch), typeof(NoStageClock), typeof(NoCarry)),
                     (typeof(TwoChunks), typeof(OwnRowPrefetch), typeof(NoStageClock), typeof(NoCarry)), (typeof(TwoChunks), typeof(NoRowPrefetch), typeof(SmStageClock), typeof(NoCarry)),
                     (typeof(TwoChunks), typeof(NoRowPrefetch), typeof(NoStageClock), typeof(CarryFirstStep)),
                 })
        {
            string ptx = compiler.Compile(tail.MakeGenericMethod(typeof(F16Weights), typeof(PagedKvRows<F16Codec>), typeof(FourChunks), typeof(TwoChunks),
                qkvDepth, rows, clock, carry), explicitlyGrouped: true);
            Report($"LayerTail<F16Weights, PagedKvRows<F16Codec>, FourChunks, TwoChunks, {qkvDepth.Name}, {rows.Name}{(clock == typeof(SmStageClock) ? ", SmStageClock" : "")}" +
                $"{(carry == typeof(CarryFirstStep) ? ", CarryFirstStep" : "")}>", ptx);
            Assert.Contains("membar.gl", ptx);                    // the grid barrier's fences
            Assert.Contains("ld.relaxed.gpu.global.b32", ptx);   // its polls
            Assert.Equal(clock == typeof(SmStageClock) ? TailStage.Count : 0, Regex.Matches(ptx, @"%clock64").Count);
            // The one argument struct, the largest any kernel takes, where KernelParameters would marshal it.
            Assert.Equal(KernelParameters.Of(typeof(LayerTailArgs<PagedKvRows<F16Codec>>)).Size, Assert.Single(KernelParameters.PtxSizes(ptx)));
        }
        // The programmatic-launch forms (DecodeLaunches.PerStageProgrammatic): griddepcontrol, assembled at the target
        // ProgrammaticLauncher raises ILGPU's sm_80 to, their parameters where KernelParameters marshals them (the tail's
        // nested argument struct, the largest any kernel takes, is checked likewise above).
        var programmaticLinear = typeof(DenseKernelBodies).GetMethod(nameof(DenseKernelBodies.LinearWarpProgrammatic))!
            .MakeGenericMethod(typeof(F16Weights), typeof(AddToOutput), typeof(FourChunks), typeof(NoRowPrefetch));
        var programmaticFused = typeof(FusedKernelBodies).GetMethod(nameof(FusedKernelBodies.NormLinearWarpProgrammatic))!;
        foreach (var (name, kernel) in new[]
                 {
                     ("LinearWarpProgrammatic<F16Weights, AddToOutput, FourChunks>", programmaticLinear),
                     ($"NormLinearWarpProgrammatic<F16Weights, {qkv.Item1}, FourChunks>", programmaticFused.MakeGenericMethod(typeof(F16Weights), qkv.Item2, typeof(FourChunks), typeof(NoRowPrefetch))),
                     // The async-copy matvecs' programmatic form: their rings fill before the wait.
                     ("LinearWarpAsync<F16Weights, AddToOutput, ProgrammaticallyDependent>", typeof(AsyncCopyBodies).GetMethod(nameof(AsyncCopyBodies.LinearWarpAsync))!
                         .MakeGenericMethod(typeof(F16Weights), typeof(AddToOutput), typeof(ProgrammaticallyDependent))),
                     ($"NormLinearWarpAsync<F16Weights, {qkv.Item1}, ProgrammaticallyDependent>", typeof(FusedKernelBodies).GetMethod(nameof(FusedKernelBodies.NormLinearWarpAsync))!
                         .MakeGenericMethod(typeof(F16Weights), qkv.Item2, typeof(ProgrammaticallyDependent))),
                 })
        {
            string ptx = Regex.Replace(compiler.Compile(kernel, explicitlyGrouped: true), @"^\.target sm_\d+", ".target sm_90", RegexOptions.Multiline);
            Report(name, ptx);
            Assert.Contains("griddepcontrol.launch_dependents;", ptx);
            Assert.Contains("griddepcontrol.wait;", ptx);
            Assert.Equal(kernel.GetParameters().Select(p => KernelParameters.Of(p.ParameterType).Size), KernelParameters.PtxSizes(ptx));
        }
        // The matvec streaming its rows through shared memory (MatvecLoads.AsyncCopy): its copies name the ring by the symbol
        // ILGPU gives the kernel's only shared allocation, and wait for all but the newest Stages - 1 groups.
        var asyncLinear = typeof(AsyncCopyBodies).GetMethod(nameof(AsyncCopyBodies.LinearWarpAsync))!;
        var asyncFused = typeof(FusedKernelBodies).GetMethod(nameof(FusedKernelBodies.NormLinearWarpAsync))!;
        foreach (var (name, kernel, ringChunks) in new[]
                 {
                     ("LinearWarpAsync<F16Weights, AddToOutput>", asyncLinear.MakeGenericMethod(typeof(F16Weights), typeof(AddToOutput), typeof(StreamOrdered)), AsyncCopyBodies.RingChunks),
                     ("LinearWarpAsync<F32Weights, AddToOutput>", asyncLinear.MakeGenericMethod(typeof(F32Weights), typeof(AddToOutput), typeof(StreamOrdered)), AsyncCopyBodies.RingChunks),
                     ($"NormLinearWarpAsync<F16Weights, {qkv.Item1}>", asyncFused.MakeGenericMethod(typeof(F16Weights), qkv.Item2, typeof(StreamOrdered)), AsyncCopyBodies.PairRingChunks),
                     ("NormLinearWarpAsync<F16Weights, SwiGluOutput>", asyncFused.MakeGenericMethod(typeof(F16Weights), typeof(SwiGluOutput), typeof(StreamOrdered)), AsyncCopyBodies.PairRingChunks),
                     ("NormLinearWarpAsync<F16Weights, RowPairOutput>", asyncFused.MakeGenericMethod(typeof(F16Weights), typeof(RowPairOutput), typeof(StreamOrdered)), AsyncCopyBodies.PairRingChunks),
                 })
        {
            string ptx = compiler.Compile(kernel, explicitlyGrouped: true);
            Report(name, ptx);
            Assert.Contains("cp.async.cg.shared.global [si_ring]", ptx);
            Assert.Contains($"cp.async.wait_group {AsyncCopyBodies.Stages - 1};", ptx);
            Assert.Contains("cp.async.wait_all;", ptx);
            var shared = Regex.Matches(ptx, @"\.shared \.align \d+ \.b8 (\w+)\[(\d+)\]");
            Assert.Single(shared);
            Assert.Equal(("__shared_alloca0", ringChunks * 16), (shared[0].Groups[1].Value, int.Parse(shared[0].Groups[2].Value)));
        }
        var batched = typeof(BatchedKernelBodies).GetMethod(nameof(BatchedKernelBodies.LinearBatched))!;
        foreach (var tokens in new[] { typeof(EightTokens), typeof(SixteenTokens) })
            Report($"LinearBatched<F16Weights, AddToOutput, {tokens.Name}>",
                compiler.Compile(batched.MakeGenericMethod(typeof(F16Weights), typeof(AddToOutput), tokens), explicitlyGrouped: true));
        var warp = typeof(DenseKernelBodies).GetMethod(nameof(DenseKernelBodies.LinearWarp))!;
        foreach (var (depth, rows) in new[] { (typeof(TwoChunks), typeof(NoRowPrefetch)), (typeof(FourChunks), typeof(NoRowPrefetch)),
                     (typeof(EightChunks), typeof(NoRowPrefetch)), (typeof(FourChunks), typeof(OwnRowPrefetch)) })
        {
            string ptx = compiler.Compile(warp.MakeGenericMethod(typeof(F16Weights), typeof(AddToOutput), depth, rows), explicitlyGrouped: true);
            Report($"LinearWarp<F16Weights, AddToOutput, {depth.Name}{(rows == typeof(OwnRowPrefetch) ? ", OwnRowPrefetch" : "")}>", ptx);
            // The next projection's weights (before or after the row's loads), and the warp's own row where asked.
            Assert.Equal(rows == typeof(OwnRowPrefetch) ? 3 : 2, Regex.Matches(ptx, @"prefetch\.L2").Count);
        }
        // The tensor-core projection (inline mma.sync and cvt.rn.f16x2.f32: ptxas checks the PTX ILGPU passes through)
        // and the selftest's single mma.
        var mma = typeof(TensorCoreBodies).GetMethod(nameof(TensorCoreBodies.LinearMma))!;
        foreach (var epilogue in new[] { typeof(StoreOutput), typeof(AddToOutput) })
            Report($"LinearMma<{epilogue.Name}>", compiler.Compile(mma.MakeGenericMethod(epilogue), explicitlyGrouped: true));
        Report("TensorCoreSelfTest.MmaKernel", compiler.Compile(typeof(SpecializedInference.Kernels.Reference.TensorCoreSelfTest).GetMethod(nameof(SpecializedInference.Kernels.Reference.TensorCoreSelfTest.MmaKernel))!, explicitlyGrouped: true));
        // The greedy argmax after the LM head (its 64-bit keys through 32-bit shuffles).
        Report("GreedyArgMax.ArgMaxSlices", compiler.Compile(typeof(GreedyArgMax).GetMethod(nameof(GreedyArgMax.ArgMaxSlices))!, explicitlyGrouped: true));
    }

    [Fact]
    public void RegisterCapGoesBetweenTheEntryParametersAndItsBody()
    {
        // What a capped CUDA load does to a generated decode, short of the driver: ILGPU's internal constructor is
        // there (an ILGPU upgrade that drops it fails here, not on the next GPU run) and the directive lands where
        // PTX wants performance directives.
        Assert.True(RegisterLimitedKernels.IsAvailable, RegisterLimitedKernels.Notice);
        using var compiler = new PtxCompiler();
        var decode = typeof(SpecializedInference.Generated.Llama3_8B).GetMethod("Decode")!.MakeGenericMethod(typeof(F16Codec), typeof(StreamOrdered));
        var compiled = compiler.CompileKernel(decode, explicitlyGrouped: true);
        var capped = RegisterLimitedKernels.WithMaxRegisters(compiled, 168);

        Assert.DoesNotContain(".maxnreg", compiled.PTXAssembly);
        Assert.Matches(@"\.entry Kernel_Decode\([^()]*\)\s*\.maxnreg 168\n\{", capped.PTXAssembly);
        Assert.Equal(compiled.PTXAssembly.Length + ".maxnreg 168\n".Length, capped.PTXAssembly.Length);
        Assert.Equal((compiled.Name, compiled.NumParameters, compiled.Info), (capped.Name, capped.NumParameters, capped.Info));
        Assert.Throws<ArgumentException>(() => RegisterLimitedKernels.WithMaxRegisters(capped.PTXAssembly, 128));
        Assert.Throws<ArgumentOutOfRangeException>(() => RegisterLimitedKernels.WithMaxRegisters(compiled.PTXAssembly, 8));
    }

    private void Report(string kernel, string ptx)
    {
        Assert.Contains(".entry", ptx);
        long local = Regex.Matches(ptx, @"\.local\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]").Sum(m => long.Parse(m.Groups[1].Value));
        string entry = Regex.Match(ptx, @"\.entry\s+(\S+?)\s*\(").Groups[1].Value;
        // SI_PTX_DUMP=<folder> keeps the PTX for reading, and with ptxas a row per kernel in resources.md there
        // (benchmarks/ptx/resources.sh prints that table).
        string? dump = Environment.GetEnvironmentVariable("SI_PTX_DUMP") is { Length: > 0 } folder ? folder : null;
        if (dump is not null)
        {
            Directory.CreateDirectory(dump);
            File.WriteAllText(Path.Combine(dump, string.Concat(kernel.Split(Path.GetInvalidFileNameChars())) + ".ptx"), ptx);
        }
        string line = $"{kernel}: entry {entry}, {ptx.Length / 1024} KB of PTX, {local} bytes of local memory";
        if (Ptxas is null)
        {
            output.WriteLine($"{line}; not assembled: {PtxasMissing}");
            // CI installs ptxas (.ci/run), so there a missing one is a broken install, not a machine without it.
            Assert.True(Environment.GetEnvironmentVariable("CI") is not { Length: > 0 }, PtxasMissing);
            return;
        }
        var sm90 = PtxAssembler.Assemble(Ptxas, ptx, kernel, countSass: dump is not null);
        output.WriteLine($"{line}; sm_90: {sm90.Registers} registers, {sm90.SpillStoreBytes} bytes spilled, {sm90.SharedBytes} bytes shared");
        if (dump is not null)
            lock (DumpLock)
                File.AppendAllText(Path.Combine(dump, "resources.md"),
                    $"| {kernel} | {sm90.Registers} | {sm90.SpillStoreBytes} | {sm90.SharedBytes} | {sm90.SassInstructions?.ToString() ?? "-"} |\n");
        Assert.True(sm90.SpillStoreBytes == 0 && sm90.SpillLoadBytes == 0,
            $"{kernel} spills on sm_90: {sm90} (ptxas at {Ptxas}; benchmarks/ptx/resources.sh shows every kernel's registers)");
    }

    private static readonly string? Ptxas = PtxAssembler.Find();

    private static readonly object DumpLock = new();

    private const string PtxasMissing = "ptxas not found (benchmarks/ptx/install-ptxas.sh installs it into .tools/cuda/bin; or set SI_PTXAS)";

    /// <summary>ILGPU's PTX backend for sm_80 / PTX ISA 8.0 on a context with no device behind it.</summary>
    private sealed class PtxCompiler : IDisposable
    {
        private readonly Context _context = Context.Create(b => b.Cuda().EnableAlgorithms().Optimize(OptimizationLevel.O2));
        private readonly PTXBackend _backend;

        public PtxCompiler() =>
            _backend = new PTXBackend(_context, new CudaCapabilityContext(CudaArchitecture.SM_80), CudaArchitecture.SM_80, CudaInstructionSet.ISA_80, null);

        public string Compile(MethodInfo kernel, bool explicitlyGrouped) => CompileKernel(kernel, explicitlyGrouped).PTXAssembly;

        public PTXCompiledKernel CompileKernel(MethodInfo kernel, bool explicitlyGrouped)
        {
            var entry = explicitlyGrouped
                ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel)
                : EntryPointDescription.FromImplicitlyGroupedKernel(kernel);
            return (PTXCompiledKernel)_backend.Compile(entry, default(KernelSpecialization));
        }

        public void Dispose()
        {
            _backend.Dispose();
            _context.Dispose();
        }
    }
}
