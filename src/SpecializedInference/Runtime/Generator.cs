using System.Diagnostics;
using SpecializedInference.Sampling;

namespace SpecializedInference.Runtime;

/// <summary>How one request is generated.</summary>
/// <param name="MaxNewTokens">Stop after this many generated tokens.</param>
/// <param name="Sampling">Greedy, or temperature / top-k / top-p with a seed.</param>
/// <param name="IgnoreEos">Keep going past end-of-sequence tokens.</param>
/// <param name="PrefillChunkTokens">Longest prefill chunk; a longer prompt is prefilled in several steps.</param>
/// <param name="RecordLogits">Keep the full logits each generated token was chosen from (before penalties).</param>
/// <param name="Penalties">Repetition, frequency and presence penalties, applied before the choice; null = none.</param>
/// <param name="MinTokens">End-of-sequence tokens are held back until this many tokens are generated.</param>
public sealed record GenerationOptions(
    int MaxNewTokens = 16,
    SamplingOptions? Sampling = null,
    bool IgnoreEos = false,
    int PrefillChunkTokens = 512,
    bool RecordLogits = false,
    LogitPenalties? Penalties = null,
    int MinTokens = 0)
{
    public SamplingOptions EffectiveSampling => Sampling ?? SamplingOptions.Greedy;
}

public enum StopReason
{
    /// <summary>Generated <see cref="GenerationOptions.MaxNewTokens"/> tokens.</summary>
    MaxNewTokens,

    /// <summary>Generated an end-of-sequence token (included in the output).</summary>
    EndOfSequence,

    /// <summary>Reached the runner's maximum sequence length.</summary>
    MaxSequenceLength,
}

/// <summary>The generated tokens of one request, with timings.</summary>
/// <param name="Tokens">Generated ids (the prompt excluded).</param>
/// <param name="StepLogits">For each generated token, the logits it was chosen from (when recorded).</param>
/// <param name="PrefillMs">Wall time of the prefill steps (the first generated token's logits included).</param>
/// <param name="DecodeMs">Wall time of the decode steps.</param>
/// <param name="DecodeSteps">Decode steps run (one token each).</param>
/// <param name="FirstDecodeMs">Wall time of the first decode step, part of <paramref name="DecodeMs"/>: it compiles the
/// kernels the prefill did not launch (the decode attention, the argmax), hundreds of milliseconds on a GPU.</param>
public sealed record GenerationResult(
    int[] Tokens,
    float[][]? StepLogits,
    StopReason StopReason,
    double PrefillMs,
    double DecodeMs,
    int DecodeSteps,
    ulong Seed,
    double FirstDecodeMs = 0)
{
    /// <summary>Decode tokens per second over the steps after the first (which compiles kernels), or over the one step
    /// there was.</summary>
    public double DecodeTokensPerSecond => DecodeSteps > 1 && DecodeMs > FirstDecodeMs
        ? (DecodeSteps - 1) / ((DecodeMs - FirstDecodeMs) / 1000.0)
        : DecodeSteps == 0 || DecodeMs <= 0 ? 0 : DecodeSteps / (DecodeMs / 1000.0);
}

/// <summary>
/// Generates for one request on a model runner: the whole prompt in one prefill pass (chunked when longer than
/// the chunk budget), then one decode step per token, reusing the KV cache. The request owns the runner's cache:
/// its blocks are 0, 1, 2, ... in order. The multi-request engine schedules the runner itself instead.
/// </summary>
public sealed class Generator
{
    private readonly IModelRunner _runner;
    private readonly HashSet<int> _eos;

    /// <param name="eosTokenIds">Tokens that end generation (from config.json / generation_config.json).</param>
    public Generator(IModelRunner runner, IEnumerable<int> eosTokenIds)
    {
        _runner = runner;
        _eos = eosTokenIds.ToHashSet();
    }

    public GenerationResult Generate(IReadOnlyList<int> prompt, GenerationOptions options, Action<int>? onToken = null)
    {
        if (prompt.Count == 0) throw new ArgumentException("the prompt needs at least one token");
        if (options.MaxNewTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), options.MaxNewTokens, "max new tokens must be at least 1");
        if (options.PrefillChunkTokens < 1) throw new ArgumentOutOfRangeException(nameof(options), options.PrefillChunkTokens, "prefill chunk must be at least 1 token");
        if (prompt.Count >= _runner.MaxSeqLen)
            throw new ArgumentException($"the prompt has {prompt.Count} tokens; the model runs at most {_runner.MaxSeqLen} positions");
        int capacity = _runner.NumBlocks * _runner.BlockSize;
        int longest = Math.Min(_runner.MaxSeqLen, prompt.Count + options.MaxNewTokens);
        if (longest > capacity)
            throw new ArgumentException($"prompt ({prompt.Count}) + max new tokens ({options.MaxNewTokens}) need {longest} KV slots; " +
                $"the cache has {_runner.NumBlocks} blocks of {_runner.BlockSize} = {capacity}");

        var sampler = new Sampler(options.EffectiveSampling);
        var adjustments = new Engine.SamplingParams { Penalties = options.Penalties ?? LogitPenalties.None, MinTokens = options.MinTokens };
        Engine.ITokenSampler choose = adjustments.AdjustsLogits
            ? new AdjustedTokenSampler(sampler, adjustments, prompt, options.IgnoreEos ? [] : _eos)
            : sampler;
        // A greedy token the runner may pick on the device, unless the logits are recorded or adjusted.
        bool greedyToken = options.EffectiveSampling.IsGreedy && !options.RecordLogits && !adjustments.AdjustsLogits;
        var blockTable = Enumerable.Range(0, (longest + _runner.BlockSize - 1) / _runner.BlockSize).ToArray();
        int[] BlocksFor(int contextLength) => blockTable[..((contextLength + _runner.BlockSize - 1) / _runner.BlockSize)];
        const long sequenceId = 0;

        // Prefill: the prompt in chunks; only the last chunk wants logits.
        var clock = Stopwatch.StartNew();
        StepResult? step = null;
        for (int start = 0; start < prompt.Count; start += options.PrefillChunkTokens)
        {
            int n = Math.Min(options.PrefillChunkTokens, prompt.Count - start);
            var ids = prompt.Skip(start).Take(n).ToArray();
            bool last = start + n == prompt.Count;
            var chunk = new SequenceChunk(sequenceId, ids, start, BlocksFor(start + n), WantLogits: last) { GreedyToken = last && greedyToken };
            step = _runner.Run(StepBatch.Of(chunk));
        }

        double prefillMs = clock.Elapsed.TotalMilliseconds;
        var tokens = new List<int>();
        var stepLogits = options.RecordLogits ? new List<float[]>() : null;
        var reason = StopReason.MaxNewTokens;
        int decodeSteps = 0;
        double firstDecodeMs = 0;
        clock.Restart();
        while (true)
        {
            int next = step!.TokenAt(0) ?? choose.Sample(step.Logits[0]);
            tokens.Add(next);
            stepLogits?.Add(step.Logits[0]!.ToArray()); // Run's rows are reused by its next call
            onToken?.Invoke(next);
            if (!options.IgnoreEos && _eos.Contains(next))
            {
                reason = StopReason.EndOfSequence;
                break;
            }

            if (tokens.Count >= options.MaxNewTokens) break;
            int position = prompt.Count + tokens.Count - 1;
            if (position + 1 > _runner.MaxSeqLen)
            {
                reason = StopReason.MaxSequenceLength;
                break;
            }

            var chunk = new SequenceChunk(sequenceId, new[] { next }, position, BlocksFor(position + 1), WantLogits: true) { GreedyToken = greedyToken };
            step = _runner.Run(StepBatch.Of(chunk));
            if (++decodeSteps == 1) firstDecodeMs = clock.Elapsed.TotalMilliseconds;
        }

        return new GenerationResult(tokens.ToArray(), stepLogits?.ToArray(), reason, prefillMs, clock.Elapsed.TotalMilliseconds, decodeSteps, sampler.Seed,
            firstDecodeMs);
    }
}
