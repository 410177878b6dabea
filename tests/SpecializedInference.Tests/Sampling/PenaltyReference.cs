using SpecializedInference.Sampling;
using SpecializedInference.Tests.Scheduling;

namespace SpecializedInference.Tests.Sampling;

/// <summary>
/// The logit bias and the penalties written out from their definitions, in double, with nothing shared with
/// <see cref="AdjustedTokenSampler"/>: the bias added, then Hugging Face's RepetitionPenaltyLogitsProcessor over the
/// prompt and the output, then vLLM's <c>logits -= frequency * count + presence * (count > 0)</c> over the output.
/// </summary>
internal static class PenaltyReference
{
    public static double[] Apply(ReadOnlySpan<float> logits, IReadOnlyList<int> prompt, IReadOnlyList<int> output, LogitPenalties penalties,
        IReadOnlyDictionary<int, float>? bias = null)
    {
        var result = new double[logits.Length];
        for (int v = 0; v < logits.Length; v++)
            result[v] = logits[v] + (bias is not null && bias.TryGetValue(v, out float b) ? b : 0);
        foreach (int token in prompt.Concat(output).Distinct())
            result[token] = result[token] > 0 ? result[token] / penalties.Repetition : result[token] * penalties.Repetition;
        foreach (var group in output.GroupBy(t => t))
            result[group.Key] -= penalties.Frequency * group.Count() + penalties.Presence;
        return result;
    }

    /// <summary>Greedy decoding of the <see cref="FakeModelRunner"/> model with penalties, run alone.</summary>
    public static List<int> Greedy(IReadOnlyList<int> prompt, int maxNewTokens, int vocabSize, LogitPenalties penalties,
        IReadOnlyDictionary<int, float>? bias = null)
    {
        var output = new List<int>();
        while (output.Count < maxNewTokens)
        {
            var row = Apply(FakeModelRunner.Logits(prompt.Concat(output).ToArray(), vocabSize), prompt, output, penalties, bias);
            int best = 0;
            for (int v = 1; v < row.Length; v++)
                if (row[v] > row[best]) best = v;
            output.Add(best);
        }
        return output;
    }

    /// <summary>log_softmax of a row, from the probabilities' definition; a NaN logit is an impossible token.</summary>
    public static double[] LogSoftmax(ReadOnlySpan<float> logits)
    {
        double max = double.NegativeInfinity;
        foreach (float x in logits)
            if (!float.IsNaN(x)) max = Math.Max(max, x);
        double total = 0;
        foreach (float x in logits)
            if (!float.IsNaN(x)) total += Math.Exp(x - max);
        var result = new double[logits.Length];
        for (int v = 0; v < logits.Length; v++)
            result[v] = float.IsNaN(logits[v]) ? double.NegativeInfinity : Math.Log(Math.Exp(logits[v] - max) / total);
        return result;
    }
}
