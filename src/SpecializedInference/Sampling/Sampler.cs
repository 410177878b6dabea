using System.Numerics;

namespace SpecializedInference.Sampling;

/// <summary>How the next token is chosen from the logits.</summary>
/// <param name="Temperature">Divides the logits; 0 means greedy (argmax).</param>
/// <param name="TopK">Keep only the k most likely tokens; 0 keeps all.</param>
/// <param name="TopP">Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.</param>
/// <param name="Seed">Seed of the sampler's random stream; null draws one (the run is then not reproducible).</param>
/// <param name="MinP">Keep only the tokens at least this fraction as likely as the most likely one, at the temperature
/// and before top-k and top-p (vLLM's order); 0 keeps all.</param>
public sealed record SamplingOptions(float Temperature = 0f, int TopK = 0, float TopP = 1f, ulong? Seed = null, double MinP = 0)
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
        if (!(MinP >= 0 && MinP <= 1)) throw new ArgumentOutOfRangeException(nameof(MinP), MinP, "min-p must be in [0, 1] (0 = off)");
    }
}

/// <summary>
/// Chooses tokens from logits: greedy argmax, or temperature → top-k → top-p (the order Hugging Face applies
/// them) and a draw from the renormalized distribution. The random stream is SplitMix64, the same on every
/// platform and .NET version, so a seed gives the same tokens from the same logits (the weights are exponentials
/// computed in double; a different math library could move a draw that falls within rounding of a boundary).
/// </summary>
public sealed class Sampler : Engine.ITokenSampler
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
    /// <remarks>One vectorized pass: each lane keeps its largest value and the first index it was seen at (NaN never
    /// counts), then the lanes holding the overall largest give their smallest index; the tail is scalar. It runs once per generated
    /// token over the whole vocabulary (128K logits for Llama 3, where a scalar loop costs ~100 µs a step; a max pass
    /// followed by <c>IndexOf</c> still cost ~25 µs at 32K, most of it in the scalar <c>IndexOf</c>).</remarks>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        if (logits.IsEmpty) throw new ArgumentException("no logits to choose from");
        // Two independent (max, index) accumulators over alternate vectors, so each compare-select waits for the one
        // two vectors back: the single chain ran at its latency, not at load throughput.
        int n = Vector<float>.Count;
        var maxA = new Vector<float>(float.NegativeInfinity);
        var maxB = maxA;
        var atA = new Vector<int>(-1);
        var atB = atA;
        var index = LaneIndices;
        var next = new Vector<int>(n);
        int i = 0;
        for (; i <= logits.Length - 2 * n; i += 2 * n)
        {
            var a = new Vector<float>(logits.Slice(i));
            var b = new Vector<float>(logits.Slice(i + n));
            var greaterA = Vector.GreaterThan(a, maxA); // false for NaN: a NaN never replaces anything
            var greaterB = Vector.GreaterThan(b, maxB);
            maxA = Vector.ConditionalSelect(greaterA, a, maxA);
            maxB = Vector.ConditionalSelect(greaterB, b, maxB);
            atA = Vector.ConditionalSelect(greaterA, index, atA);
            atB = Vector.ConditionalSelect(greaterB, index + next, atB);
            index += next + next;
        }

        float best = float.NegativeInfinity;
        for (int lane = 0; lane < n; lane++) best = MathF.Max(best, MathF.Max(maxA[lane], maxB[lane]));
        int first = int.MaxValue;
        for (int lane = 0; lane < n; lane++)
        {
            if (maxA[lane] == best && atA[lane] >= 0) first = Math.Min(first, atA[lane]);
            if (maxB[lane] == best && atB[lane] >= 0) first = Math.Min(first, atB[lane]);
        }
        for (; i < logits.Length; i++)
            if (logits[i] > best)
            {
                best = logits[i];
                first = i;
            }
        // Nothing above -inf (every logit -inf or NaN): the first -inf, else the scalar rule for all NaN.
        if (first == int.MaxValue || float.IsNegativeInfinity(best))
        {
            int infinity = logits.IndexOf(float.NegativeInfinity);
            return infinity >= 0 ? infinity : ArgMaxScalar(logits);
        }
        return first;
    }

    /// <summary>0, 1, …, Vector&lt;int&gt;.Count − 1.</summary>
    private static readonly Vector<int> LaneIndices = new(Enumerable.Range(0, Vector<int>.Count).ToArray());

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
        if (_options.TopK > 0) return SampleRanked(logits, Ranked(logits, _options.TopK));
        return SampleVocabulary(logits);
    }

    /// <summary>Top-k: softmax of logits / T over the k candidates (ranked), in double, then top-p among them and the draw.</summary>
    private int SampleRanked(ReadOnlySpan<float> values, int[] order)
    {
        double max = values[order[0]] / (double)_options.Temperature;
        var probs = new double[order.Length];
        double sum = 0;
        for (int i = 0; i < order.Length; i++)
        {
            probs[i] = Math.Exp(values[order[i]] / (double)_options.Temperature - max);
            if (probs[i] < _options.MinP) probs[i] = 0; // relative to the most likely token's 1
            sum += probs[i];
        }
        return DrawNucleus(order, probs, sum);
    }

    /// <summary>
    /// Top-p over ranked candidates, then the draw: the shortest prefix of <paramref name="ids"/> whose weights reach
    /// p of <paramref name="total"/> (at least one token; all of them at p = 1), and a token from that prefix in
    /// proportion to its weight. <paramref name="weights"/> go with <paramref name="ids"/> by position;
    /// <paramref name="total"/> is the whole distribution's mass (more than the candidates' own when they are only
    /// those above a threshold).
    /// </summary>
    private int DrawNucleus(ReadOnlySpan<int> ids, ReadOnlySpan<double> weights, double total)
    {
        int keep = ids.Length;
        if (_options.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < ids.Length; i++)
            {
                cumulative += weights[i] / total;
                if (cumulative >= _options.TopP)
                {
                    keep = i + 1;
                    break;
                }
            }
        }

        double kept = 0;
        for (int i = 0; i < keep; i++) kept += weights[i];
        double u = NextDouble() * kept;
        for (int i = 0; i < keep; i++)
        {
            u -= weights[i];
            if (u < 0) return ids[i];
        }

        return ids[keep - 1];
    }

    /// <summary>
    /// No top-k: the weights exp((logit − max) / T) of the whole vocabulary in one vectorized pass, in id order. With
    /// top-p below 1, the nucleus (the shortest run of the most likely tokens whose weight reaches p of the total) is
    /// found among the tokens above a weight threshold, lowered 16× at a time until they hold p of the total, so only
    /// those few are ranked; without top-p the draw walks the ids in order and nothing is ranked. (Ranking the whole
    /// vocabulary cost ~3.5 ms a token at 32K on the dev VM.)
    /// </summary>
    private int SampleVocabulary(ReadOnlySpan<float> logits)
    {
        int top = ArgMax(logits);
        float best = logits[top];
        // Every logit -inf or NaN, or some +inf: no finite distribution to draw from; the argmax is the answer.
        if (!float.IsFinite(best)) return top;
        if (_weights.Length != logits.Length) _weights = new double[logits.Length];
        var weights = _weights.AsSpan();
        double sum = Weights(logits, best, 1.0 / _options.Temperature, weights);
        if (_options.MinP > 0)
            sum = MassAtLeast(weights, _options.MinP, dropBelow: true);

        if (_options.TopP >= 1f)
        {
            double u = NextDouble() * sum;
            int last = top;
            for (int i = 0; i < weights.Length; i++)
            {
                if (weights[i] == 0) continue;
                u -= weights[i];
                last = i;
                if (u < 0) return i;
            }
            return last;
        }

        // The nucleus: its tokens all weigh at least the threshold once the tokens above it hold p of the total, so
        // only those are ranked.
        double target = _options.TopP * sum;
        double threshold = 1.0 / 256; // weights are relative to the most likely token's 1
        while (threshold > 1e-300 && MassAtLeast(weights, threshold) < target) threshold /= 16;
        var keys = new List<ulong>();
        for (int i = 0; i < weights.Length; i++)
            if (weights[i] >= threshold && weights[i] > 0)
                keys.Add(RankKey(logits[i], i));
        keys.Sort();
        var ids = new int[keys.Count];
        var ranked = new double[keys.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = (int)(uint)keys[i];
            ranked[i] = weights[ids[i]];
        }
        return DrawNucleus(ids, ranked, sum);
    }

    /// <summary>Per request, reused across its tokens: the vocabulary's weights.</summary>
    private double[] _weights = [];

    /// <summary>Σ exp((logits[i] − best) · inverseT) in double (NaN counts 0), vectorized: the normalizer of a
    /// log-softmax (<see cref="TokenLogprobs"/>).</summary>
    internal static double SumOfExp(ReadOnlySpan<float> logits, float best, double inverseT) => Weights(logits, best, inverseT, []);

    /// <summary>weights[i] = exp((logits[i] − best) · inverseT) in double (0 for NaN); returns their sum. An empty
    /// <paramref name="weights"/> keeps only the sum.</summary>
    private static double Weights(ReadOnlySpan<float> logits, float best, double inverseT, Span<double> weights)
    {
        bool store = !weights.IsEmpty;
        int n = Vector<float>.Count, half = Vector<double>.Count;
        var lowest = new Vector<float>(float.NegativeInfinity);
        var max = new Vector<double>(best);
        var scale = new Vector<double>(inverseT);
        var total = Vector<double>.Zero;
        int i = 0;
        for (; i <= logits.Length - n; i += n)
        {
            var v = new Vector<float>(logits.Slice(i));
            v = Vector.ConditionalSelect(Vector.Equals(v, v), v, lowest); // NaN weighs nothing
            Vector.Widen(v, out var lo, out var hi);
            lo = Vector.Exp((lo - max) * scale);
            hi = Vector.Exp((hi - max) * scale);
            if (store)
            {
                lo.CopyTo(weights.Slice(i));
                hi.CopyTo(weights.Slice(i + half));
            }
            total += lo + hi;
        }

        double sum = Vector.Sum(total);
        for (; i < logits.Length; i++)
        {
            double w = float.IsNaN(logits[i]) ? 0 : Math.Exp((logits[i] - (double)best) * inverseT);
            if (store) weights[i] = w;
            sum += w;
        }
        return sum;
    }

    /// <summary>The total of the weights at or above <paramref name="threshold"/>; with <paramref name="dropBelow"/> the
    /// others are zeroed too (min_p: the weights are relative to the most likely token's 1).</summary>
    private static double MassAtLeast(Span<double> weights, double threshold, bool dropBelow = false)
    {
        var limit = new Vector<double>(threshold);
        var total = Vector<double>.Zero;
        int i = 0;
        for (; i <= weights.Length - Vector<double>.Count; i += Vector<double>.Count)
        {
            var w = new Vector<double>(weights.Slice(i));
            w = Vector.ConditionalSelect(Vector.GreaterThanOrEqual(w, limit), w, Vector<double>.Zero);
            if (dropBelow) w.CopyTo(weights.Slice(i));
            total += w;
        }

        double sum = Vector.Sum(total);
        for (; i < weights.Length; i++)
        {
            if (weights[i] >= threshold) sum += weights[i];
            else if (dropBelow) weights[i] = 0;
        }
        return sum;
    }

    /// <summary>
    /// Token ids by logit, descending, lower id first on ties, in the order <see cref="float.CompareTo(float)"/> gives
    /// (NaN last, -0 with +0); with <paramref name="topK"/> &gt; 0 only the first k. Each candidate is one 64-bit key
    /// (rank of the value, then the id), so a primitive sort replaces a comparison delegate, and top-k keeps the k
    /// smallest keys in a heap before sorting those alone: a 128K vocabulary took ~10 ms a token through the delegate.
    /// </summary>
    internal static int[] Ranked(ReadOnlySpan<float> logits, int topK)
    {
        ulong[] keys;
        if (topK > 0 && topK < logits.Length)
        {
            // The k smallest keys: a max-heap of k (PriorityQueue is a min-heap, so by ~key).
            var heap = new PriorityQueue<ulong, ulong>(topK);
            for (int i = 0; i < logits.Length; i++)
            {
                ulong key = RankKey(logits[i], i);
                if (heap.Count < topK) heap.Enqueue(key, ~key);
                else if (key < heap.Peek()) heap.DequeueEnqueue(key, ~key);
            }
            keys = new ulong[heap.Count];
            for (int i = 0; heap.TryDequeue(out var key, out _); i++) keys[i] = key;
        }
        else
        {
            keys = new ulong[logits.Length];
            for (int i = 0; i < keys.Length; i++) keys[i] = RankKey(logits[i], i);
        }

        Array.Sort(keys);
        var order = new int[keys.Length];
        for (int i = 0; i < order.Length; i++) order[i] = (int)(uint)keys[i];
        return order;
    }

    /// <summary>A key that sorts ascending as (logit descending, id ascending).</summary>
    private static ulong RankKey(float value, int id)
    {
        uint rank; // ascending with the value
        if (float.IsNaN(value))
        {
            rank = 0; // below -inf (0x007FFFFF)
        }
        else
        {
            uint bits = BitConverter.SingleToUInt32Bits(value == 0 ? 0f : value); // -0 ranks with +0
            rank = (bits & 0x8000_0000u) != 0 ? ~bits : bits | 0x8000_0000u;
        }
        return ((ulong)~rank << 32) | (uint)id;
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
