using System.Numerics;

namespace SpecializedInference.Sampling;

/// <summary>One token and its log-probability.</summary>
public readonly record struct TokenLogprob(int TokenId, double Logprob);

/// <summary>
/// The log-probability of a generated token and of the most likely tokens at its position, under the model's own
/// distribution: <c>log_softmax</c> of the raw logits, before temperature, penalties, top-k and top-p (vLLM's default,
/// <c>raw_logprobs</c>). So they describe the model, and a greedy and a sampled request report the same numbers for the
/// same logits.
/// </summary>
/// <param name="Chosen">The generated token.</param>
/// <param name="Top">The most likely tokens, most likely first (ties: lower id first); as many as were asked for.</param>
public sealed record TokenLogprobs(TokenLogprob Chosen, IReadOnlyList<TokenLogprob> Top)
{
    /// <summary>The most top tokens a request may ask for (vLLM's default limit; OpenAI allows 20 for chat).</summary>
    public const int MaxTop = 20;

    /// <summary>A log-probability as JSON can carry it: JSON has no −∞, so an impossible token reports vLLM's floor, −9999.</summary>
    public static double ForJson(double logprob) => Math.Max(logprob, -9999.0);

    /// <summary>
    /// Log-probabilities of <paramref name="chosen"/> and of the <paramref name="top"/> largest logits, in double. NaN
    /// logits count as impossible (−∞), as the samplers pass over them.
    /// </summary>
    public static TokenLogprobs Compute(ReadOnlySpan<float> logits, int chosen, int top)
    {
        if ((uint)chosen >= (uint)logits.Length)
            throw new ArgumentOutOfRangeException(nameof(chosen), chosen, $"outside the {logits.Length} logits");
        if (top < 0 || top > MaxTop)
            throw new ArgumentOutOfRangeException(nameof(top), top, $"must be in [0, {MaxTop}]");

        // log Σ exp(x) = max + log Σ exp(x − max), in double so a 128K vocabulary loses nothing; both passes vectorized
        // (the scalar loops took ~1 ms a token at 128K).
        float max = logits[Sampler.ArgMax(logits)]; // NaN only when every logit is
        double sum = float.IsFinite(max) ? Sampler.SumOfExp(logits, max, 1.0) : 0;
        double logNormalizer = max + Math.Log(sum);
        double LogProb(float x) => float.IsNaN(x) || float.IsNegativeInfinity(x) ? double.NegativeInfinity : x - logNormalizer;

        // The top tokens: one pass keeping the best `top` in order (insertion into a short array); once it holds `top`,
        // a vector of logits none above the last kept is skipped whole.
        var best = new int[top];
        int kept = 0;
        float floor = float.NegativeInfinity; // the last kept logit once `top` are kept
        int width = Vector<float>.Count;
        for (int start = 0; start < logits.Length && top > 0; start += width)
        {
            int end = Math.Min(start + width, logits.Length);
            if (kept == top && end - start == width && !Vector.GreaterThanAny(new Vector<float>(logits.Slice(start)), new Vector<float>(floor)))
                continue;
            for (int id = start; id < end; id++)
            {
                float x = logits[id];
                if (float.IsNaN(x) || (kept == top && x <= floor))
                    continue;
                int at = kept < top ? kept++ : top - 1;
                while (at > 0 && logits[best[at - 1]] < x)
                {
                    best[at] = best[at - 1];
                    at--;
                }
                best[at] = id;
                if (kept == top) floor = logits[best[top - 1]];
            }
        }
        var topList = new TokenLogprob[kept];
        for (int i = 0; i < kept; i++)
            topList[i] = new TokenLogprob(best[i], LogProb(logits[best[i]]));
        return new TokenLogprobs(new TokenLogprob(chosen, LogProb(logits[chosen])), topList);
    }
}
