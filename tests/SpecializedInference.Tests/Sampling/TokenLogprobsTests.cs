using SpecializedInference.Sampling;

namespace SpecializedInference.Tests.Sampling;

public sealed class TokenLogprobsTests
{
    [Fact]
    public void Logprobs_and_the_top_tokens_match_the_softmax_of_random_rows()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        for (int trial = 0; trial < 300; trial++)
        {
            int vocab = 1 + rng.Next(trial < 200 ? 40 : 2000);
            // Few distinct values, so ties are common; logits as large as a real model's; some NaN and -inf.
            var logits = Enumerable.Range(0, vocab).Select(_ => rng.Next(40) switch
            {
                0 => float.NaN,
                1 => float.NegativeInfinity,
                < 14 => rng.Next(4),
                _ => (float)(rng.NextDouble() * 60 - 30),
            }).ToArray();
            if (logits.All(x => !float.IsFinite(x))) logits[0] = 1;
            int chosen = rng.Next(vocab);
            int top = rng.Next(TokenLogprobs.MaxTop + 1);
            var result = TokenLogprobs.Compute(logits, chosen, top);
            var reference = PenaltyReference.LogSoftmax(logits);
            string where = $"seed {seed}, trial {trial}, vocab {vocab}, top {top}";

            Assert.Equal(chosen, result.Chosen.TokenId);
            Assert.True(Close(result.Chosen.Logprob, reference[chosen]), $"{where}: {result.Chosen.Logprob} vs {reference[chosen]}");
            // The top tokens: by logit, ties to the lower id (a stable sort of the ids), NaN never.
            var expected = Enumerable.Range(0, vocab).Where(v => !float.IsNaN(logits[v])).OrderByDescending(v => logits[v]).Take(top).ToArray();
            Assert.True(expected.SequenceEqual(result.Top.Select(t => t.TokenId)), $"{where}: [{string.Join(",", result.Top.Select(t => t.TokenId))}] vs [{string.Join(",", expected)}]");
            foreach (var t in result.Top)
                Assert.True(Close(t.Logprob, reference[t.TokenId]), where);
        }
    }

    private static bool Close(double actual, double expected) =>
        double.IsNegativeInfinity(expected) ? double.IsNegativeInfinity(actual) : Math.Abs(actual - expected) <= 1e-9 * Math.Max(1, -expected);

    [Fact]
    public void Impossible_tokens_are_minus_infinity_and_nans_are_never_on_top()
    {
        float[] logits = [float.NaN, float.NegativeInfinity, 2f, 2f, float.NaN];
        var result = TokenLogprobs.Compute(logits, chosen: 1, top: 5);
        Assert.Equal(double.NegativeInfinity, result.Chosen.Logprob);
        // The two 2s share the probability; -inf comes last; the NaNs are left out.
        Assert.Equal([2, 3, 1], result.Top.Select(t => t.TokenId));
        Assert.Equal(Math.Log(0.5), result.Top[0].Logprob, 12);
        Assert.Equal(Math.Log(0.5), result.Top[1].Logprob, 12);
        Assert.Equal(double.NegativeInfinity, TokenLogprobs.Compute(logits, chosen: 0, top: 0).Chosen.Logprob);
    }

    [Fact]
    public void Out_of_range_requests_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute([1f, 2f], chosen: 2, top: 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute([1f, 2f], chosen: 0, top: TokenLogprobs.MaxTop + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => TokenLogprobs.Compute([1f, 2f], chosen: 0, top: -1));
    }
}
