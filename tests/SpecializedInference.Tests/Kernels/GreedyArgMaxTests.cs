using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Sampling;
using SpecializedInference.Tests.Model;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// The device's greedy choice (<see cref="GreedyArgMax"/>) against the host's rule, written out as a scalar loop here:
/// the largest logit, the lowest id on ties (-0 equal to +0), NaNs passed over, and no token for a row of NaNs.
/// </summary>
[CiSeconds(10)]
public sealed class GreedyArgMaxTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    private static readonly float[] Special = [float.NaN, float.NegativeInfinity, float.PositiveInfinity, 0f, -0f, 3f, -3f, float.Epsilon, -float.Epsilon];

    /// <summary>The host's rule: index of the largest logit, the first on ties, NaN never kept; none when all are NaN.</summary>
    private static int ScalarArgMax(ReadOnlySpan<float> logits)
    {
        int best = GreedyArgMax.NoToken;
        for (int i = 0; i < logits.Length; i++)
            if (!float.IsNaN(logits[i]) && (best == GreedyArgMax.NoToken || logits[i] > logits[best]))
                best = i;
        return best;
    }

    /// <summary>Rows where the rule's corners are common: few distinct values (ties), specials, the top planted
    /// several times, rows of NaN, of -inf and of ±0.</summary>
    private static float[] Row(Random rng, int vocab, int trial)
    {
        var row = Enumerable.Range(0, vocab).Select(_ => rng.Next(4) == 0 ? Special[rng.Next(Special.Length)] : rng.Next(7) - 3f + (trial % 2) * (float)rng.NextDouble()).ToArray();
        switch (trial % 6)
        {
            case 1: Array.Fill(row, float.NaN); break;
            case 2: Array.Fill(row, float.NegativeInfinity); row[rng.Next(vocab)] = float.NaN; break;
            case 3: for (int i = 0; i < vocab; i++) row[i] = rng.Next(2) == 0 ? 0f : -0f; break;
            case 4: for (int k = 0; k < 3; k++) row[rng.Next(vocab)] = 50f; break;
        }

        return row;
    }

    [Fact]
    public void TheLargestKeyNamesTheHostsArgMax()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        for (int trial = 0; trial < 3000; trial++)
        {
            int vocab = 1 + rng.Next(trial < 2000 ? 40 : 3000);
            var row = Row(rng, vocab, trial);
            ulong best = 0;
            for (int i = 0; i < vocab; i++) best = Math.Max(best, GreedyArgMax.Key(row[i], i));
            Assert.True(ScalarArgMax(row) == GreedyArgMax.TokenOf(best), $"seed {seed}, trial {trial}: [{string.Join(", ", row)}]");
        }

        Assert.Equal(GreedyArgMax.NoToken, GreedyArgMax.TokenOf(GreedyArgMax.Key(float.NaN, 0)));
        Assert.Equal(128255, GreedyArgMax.TokenOf(GreedyArgMax.Key(float.NegativeInfinity, 128255)));
    }

    public static TheoryData<DenseSchedule, int, int> Slicings() => new()
    {
        // The GPU's groups (256 threads) over one slice per row, slices of one logit, slices that are not a multiple of
        // the group or of four loads, and the GPU's slice length with a short last slice (4097 = 4096 + 1).
        { DenseSchedule.Warp, 300, 300 },
        { DenseSchedule.Warp, 17, 1 },
        { DenseSchedule.Warp, 1000, 33 },
        { DenseSchedule.Warp, 4097, GreedyArgMax.GpuSliceLength },
        { DenseSchedule.Warp, 1, GreedyArgMax.GpuSliceLength },
        // The CPU accelerator's schedule: one warp per slice, the whole row by default.
        { DenseSchedule.Serial, 1000, 1000 },
        { DenseSchedule.Serial, 1031, 257 },
    };

    /// <summary>Every slice's key is the host's largest key of that slice (the keys are poisoned first, so a slice
    /// the kernel skipped shows), and the largest of a row's keys names the host's argmax.</summary>
    [Theory]
    [MemberData(nameof(Slicings))]
    public void EverySliceKeyAndEveryRowsTokenMatchTheHost(DenseSchedule schedule, int vocab, int sliceLength)
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        const int rows = 7;
        var logits = new float[rows * vocab];
        for (int r = 0; r < rows; r++) Row(rng, vocab, r).CopyTo(logits, r * vocab);
        int slices = GreedyArgMax.Slices(vocab, sliceLength);
        const ulong poison = 0xDEAD_BEEF_DEAD_BEEFUL;

        var kernels = new DenseKernels(fixture.Accelerator, schedule);
        using var device = fixture.Accelerator.Allocate1D(logits);
        using var keys = fixture.Accelerator.Allocate1D(Enumerable.Repeat(poison, rows * slices).ToArray());
        kernels.ArgMaxSlices(device.View, rows, vocab, sliceLength, keys.View);
        var got = keys.GetAsArray1D();

        for (int r = 0; r < rows; r++)
        {
            var row = logits.AsSpan(r * vocab, vocab);
            ulong rowBest = 0;
            for (int s = 0; s < slices; s++)
            {
                ulong expected = 0;
                for (int i = s * sliceLength; i < Math.Min(vocab, (s + 1) * sliceLength); i++) expected = Math.Max(expected, GreedyArgMax.Key(row[i], i));
                Assert.True(expected == got[r * slices + s], $"seed {seed}: row {r}, slice {s} of {slices}: key {got[r * slices + s]:X16}, expected {expected:X16}");
                rowBest = Math.Max(rowBest, got[r * slices + s]);
            }

            Assert.True(ScalarArgMax(row) == GreedyArgMax.TokenOf(rowBest), $"seed {seed}: row {r}");
        }

        output.WriteLine($"seed {seed}: {rows} rows of {vocab} logits in {slices} slices of {sliceLength}");
    }

    /// <summary>What <c>si selftest</c> runs on a new device: vocabulary-sized rows in the runner's slices.</summary>
    [Fact]
    public void TheSelfTestPassesOnTheCpuAccelerator()
    {
        int seed = Random.Shared.Next();
        var result = SpecializedInference.Kernels.Reference.GreedyArgMaxSelfTest.Run(fixture.Accelerator, seed);
        output.WriteLine(result.ToString());
        Assert.True(result.Passed, $"seed {seed}: {result}");
        Assert.Contains("every token the host's", result.ToString());
    }

    [Fact]
    public void ASliceOfNoLogitsIsRefused()
    {
        var kernels = new DenseKernels(fixture.Accelerator, DenseSchedule.Warp);
        using var keys = fixture.Accelerator.Allocate1D<ulong>(1);
        using var logits = fixture.Accelerator.Allocate1D<float>(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => kernels.ArgMaxSlices(logits.View, 1, 4, 0, keys.View));
    }
}
