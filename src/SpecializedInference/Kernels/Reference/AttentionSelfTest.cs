using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels.Reference;

/// <summary>One self-test check: which kernel set and kernel, on what, its error against the float64 reference
/// (or, for a check that compares no numbers, <paramref name="Outcome"/>: what it found).</summary>
/// <param name="Kernel">kv-write, prefill, decode; decode-tc is the decode on tensor cores, decode-tc-lb the large-batch one;
/// prefill-mat and decode-mat the non-flash (materialized) attention over the same batches.</param>
public sealed record SelfTestResult(string KernelSet, string Kernel, string Detail, Comparison Error, bool Passed, TimeSpan Elapsed, string? Outcome = null)
{
    public override string ToString()
        => $"{KernelSet,-16} {Kernel,-12} {Detail,-38} {Outcome ?? $"max abs err {Error.MaxAbsError:E2} ({Error.RelativeError:E2} x row norm)"} {Elapsed.TotalMilliseconds,8:F0} ms  {(Passed ? "ok" : "FAIL")}";
}

/// <summary>
/// Runs a kernel set's KV write, prefill and decode at small random shapes on its accelerator and checks each
/// against <see cref="AttentionReference"/> (what <c>si selftest</c> prints). The cache is pre-filled with random
/// values and the block tables are shuffled; outputs are poisoned with NaN before each launch.
/// </summary>
public static class AttentionSelfTest
{
    /// <summary>Max abs error over the reference row's L2 norm. The reference reads the cache as stored
    /// (f16-rounded), so f16 caches meet the same bound.</summary>
    public const double Tolerance = 1e-5;

    public static IReadOnlyList<SelfTestResult> Run(IAttentionKernels kernels, AttentionShape shape, Accelerator accelerator, int seed)
    {
        var rng = new Random(seed);
        var dtype = kernels.Options.KvDtype;
        var set = kernels as AttentionKernelsBase;
        // The partition the decode runs with: the large-batch decode's when the options force it.
        int partition = (set?.Options.LargeBatchDecode == LargeBatchDecodePolicy.Always ? set.LargeBatchDecode?.PartitionSize : null)
            ?? set?.Tiles.DecodePartitionSize ?? 256;
        bool big = shape.NumHeads >= 16;
        // Prefill: a whole prompt and the second chunk of a prompt whose first 34 keys are cached. Decode: a
        // context spanning two split-K partitions, a one-key context and one across a block boundary.
        var prefill = big ? new[] { (Context: 9, Query: 9), (Context: 40, Query: 6) } : new[] { (Context: 21, Query: 21), (Context: 40, Query: 6) };
        var decode = big ? new[] { (Context: partition + 3, Query: 1), (Context: 1, Query: 1) }
            : new[] { (Context: partition + 3, Query: 1), (Context: 1, Query: 1), (Context: shape.BlockSize + 1, Query: 1) };
        int numBlocks = prefill.Concat(decode).Sum(s => (s.Context + shape.BlockSize - 1) / shape.BlockSize) + 2;

        var reference = new ReferencePagedCache(numBlocks, shape.NumKvHeads, shape.BlockSize, shape.HeadDim, dtype);
        reference.FillRandom(rng);
        using var cache = PagedKvCacheBuffer.Allocate(accelerator, new PagedKvCacheLayout(numBlocks, shape.NumKvHeads, shape.BlockSize, shape.HeadDim, dtype));
        cache.Layer.Keys.CopyFromCPU(reference.KeyBytes());
        cache.Layer.Values.CopyFromCPU(reference.ValueBytes());
        var free = new Queue<int>(Enumerable.Range(0, numBlocks).OrderBy(_ => rng.Next()));

        string Describe((int Context, int Query)[] seqs)
            => $"{dtype.ToString().ToLowerInvariant()} hd{shape.HeadDim} {shape.NumHeads}/{shape.NumKvHeads} " + string.Join(",", seqs.Select(s => $"{s.Query}@{s.Context}"));

        var results = new List<SelfTestResult>();
        foreach (var (label, seqs) in new[] { ("prefill", prefill), ("decode", decode) })
        {
            var tables = seqs.Select(s => Enumerable.Range(0, (s.Context + shape.BlockSize - 1) / shape.BlockSize).Select(_ => free.Dequeue()).ToArray()).ToArray();
            var slots = new List<int>();
            for (int s = 0; s < seqs.Length; s++)
                for (int p = seqs[s].Context - seqs[s].Query; p < seqs[s].Context; p++)
                    slots.Add(tables[s][p / shape.BlockSize] * shape.BlockSize + p % shape.BlockSize);
            var batch = new AttentionBatch(seqs.Select(s => s.Query).ToArray(), seqs.Select(s => s.Context).ToArray(), tables, slots.ToArray());
            var keys = RandomFloats(rng, (long)batch.NumTokens * shape.NumKvHeads * shape.HeadDim);
            var values = RandomFloats(rng, keys.Length);
            var queries = RandomFloats(rng, (long)batch.NumTokens * shape.NumHeads * shape.HeadDim);
            reference.Write(batch.SlotMapping, keys, values);
            var expected = AttentionReference.Attend(batch, queries, shape.NumHeads, reference);

            using var dKeys = accelerator.Allocate1D(keys);
            using var dValues = accelerator.Allocate1D(values);
            using var dQueries = accelerator.Allocate1D(queries);
            using var dOut = accelerator.Allocate1D(Enumerable.Repeat(float.NaN, queries.Length).ToArray());
            using var plan = kernels.Plan(batch);

            var sw = Stopwatch.StartNew();
            kernels.WriteKvCache(plan, dKeys.View, dValues.View, cache.Layer);
            accelerator.Synchronize();
            var writeTime = sw.Elapsed;
            bool materialized = kernels.Options.Algorithm == AttentionAlgorithm.Materialized;
            if (label == "prefill" && !materialized)   // the non-flash run writes with the same kernel again
            {
                // The whole cache read back: written slots must hold the new rows, the others must be untouched.
                var deviceKeys = reference.FromBytes(ReadBytes(cache.Layer.Keys));
                var deviceValues = reference.FromBytes(ReadBytes(cache.Layer.Values));
                var flat = deviceKeys.Concat(deviceValues).Select(x => (float)x).ToArray();
                var c = AttentionReference.Compare(flat, reference.Keys.Concat(reference.Values).ToArray(), shape.HeadDim);
                results.Add(new SelfTestResult(kernels.Name, "kv-write", Describe(seqs), c, c.MaxAbsError == 0, writeTime));
            }

            sw.Restart();
            kernels.Attend(plan, dQueries.View, cache.Layer, dOut.View);
            accelerator.Synchronize();
            var attendTime = sw.Elapsed;
            var output = dOut.GetAsArray1D();
            var error = AttentionReference.Compare(output, expected, shape.HeadDim);
            string kernel = materialized ? $"{label}-mat"
                : label != "decode" || set is not { DecodeOnTensorCores: true } ? label
                : ((AttentionPlan)plan).DecodeLayout is null ? "decode-tc" : "decode-tc-lb";
            results.Add(new SelfTestResult(kernels.Name, kernel, Describe(seqs), error, error.Within(Tolerance), attendTime));
        }
        return results;
    }

    private static float[] RandomFloats(Random rng, long n)
    {
        var a = new float[n];
        for (long i = 0; i < n; i++) a[i] = (float)(rng.NextDouble() * 2 - 1);
        return a;
    }

    private static byte[] ReadBytes(ArrayView<byte> view)
    {
        var bytes = new byte[view.Length];
        view.CopyToCPU(bytes);
        return bytes;
    }
}
