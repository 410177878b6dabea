using ILGPU.Runtime;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Reference;
using SpecializedInference.Tests.Model;
using SpecializedInference.Tests.Ordering;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Kernels;

/// <summary>
/// The tensor-core path on the CPU accelerator, where <see cref="TensorCores.Mma16816"/> is computed through warp
/// shuffles from the same fragments: the instruction with its operands laid out as the PTX ISA documents them, and the
/// projection against float64 (activations rounded to f16, as the kernel feeds them). On a GPU, <c>si selftest</c>
/// runs the same checks against the hardware instruction.
/// </summary>
[CiSeconds(35)]
public sealed class TensorCoreTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>
{
    [Fact]
    public void MmaOfTheDocumentedFragmentsIsTheMatrixProduct()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        for (int trial = 0; trial < 3; trial++)
        {
            double error = TensorCoreSelfTest.Mma(fixture.Accelerator, rng);
            Assert.True(error <= TensorCoreSelfTest.Tolerance, $"seed {seed}, trial {trial}: error {error:E2} x largest |expected|");
        }
    }

    public static TheoryData<int, int, int, bool, int> Shapes() => new()
    {
        // rows, cols, tokens, accumulate, column split (0: the kernels' choice).
        // - The smallest batch it takes (9): one block, rows filling one warp of the four.
        // - 21 rows (a warp's 16 plus 5) and 17 tokens (two column tiles and one token of a third).
        // - A whole token tile (64) over rows past a group tile (67).
        // - 5 rows with 9 blocks; two token tiles and a partial third (130).
        // - Split columns, the sums meeting through atomic adds: 9 blocks 4 ways (2, 2, 2, 3), 8 blocks 3 ways into a
        //   store (zeroed first), and one block per group.
        { 16, 32, 9, false, 0 },
        { 21, 64, 17, true, 0 },
        { 67, 96, 64, false, 0 },
        { 5, 288, 33, false, 0 },
        { 33, 64, 130, true, 0 },
        { 33, 288, 70, true, 4 },
        { 67, 256, 65, false, 3 },
        { 20, 288, 9, false, 9 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void ProjectionMatchesFloat64(int rows, int cols, int tokens, bool accumulate, int kSplit)
    {
        int seed = Random.Shared.Next();
        double error = TensorCoreSelfTest.Linear(fixture.Accelerator, new Random(seed), rows, cols, tokens, accumulate, kSplit > 0 ? kSplit : null);
        output.WriteLine($"seed {seed}: {rows} x {cols}, {tokens} tokens, split {kSplit}: error {error:E2} x largest |expected|");
        Assert.True(error <= TensorCoreSelfTest.Tolerance, $"seed {seed}: error {error:E2} x largest |expected|");
    }

    /// <summary>What <c>si selftest</c> runs on a new device.</summary>
    [Fact]
    public void TheSelfTestPassesOnTheCpuAccelerator()
    {
        int seed = Random.Shared.Next();
        var results = TensorCoreSelfTest.Run(fixture.Accelerator, seed);
        foreach (var r in results) output.WriteLine(r.ToString());
        Assert.Equal(3, results.Count);
        Assert.All(results, r => Assert.True(r.Passed, $"seed {seed}: {r}"));
    }

    [Fact]
    public void FewTokensF32WeightsAndOddColumnsStayOnTheCudaCorePath()
    {
        // 8 tokens is the matvec's, f32 weights have no f16 products, and 48 columns are not a multiple of 32.
        var kernels = new DenseKernels(fixture.Accelerator, DenseSchedule.Warp, tensorCores: true);
        Assert.True(kernels.TensorCores);
        var rng = new Random(1);
        foreach (var (dtype, cols, tokens) in new[] { (WeightDtype.F16, 64, 8), (WeightDtype.F32, 64, 16), (WeightDtype.F16, 48, 16) })
        {
            var w = Enumerable.Range(0, 8 * cols).Select(_ => (float)rng.NextDouble()).ToArray();
            var x = Enumerable.Range(0, tokens * cols).Select(_ => (float)rng.NextDouble()).ToArray();
            using var matrix = SpecializedInference.Runtime.WeightUpload.Matrix(fixture.Accelerator, w, 8, cols, dtype);
            using var xb = fixture.Accelerator.Allocate1D(x);
            using var yb = fixture.Accelerator.Allocate1D<float>(8 * tokens);
            kernels.Linear(xb.View, tokens, matrix, yb.View, accumulate: false);
            var expected = DenseReference.Linear(w, x, null, tokens, 8, cols, dtype); // x unrounded: the f32 path
            var got = yb.GetAsArray1D();
            for (int i = 0; i < expected.Length; i++)
                Assert.True(Math.Abs(expected[i] - got[i]) <= 1e-5 * Math.Max(1, Math.Abs(expected[i])), $"{dtype}, {cols} cols, {tokens} tokens: element {i}");
        }
    }
}
