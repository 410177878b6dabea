using SpecializedInference.Engine;

namespace SpecializedInference.Sampling;

/// <summary>
/// Wraps one request's sampler: copies each logits row, adds the request's logit bias, applies the
/// <see cref="LogitPenalties"/> of the tokens seen so far (vLLM's order: bias, then penalties), lets the inner sampler
/// choose, and counts the chosen token. The engine calls it once per generated token, in order (preemption does not
/// re-sample), so the counts are the request's output.
/// </summary>
public sealed class AdjustedTokenSampler : ITokenSampler
{
    private readonly ITokenSampler _inner;
    private readonly LogitPenalties _penalties;
    private readonly IReadOnlyDictionary<int, float> _bias;
    private readonly HashSet<int> _prompt;
    private readonly Dictionary<int, int> _generated = new();
    private float[] _scratch = Array.Empty<float>();

    /// <param name="bias">Added to the logits of its token ids (OpenAI's <c>logit_bias</c>; -100 all but bans a token).</param>
    public AdjustedTokenSampler(ITokenSampler inner, LogitPenalties penalties, IReadOnlyList<int> promptTokenIds, IReadOnlyDictionary<int, float>? bias = null)
    {
        _inner = inner ?? throw new ArgumentNullException(nameof(inner));
        _penalties = penalties ?? throw new ArgumentNullException(nameof(penalties));
        penalties.Validate();
        _bias = bias ?? new Dictionary<int, float>();
        foreach (var (token, value) in _bias)
            if (!float.IsFinite(value))
                throw new ArgumentException($"logit_bias of token {token} is {value}; it must be a finite number");
        _prompt = penalties.Repetition == 1 ? new HashSet<int>() : new HashSet<int>(promptTokenIds);
    }

    public int Sample(ReadOnlySpan<float> logits)
    {
        if (_scratch.Length != logits.Length)
            _scratch = new float[logits.Length];
        logits.CopyTo(_scratch);
        Apply(_scratch);
        int token = _inner.Sample(_scratch);
        _generated[token] = _generated.GetValueOrDefault(token) + 1;
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
    }

    private static float Repeat(float logit, double penalty) => (float)(logit > 0 ? logit / penalty : logit * penalty);
}
