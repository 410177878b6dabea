using System.Diagnostics;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Reference;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// The generic attention kernels on the CPU accelerator against the float64 reference: KV write, flash
/// prefill, split-K flash decode, materialized and expanded variants, f32 and f16 caches. Shapes are tiny
/// and groups use one warp, because the CPU accelerator runs one OS thread per GPU thread.
/// </summary>
public sealed class AttentionKernelTests : IClassFixture<CpuAcceleratorFixture>
{
    private const double F32Tolerance = 1e-5;
    private const double F16Tolerance = 2e-3;

    private readonly CpuAcceleratorFixture _fx;
    private readonly ITestOutputHelper _out;

    public AttentionKernelTests(CpuAcceleratorFixture fx, ITestOutputHelper output)
    {
        _fx = fx;
        _out = output;
    }

    /// <summary>Small tiles so short contexts cross tile, block and partition boundaries.</summary>
    private static readonly AttentionTiles SmallTiles = new(PrefillTileQ: 8, PrefillTileKv: 8, DecodePartitionSize: 64, Warps: 1);

    private static double Tolerance(KvDtype dtype) => dtype == KvDtype.F32 ? F32Tolerance : F16Tolerance;

    private void AssertClose(StepResult result, int index, int headDim, KvDtype dtype, string what, int seed)
    {
        var c = AttentionReference.Compare(result.Outputs[index], result.Expected, headDim);
        _out.WriteLine($"{what}: {c}");
        Assert.True(c.Within(Tolerance(dtype)), $"{what} (seed {seed}): {c}, tolerance {Tolerance(dtype):E0} x row norm");
    }

    [Theory]
    [InlineData(16, 8, 2, KvDtype.F32)]
    [InlineData(64, 4, 4, KvDtype.F16)]
    public void DecodeMatchesReference(int headDim, int heads, int kvHeads, KvDtype dtype)
    {
        int seed = Environment.TickCount;
        var shape = new AttentionShape(heads, kvHeads, headDim, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, 64, seed);
        var seqs = new[] { new SeqSpec(1, 1), new SeqSpec(63, 1), new SeqSpec(65, 1), new SeqSpec(300, 1) };
        var tables = seqs.Select(s => h.TakeBlocks((s.Context + 15) / 16)).ToArray();
        var sw = Stopwatch.StartNew();
        var r = h.Step(h.Batch(seqs, tables), kernels);
        _out.WriteLine($"decode step {sw.ElapsedMilliseconds} ms");
        AssertClose(r, 0, headDim, dtype, $"decode hd{headDim} {heads}/{kvHeads} {dtype}", seed);
    }

    [Theory]
    [InlineData(16, 8, 2, KvDtype.F32)]
    [InlineData(32, 4, 1, KvDtype.F16)]
    public void PrefillMatchesReference(int headDim, int heads, int kvHeads, KvDtype dtype)
    {
        int seed = Environment.TickCount;
        var shape = new AttentionShape(heads, kvHeads, headDim, 16);
        var kernels = _fx.Generic(shape, new AttentionOptions(dtype), SmallTiles);
        using var h = new AttentionHarness(_fx.Accelerator, shape, dtype, 64, seed);
        var seqs = new[] { new SeqSpec(7, 7), new SeqSpec(17, 17), new SeqSpec(40, 9) };
        var tables = seqs.Select(s => h.TakeBlocks((s.Context + 15) / 16)).ToArray();
        var sw = Stopwatch.StartNew();
        var r = h.Step(h.Batch(seqs, tables), kernels);
        _out.WriteLine($"prefill step {sw.ElapsedMilliseconds} ms");
        AssertClose(r, 0, headDim, dtype, $"prefill hd{headDim} {heads}/{kvHeads} {dtype}", seed);
    }
}
