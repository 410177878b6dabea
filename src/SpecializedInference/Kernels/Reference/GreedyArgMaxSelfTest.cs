using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Kernels.Sampling;
using SpecializedInference.Sampling;

namespace SpecializedInference.Kernels.Reference;

/// <summary>
/// The greedy argmax kernel on the device against the host's argmax (<see cref="Sampler.ArgMax"/>), for
/// <c>si selftest</c>: rows of Llama 2's and Llama 3's vocabularies and an odd one, in the slices the runner uses,
/// with ties of the largest logit, NaNs and infinities planted, and a row of NaNs (no token).
/// </summary>
public static class GreedyArgMaxSelfTest
{
    public static SelfTestResult Run(Accelerator accelerator, int seed)
    {
        var clock = Stopwatch.StartNew();
        var kernels = new DenseKernels(accelerator);
        var rng = new Random(seed);
        int[] vocabularies = [32000, 128256, 4097];
        int rows = 0, wrong = 0;
        foreach (int vocab in vocabularies)
        {
            const int rowsPerVocab = 4;
            var logits = new float[rowsPerVocab * vocab];
            for (int i = 0; i < logits.Length; i++) logits[i] = (float)(rng.NextDouble() * 20 - 10);
            for (int r = 0; r < rowsPerVocab; r++)
            {
                var row = logits.AsSpan(r * vocab, vocab);
                for (int k = 0; k < 8; k++) row[rng.Next(vocab)] = float.NaN;
                row[rng.Next(vocab)] = float.NegativeInfinity;
                float top = r == 1 ? float.PositiveInfinity : 11f;
                for (int k = 0; k < 1 + r; k++) row[rng.Next(vocab)] = top; // ties: the lowest id wins
                if (r == 3) row.Fill(float.NaN);
            }

            int sliceLength = kernels.ArgMaxSliceLength(vocab);
            int slices = GreedyArgMax.Slices(vocab, sliceLength);
            using var device = accelerator.Allocate1D(logits);
            using var keys = accelerator.Allocate1D(Enumerable.Repeat(ulong.MaxValue, rowsPerVocab * slices).ToArray()); // poisoned
            kernels.ArgMaxSlices(device.View, rowsPerVocab, vocab, sliceLength, keys.View);
            var got = keys.GetAsArray1D();
            for (int r = 0; r < rowsPerVocab; r++)
            {
                var row = logits.AsSpan(r * vocab, vocab);
                int expected = r == 3 ? GreedyArgMax.NoToken : Sampler.ArgMax(row);
                int token = GreedyArgMax.TokenOf(got.AsSpan(r * slices, slices).ToArray().Max());
                rows++;
                if (token != expected) wrong++;
            }
        }

        string detail = $"{rows} rows of {string.Join(", ", vocabularies)} logits";
        return new SelfTestResult("sampling", "argmax", detail, default, wrong == 0, clock.Elapsed,
            wrong == 0 ? "every token the host's" : $"{wrong} tokens not the host's");
    }
}
