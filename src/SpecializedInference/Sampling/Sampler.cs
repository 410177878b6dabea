using System.Numerics;

namespace SpecializedInference.Sampling;

/// <summary>How the next token is chosen from the logits.</summary>
/// <param name="Temperature">Divides the logits; 0 means greedy (argmax).</param>
/// <param name="TopK">Keep only the k most likely tokens; 0 keeps all.</param>
/// <param name="TopP">Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.</param>
/// <param name="Seed">Seed of the sampler's random stream; null draws one (the run is then not reproducible).</param>
public sealed record SamplingOptions(float Temperature = 0f, int TopK = 0, float TopP = 1f, ulong? Seed = null)
{
    public static SamplingOptions Greedy { get; } = new();

    public bool IsGreedy => Temperature == 0f;

    /// <summary>Throws on values that have no meaning.</summary>
    public void Validate()
    {
        if (!(Temperature >= 0) || float.IsInfinity(Temperature))
            throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "temperature must be a finite number >= 0 (0 = greedy)");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "top-k must be >= 0 (0 = off)");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "top-p must be in (0, 1]");
    }
}

/// <summary>
/// Chooses tokens from logits: greedy argmax, or temperature → top-k → top-p (the order Hugging Face applies
/// them) and a draw from the renormalized distribution. The random stream is SplitMix64, so a seed gives the
/// same tokens on every platform and .NET version.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private ulong _state;

    public Sampler(SamplingOptions options)
    {
        options.Validate();
        _options = options;
        Seed = options.Seed ?? (ulong)Random.Shared.NextInt64();
        _state = Seed;
    }

    /// <summary>The seed in use (drawn when the options gave none).</summary>
    public ulong Seed { get; }

    /// <summary>Index of the largest logit (the first, on ties, as torch.argmax); NaNs are passed over.</summary>
    /// <remarks>Vectorized: the largest non-NaN value, then its first index. It runs once per generated token over the
    /// whole vocabulary (128K logits for Llama 3, where the scalar loop cost ~100 µs a step).</remarks>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("no logits to choose from");
        var lowest = new Vector<float>(float.NegativeInfinity);
        var max = lowest;
        int i = 0;
        for (; i <= logits.Length - Vector<float>.Count; i += Vector<float>.Count)
        {
            var v = new Vector<float>(logits.Slice(i));
            max = Vector.Max(max, Vector.ConditionalSelect(Vector.Equals(v, v), v, lowest)); // NaN lanes count as -inf
        }
        float best = float.NegativeInfinity;
        for (int lane = 0; lane < Vector<float>.Count; lane++) best = MathF.Max(best, max[lane]);
        for (; i < logits.Length; i++)
            if (logits[i] > best) best = logits[i];
        int index = logits.IndexOf(best);
        return index >= 0 ? index : ArgMaxScalar(logits); // every logit NaN
    }

    private static int ArgMaxScalar(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best] || float.IsNaN(logits[best]))
                best = i;
        return best;
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_options.IsGreedy) return ArgMax(logits);

        // Candidates sorted by logit, descending (stable: lower id first on ties).
        var order = new int[logits.Length];
        for (int i = 0; i < order.Length; i++) order[i] = i;
        var values = logits.ToArray();
        Array.Sort(order, (a, b) => values[b].CompareTo(values[a]) is var c && c != 0 ? c : a.CompareTo(b));
        int keep = _options.TopK > 0 ? Math.Min(_options.TopK, order.Length) : order.Length;

        // Softmax of logits / T over the kept candidates, in double.
        double max = values[order[0]] / (double)_options.Temperature;
        var probs = new double[keep];
        double sum = 0;
        for (int i = 0; i < keep; i++)
        {
            probs[i] = Math.Exp(values[order[i]] / (double)_options.Temperature - max);
            sum += probs[i];
        }

        // Top-p: the shortest prefix whose mass reaches p (at least one token).
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            int cut = keep;
            for (int i = 0; i < keep; i++)
            {
                cumulative += probs[i] / sum;
                if (cumulative >= _options.TopP)
                {
                    cut = i + 1;
                    break;
                }
            }

            keep = cut;
            sum = 0;
            for (int i = 0; i < keep; i++) sum += probs[i];
        }

        double u = NextDouble() * sum;
        for (int i = 0; i < keep; i++)
        {
            u -= probs[i];
            if (u < 0) return order[i];
        }

        return order[keep - 1];
    }

    /// <summary>Uniform in [0, 1) from SplitMix64.</summary>
    private double NextDouble()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
