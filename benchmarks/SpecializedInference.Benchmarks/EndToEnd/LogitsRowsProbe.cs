using System.Diagnostics;
using SpecializedInference.Accelerators;
using SpecializedInference.Model;
using SpecializedInference.Runtime;

namespace SpecializedInference.Benchmarks.EndToEnd;

/// <summary>
/// <c>logits-rows</c>: the model runner's host phases at batch 64 on Llama 3's 128256-token vocabulary, for sampled
/// requests (their logits rows come back to the host), with the rows in fresh arrays every step
/// (<see cref="LlamaModelRunner.Execute"/>) and in the runner's reused ones (<see cref="LlamaModelRunner.Run"/>, what
/// the engine calls). A 1-layer, 64-wide random model on the CPU accelerator: its kernels are slow, but the
/// "finish" phase (the rows handed back after the copy) is host code, the same as on a GPU machine.
/// </summary>
public static class LogitsRowsProbe
{
    public static int Run(TextWriter output)
    {
        const int batch = 64, steps = 20, warmUp = 4;
        using var handle = AcceleratorFactory.CreateCpu();
        var config = new LlamaConfig(64, 2, 1, 32, 1, 128, 128256, 1e-5, 256, 10000, RopeScaling.Default.Instance, false, 1, [2]);
        using var runner = new LlamaModelRunner(handle.Accelerator, new RandomDeviceWeights(config, 1),
            ModelOptions.Default with { MaxSeqLen = 64, NumKvBlocks = 4 * batch, KvBlockSize = 16 });
        StepBatch Step(int position) => new(Enumerable.Range(0, batch)
            .Select(i => new SequenceChunk(i, [i + 3], position, [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3], WantLogits: true)).ToArray(), []);

        double ms = 1000.0 / Stopwatch.Frequency;
        var fresh = new List<StepTimes>();
        var reused = new List<StepTimes>();
        for (int position = 0; position < warmUp + 2 * steps; position++)
        {
            // Alternate, so both see the same machine load.
            bool useRun = position % 2 == 1;
            if (useRun) runner.Run(Step(position)); else runner.Execute(Step(position));
            if (position >= warmUp) (useRun ? reused : fresh).Add(runner.LastStepTimes);
        }

        output.WriteLine($"batch {batch}, vocab {config.VocabSize}, means of {steps} steps each (ms):");
        output.WriteLine("| rows | logits copy (waits for the device) | finish (rows handed back) |");
        output.WriteLine("|---|---:|---:|");
        foreach (var (name, times) in new[] { ("fresh every step (Execute)", fresh), ("reused (Run)", reused) })
            output.WriteLine($"| {name} | {times.Average(t => t.Logits) * ms:F2} | {times.Average(t => t.Finish) * ms:F2} |");
        return 0;
    }
}
