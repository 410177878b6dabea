namespace SpecializedInference.Sampling;

/// <summary>
/// Penalties against repeating tokens, applied to a request's logits before its sampler chooses, with the
/// definitions vLLM uses (and OpenAI documents):
/// <list type="bullet">
/// <item><b>repetition</b> (Hugging Face's <c>RepetitionPenaltyLogitsProcessor</c>): a token that appears in the prompt or
/// the output so far has its logit divided by the penalty when positive and multiplied by it when negative; 1 = off.</item>
/// <item><b>frequency</b>: minus the penalty times the number of times the token was generated so far; 0 = off.</item>
/// <item><b>presence</b>: minus the penalty once if the token was generated at all; 0 = off.</item>
/// </list>
/// Frequency and presence count generated tokens only; repetition counts the prompt too.
/// </summary>
/// <param name="Repetition">In (0, ∞); above 1 discourages repeats, below 1 encourages them.</param>
/// <param name="Frequency">In [−2, 2], OpenAI's range.</param>
/// <param name="Presence">In [−2, 2], OpenAI's range.</param>
public sealed record LogitPenalties(double Repetition = 1, double Frequency = 0, double Presence = 0)
{
    public static LogitPenalties None { get; } = new();

    public bool IsNone => Repetition == 1 && Frequency == 0 && Presence == 0;

    /// <summary>The first value outside its range: its OpenAI/vLLM field name and what it must be; null when all are valid.</summary>
    public (string Field, string Expected)? FindProblem() =>
        !(Repetition > 0) || double.IsInfinity(Repetition) ? ("repetition_penalty", "a finite number above 0 (1 = off)")
        : !(Frequency >= -2 && Frequency <= 2) ? ("frequency_penalty", "between -2 and 2 (0 = off)")
        : !(Presence >= -2 && Presence <= 2) ? ("presence_penalty", "between -2 and 2 (0 = off)")
        : null;

    /// <summary>Throws <see cref="ArgumentException"/> naming the first value outside its range.</summary>
    public void Validate()
    {
        if (FindProblem() is var (field, expected))
            throw new ArgumentException($"{field} is {Value(field)}; it must be {expected}");
    }

    /// <summary>The value of a field <see cref="FindProblem"/> names.</summary>
    public double Value(string field) => field switch
    {
        "repetition_penalty" => Repetition,
        "frequency_penalty" => Frequency,
        "presence_penalty" => Presence,
        _ => throw new ArgumentOutOfRangeException(nameof(field), field, "not a penalty"),
    };
}
