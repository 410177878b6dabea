using BenchmarkDotNet.Attributes;
using SpecializedInference.Engine;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;

namespace SpecializedInference.Benchmarks.Bdn;

/// <summary>
/// The host's share of a decode step that no device can hide: between two steps the engine thread samples every
/// sequence's token from its logits, checks stops and schedules the next batch, while the GPU waits. These run on
/// the CPU only (no accelerator): greedy argmax and sampled tokens over a vocabulary, and whole engine steps over a
/// model runner that returns its logits at once.
/// <code>DOTNET_TieredCompilation=0 dotnet run -c Release --project benchmarks/SpecializedInference.Benchmarks -- --filter '*HostStep*'</code>
/// (The CPU job makes one invocation per iteration, for kernel calls that take up to a second. Host code that short
/// would still run its first, unoptimized tier: <c>DOTNET_TieredCompilation=0</c> compiles it optimized from the start.)
/// </summary>
public abstract class HostStepBenchmarks
{
    protected float[] Logits { get; private set; } = [];

    /// <summary>TinyLlama / Llama 2 (32000) and Llama 3 (128256).</summary>
    [Params(32000, 128256)]
    public int Vocab { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        // Gaussian logits with a standard deviation of 3, about a trained model's spread: at T 0.8 the 0.9 nucleus is
        // 624 tokens of 32000 and 1251 of 128256 (uniform logits would make it most of the vocabulary).
        var rng = new Random(7);
        Logits = Enumerable.Range(0, Vocab)
            .Select(_ => (float)(3 * Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble())))
            .ToArray();
    }
}

/// <summary>One sequence's token from one row of logits (the engine does this for every sequence of a step).</summary>
public class HostStepSamplingBenchmarks : HostStepBenchmarks
{
    private const int Rows = 64;
    private const int SampledRows = 8;

    /// <summary>One greedy token: the argmax of a vocabulary of logits.</summary>
    [Benchmark(OperationsPerInvoke = Rows, Description = "greedy argmax of one row")]
    public int ArgMax()
    {
        int sum = 0;
        for (int i = 0; i < Rows; i++) sum += GreedyTokenSampler.Instance.Sample(Logits);
        return sum;
    }

    /// <summary>One sampled token at temperature 0.8 alone (the draw walks the vocabulary in id order).</summary>
    [Benchmark(OperationsPerInvoke = SampledRows, Description = "sample one row, T 0.8")]
    public int SampleTemperature() => Sample(new SamplingOptions(Temperature: 0.8f, Seed: 1));

    /// <summary>One sampled token, temperature 0.8 and top-k 50 (the k candidates kept in a heap and ranked).</summary>
    [Benchmark(OperationsPerInvoke = SampledRows, Description = "sample one row, T 0.8, top-k 50")]
    public int SampleTopK() => Sample(new SamplingOptions(Temperature: 0.8f, TopK: 50, Seed: 1));

    /// <summary>One sampled token, temperature 0.8 and top-p 0.9 (the tokens above a weight threshold ranked).</summary>
    [Benchmark(OperationsPerInvoke = SampledRows, Description = "sample one row, T 0.8, top-p 0.9")]
    public int SampleTopP() => Sample(new SamplingOptions(Temperature: 0.8f, TopP: 0.9f, Seed: 1));

    private int Sample(SamplingOptions options)
    {
        var sampler = new Sampler(options);
        int sum = 0;
        for (int i = 0; i < SampledRows; i++) sum += sampler.Sample(Logits);
        return sum;
    }

    /// <summary>A request's log-probabilities for one token: the chosen token's and the 5 most likely (OpenAI's logprobs 5).</summary>
    [Benchmark(OperationsPerInvoke = SampledRows, Description = "log-probabilities of one row, top 5")]
    public double Logprobs()
    {
        double sum = 0;
        for (int i = 0; i < SampledRows; i++) sum += TokenLogprobs.Compute(Logits, i, 5).Chosen.Logprob;
        return sum;
    }

    /// <summary>A greedy token with a frequency penalty and a logit bias: the row copied and adjusted, then its argmax.</summary>
    [Benchmark(OperationsPerInvoke = SampledRows, Description = "greedy with penalties and a bias, one row")]
    public int Adjusted()
    {
        var sampler = new AdjustedTokenSampler(GreedyTokenSampler.Instance,
            SamplingParams.ArgMax with { Penalties = new LogitPenalties(1.1, 0.5, 0.5), LogitBias = new Dictionary<int, float> { [7] = -100 } }, [1, 2, 3]);
        int sum = 0;
        for (int i = 0; i < SampledRows; i++) sum += sampler.Sample(Logits);
        return sum;
    }

    /// <summary>A sampled token with min_p 0.05 at T 0.8: the weights below 5% of the most likely zeroed, then drawn.</summary>
    [Benchmark(OperationsPerInvoke = SampledRows, Description = "sample one row, T 0.8, min-p 0.05")]
    public int MinP() => Sample(new SamplingOptions(Temperature: 0.8f, Seed: 1, MinP: 0.05));
}

/// <summary>Whole engine steps: scheduling, sampling every sequence, stop checks and bookkeeping.</summary>
public class HostStepEngineBenchmarks : HostStepBenchmarks
{
    private const int Tokens = 256;

    /// <summary>Sequences per step.</summary>
    [Params(1, 64)]
    public int Batch { get; set; }

    /// <summary>Whether the runner returns the greedy tokens (picked on the device, <see cref="IModelRunner.Run"/>)
    /// rather than the logits rows the engine takes the argmax of.</summary>
    [Params(false, true)]
    public bool TokensFromRunner { get; set; }

    /// <summary>
    /// Engine steps of <see cref="Batch"/> greedy requests decoding <see cref="Tokens"/> tokens each (the prompt step
    /// included, 1 of 257), over a runner that costs nothing: scheduling, sampling, stop checks and bookkeeping.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Tokens + 1, Description = "engine step, runner excluded")]
    public void EngineStep()
    {
        var runner = new InstantRunner(Logits, TokensFromRunner);
        var core = new EngineCore(runner, new EngineOptions { MaxBatchSize = Batch, MaxNumBatchedTokens = 8 * Batch + 512 });
        for (int r = 0; r < Batch; r++)
            core.Add(r, new GenerationRequest([1, 2, 3], Tokens) { IgnoreEos = true });
        while (core.HasWork) core.Step();
    }

    /// <summary>Returns the same logits row for every sequence that wants one, at once (or its argmax, for a greedy
    /// chunk, when it picks tokens).</summary>
    private sealed class InstantRunner(float[] logits, bool picksTokens) : IModelRunner
    {
        private readonly int _argMax = Sampler.ArgMax(logits);

        public int BlockSize => 16;

        public int NumBlocks => 64 * 1024;

        public int VocabSize => logits.Length;

        public int MaxSeqLen => 4096;

        public float[]?[] Execute(StepBatch batch)
        {
            var rows = new float[]?[batch.Chunks.Count];
            for (int i = 0; i < rows.Length; i++)
                if (batch.Chunks[i].WantLogits) rows[i] = logits;
            return rows;
        }

        public StepResult Run(StepBatch batch)
        {
            var rows = Execute(batch);
            if (!picksTokens) return new StepResult(rows);
            var tokens = new int[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                tokens[i] = batch.Chunks[i].GreedyToken ? _argMax : StepResult.NoToken;
                if (batch.Chunks[i].GreedyToken) rows[i] = null;
            }
            return new StepResult(rows, tokens);
        }

        public void Dispose()
        {
        }
    }
}
