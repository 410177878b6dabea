using SpecializedInference.Engine;

namespace SpecializedInference.Sampling;

/// <summary>
/// Wraps one request's sampler: copies each logits row and adjusts it as its <see cref="SamplingParams"/> say, in vLLM's
/// order: the logit bias, then the <see cref="LogitPenalties"/> of the tokens seen so far, then the end tokens held back
/// until <c>min_tokens</c>; lets the inner sampler choose (with its temperature, min_p, top-k and top-p), and
/// counts the chosen token. The engine calls it once per generated token, in order (preemption does not re-sample), so
/// the counts are the request's output.
/// </summary>
public sealed class AdjustedTokenSampler : ITokenSampler
{
    private readonly ITokenSampler _inner;
    private readonly LogitPenalties _penalties;
    private readonly IReadOnlyDictionary<int, float> _bias;
    private readonly HashSet<int> _prompt;
    private readonly int[] _endTokens;
    private readonly int _minTokens;
    private readonly Dictionary<int, int> _generated = new();
    private int _count;
    private float[] _scratch = Array.Empty<float>();

    /// <param name="sampling">The request's logit bias, penalties and min_tokens.</param>
    /// <param name="endTokens">The tokens that would end the request (end-of-sequence and stop tokens), held back until
    /// <see cref="SamplingParams.MinTokens"/> tokens are generated.</param>
    public AdjustedTokenSampler(ITokenSampler inner, SamplingParams sampling, IReadOnlyList<int> promptTokenIds, IEnumerable<int>? endTokens = null)
    {
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        ArgumentNullException.ThrowIfNull(sampling);
        _penalties = sampling.Penalties;
        _penalties.Validate();
        _bias = sampling.LogitBias ?? new Dictionary<int, float>();
        foreach (var (token, value) in _bias)
            if (!float.IsFinite(value))
                throw new ArgumentException($"logit_bias of token {token} is {value}; it must be a finite number");
        if (sampling.MinTokens < 0)
            throw new ArgumentException($"min_tokens is {sampling.MinTokens}; it must be at least 0");
        _prompt = _penalties.Repetition == 1 ? new HashSet<int>() : new HashSet<int>(promptTokenIds);
        _endTokens = endTokens?.Distinct().ToArray() ?? [];
        _minTokens = sampling.MinTokens;
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_scratch.Length != logits.Length)
            _scratch = new float[logits.Length];
        logits.CopyTo(_scratch);
        Apply(_scratch);
        int token = _inner.Sample(_scratch);
        _generated[token] = _generated.GetValueOrDefault(token) + 1;
        _count++;
        return token;
    }

    // Only the biased tokens and those seen so far change, so this costs O(their number), not O(vocabulary).
    private void Apply(float[] logits)
    {
        foreach (var (token, value) in _bias)
            if ((uint)token < (uint)logits.Length)
                logits[token] += value;
        double repetition = _penalties.Repetition;
        if (repetition != 1)
        {
            foreach (int token in _prompt)
                if ((uint)token < (uint)logits.Length && !_generated.ContainsKey(token))
                    logits[token] = Repeat(logits[token], repetition);
        }
        foreach (var (token, count) in _generated)
        {
            if ((uint)token >= (uint)logits.Length)
                continue;
            double value = repetition == 1 ? logits[token] : Repeat(logits[token], repetition);
            value -= _penalties.Frequency * count + _penalties.Presence;
            logits[token] = (float)value;
        }
        if (_count < _minTokens)
            foreach (int token in _endTokens)
                if ((uint)token < (uint)logits.Length)
                    logits[token] = float.NegativeInfinity;
    }

    private static float Repeat(float logit, double penalty) => (float)(logit > 0 ? logit / penalty : logit * penalty);
}
