using System.Diagnostics;
using ILGPU;
using ILGPU.Runtime;

namespace SpecializedInference.Kernels.Reference;

/// <summary>One timing: which kernels, what work, the device time per call and the rate it implies, and where the
/// kernels recorded them (<see cref="AttentionOptions.TimeDecodeStages"/>) the last call's decode stages.</summary>
public sealed record BenchmarkResult(string Kernels, string Work, double MicrosecondsPerCall, double GigabytesPerSecond, double TeraflopsPerSecond,
    DecodeStageSummary? Stages = null)
{
    public override string ToString()
        => $"{Kernels,-28} {Work,-44} {MicrosecondsPerCall,10:F1} us/call {GigabytesPerSecond,8:F0} GB/s {TeraflopsPerSecond,7:F2} TFLOP/s"
            + (Stages is null ? "" : Environment.NewLine + Stages);
}

/// <summary>
/// Times <see cref="IAttentionKernels.Attend"/> (decode and prefill) on random data: device time from stream
/// profiling markers when the context has profiling enabled, else wall time around a synchronize. Bandwidth
/// counts the K and V bytes the call must read; FLOPs count QKᵀ and P·V (causal half for prefill). The timed calls go
/// back to back, each launched by the host, or with <c>replay</c> captured once (a CUDA graph,
/// <see cref="Accelerators.CudaGraph"/>) and replayed as one launch: what a decode step replayed as a graph pays a call.
/// </summary>
public static class AttentionBenchmark
{
    public static BenchmarkResult Decode(IAttentionKernels kernels, AttentionShape shape, Accelerator accelerator, int batch, int context, int iterations,
        Func<Action, Accelerators.ICapturedLaunches>? replay = null)
    {
        var seqs = Enumerable.Repeat((Context: context, Query: 1), batch).ToArray();
        double bytes = 2.0 * batch * context * shape.NumKvHeads * shape.HeadDim * (kernels.Options.KvDtype == KvDtype.F16 ? 2 : 4);
        double flops = 4.0 * batch * context * shape.NumHeads * shape.HeadDim;
        return Time(kernels, shape, accelerator, seqs, iterations, $"decode b{batch} ctx {context}", bytes, flops, replay);
    }

    public static BenchmarkResult Prefill(IAttentionKernels kernels, AttentionShape shape, Accelerator accelerator, int batch, int tokens, int iterations)
    {
        var seqs = Enumerable.Repeat((Context: tokens, Query: tokens), batch).ToArray();
        double bytes = 2.0 * batch * tokens * shape.NumKvHeads * shape.HeadDim * (kernels.Options.KvDtype == KvDtype.F16 ? 2 : 4);
        double flops = 4.0 * batch * tokens * (tokens + 1) / 2.0 * shape.NumHeads * shape.HeadDim;
        return Time(kernels, shape, accelerator, seqs, iterations, $"prefill b{batch} x {tokens} tokens", bytes, flops);
    }

    private static BenchmarkResult Time(IAttentionKernels kernels, AttentionShape shape, Accelerator accelerator, (int Context, int Query)[] seqs,
        int iterations, string work, double bytes, double flops, Func<Action, Accelerators.ICapturedLaunches>? replay = null)
    {
        var rng = new Random(1);
        int blocksPerSeq = (seqs.Max(s => s.Context) + shape.BlockSize - 1) / shape.BlockSize;
        int numBlocks = blocksPerSeq * seqs.Length;
        var order = Enumerable.Range(0, numBlocks).OrderBy(_ => rng.Next()).ToArray();
        var tables = seqs.Select((s, i) => order.Skip(i * blocksPerSeq).Take(blocksPerSeq).ToArray()).ToArray();
        var slots = new List<int>();
        for (int s = 0; s < seqs.Length; s++)
            for (int p = seqs[s].Context - seqs[s].Query; p < seqs[s].Context; p++)
                slots.Add(tables[s][p / shape.BlockSize] * shape.BlockSize + p % shape.BlockSize);
        var batch = new AttentionBatch(seqs.Select(s => s.Query).ToArray(), seqs.Select(s => s.Context).ToArray(), tables, slots.ToArray());

        using var cache = PagedKvCacheBuffer.Allocate(accelerator, new PagedKvCacheLayout(numBlocks, shape.NumKvHeads, shape.BlockSize, shape.HeadDim, kernels.Options.KvDtype));
        // Small random values in the cache's dtype, a 4 MB pattern repeated over both buffers.
        int elementSize = kernels.Options.KvDtype == KvDtype.F16 ? 2 : 4;
        var pattern = new byte[(int)Math.Min(4 << 20, cache.Layout.BytesPerBuffer)];
        for (int i = 0; i + elementSize <= pattern.Length; i += elementSize)
        {
            float v = (float)(rng.NextDouble() - 0.5);
            if (elementSize == 2) BitConverter.TryWriteBytes(pattern.AsSpan(i), (System.Half)v);
            else BitConverter.TryWriteBytes(pattern.AsSpan(i), v);
        }
        for (long off = 0; off < cache.Layout.BytesPerBuffer; off += pattern.Length)
        {
            int n = (int)Math.Min(pattern.Length, cache.Layout.BytesPerBuffer - off);
            cache.Layer.Keys.SubView(off, n).CopyFromCPU(pattern.AsSpan(0, n).ToArray());
            cache.Layer.Values.SubView(off, n).CopyFromCPU(pattern.AsSpan(0, n).ToArray());
        }
        var queries = new float[(long)batch.NumTokens * shape.NumHeads * shape.HeadDim];
        for (int i = 0; i < queries.Length; i++) queries[i] = (float)(rng.NextDouble() - 0.5);
        using var dQueries = accelerator.Allocate1D(queries);
        using var dOut = accelerator.Allocate1D<float>(queries.Length);
        using var plan = kernels.Plan(batch);

        void Calls()
        {
            for (int i = 0; i < iterations; i++) kernels.Attend(plan, dQueries.View, cache.Layer, dOut.View);
        }

        for (int i = 0; i < 3; i++) kernels.Attend(plan, dQueries.View, cache.Layer, dOut.View);
        accelerator.Synchronize();
        using var graph = replay?.Invoke(Calls);
        Action timed = graph is null ? Calls : graph.Launch;
        if (graph is not null)
        {
            graph.Launch();   // the graph's first launch uploads it
            accelerator.Synchronize();
        }
        double seconds;
        try
        {
            using var start = accelerator.DefaultStream.AddProfilingMarker();
            timed();
            using var end = accelerator.DefaultStream.AddProfilingMarker();
            accelerator.Synchronize();
            seconds = end.MeasureFrom(start).TotalSeconds;
        }
        catch (NotSupportedException)
        {
            var sw = Stopwatch.StartNew();
            timed();
            accelerator.Synchronize();
            seconds = sw.Elapsed.TotalSeconds;
        }
        double perCall = seconds / iterations;
        string label = $"{kernels.Name} {kernels.Options.Algorithm.ToString().ToLowerInvariant()}/{kernels.Options.HeadMapping.ToString().ToLowerInvariant()}";
        var stages = plan is AttentionPlan planned ? DecodeStageSummary.From(planned.ReadStageTimes()) : null;
        return new BenchmarkResult(label, work + $" {kernels.Options.KvDtype.ToString().ToLowerInvariant()}" + (graph is null ? "" : $" (a graph of {iterations} calls)"), perCall * 1e6, bytes / perCall / 1e9, flops / perCall / 1e12,
            stages);
    }
}
