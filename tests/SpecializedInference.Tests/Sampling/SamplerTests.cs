using SpecializedInference.Engine;
using SpecializedInference.Sampling;

namespace SpecializedInference.Tests.Sampling;

public sealed class SamplerTests
{
    private static readonly float[] Logits = { 0.1f, 2.0f, -1.0f, 1.9f, 0.5f, 2.0f };

    [Fact]
    public void GreedyIsTheFirstArgMax()
    {
        Assert.Equal(1, new Sampler(SamplingOptions.Greedy).Sample(Logits));
        Assert.Equal(1, Sampler.ArgMax(Logits));
    }

    [Fact]
    public void ArgMaxAgreesWithTheScalarLoopOnTiesNansAndInfinities()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        float[] special = [float.NaN, float.NegativeInfinity, float.PositiveInfinity, 0f, -0f, 3f];
        for (int trial = 0; trial < 2000; trial++)
        {
            int n = 1 + rng.Next(trial < 1000 ? 40 : 300);
            // Few distinct values, so ties are common; some trials all NaN or all -inf.
            var logits = Enumerable.Range(0, n).Select(_ => rng.Next(4) == 0 ? special[rng.Next(special.Length)] : rng.Next(5) - 2f).ToArray();
            if (trial % 97 == 0) Array.Fill(logits, float.NaN);
            if (trial % 89 == 0) Array.Fill(logits, float.NegativeInfinity);
            Assert.True(ScalarArgMax(logits) == Sampler.ArgMax(logits), $"seed {seed}, trial {trial}: [{string.Join(", ", logits)}]");
        }
    }

    /// <summary>The engine's greedy sampler over vocabulary-sized rows: the vectorized argmax's two accumulators and its
    /// scalar tail, with the largest value planted several times (the first wins) among NaNs and infinities.</summary>
    [Fact]
    public void GreedySamplerIsTheFirstArgMaxOfALongRow()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        foreach (int vocab in new[] { 32000, 32001, 128256, 17 })
            for (int trial = 0; trial < 20; trial++)
            {
                var logits = Enumerable.Range(0, vocab).Select(_ => (float)rng.NextDouble()).ToArray();
                for (int k = 0; k < 20; k++) logits[rng.Next(vocab)] = float.NaN;
                if (trial % 2 == 0) logits[rng.Next(vocab)] = float.NegativeInfinity;
                float top = trial % 5 == 0 ? float.PositiveInfinity : 2f;
                for (int k = 0; k < 1 + trial % 4; k++) logits[rng.Next(vocab)] = top;
                if (trial % 7 == 0) logits[^1] = top + 1; // the largest in the scalar tail
                Assert.True(ScalarArgMax(logits) == GreedyTokenSampler.Instance.Sample(logits), $"seed {seed}, vocab {vocab}, trial {trial}");
            }
        Assert.Throws<ArgumentException>(() => GreedyTokenSampler.Instance.Sample(Enumerable.Repeat(float.NaN, 40).ToArray()));
        Assert.Equal(3, GreedyTokenSampler.Instance.Sample([float.NaN, float.NegativeInfinity, float.NaN, 1f, float.NegativeInfinity]));
    }

    /// <summary>The candidates' order (and top-k's cut of it) against a sort by <see cref="float.CompareTo(float)"/>,
    /// descending, lower id first on ties: ±0, ±inf, NaN and many ties, so a seed keeps giving the same tokens.</summary>
    [Fact]
    public void RankedIsTheDescendingCompareToOrder()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        float[] special = [float.NaN, float.NegativeInfinity, float.PositiveInfinity, 0f, -0f, 3f, -3f, float.Epsilon, -float.Epsilon];
        for (int trial = 0; trial < 300; trial++)
        {
            int n = 1 + rng.Next(trial < 200 ? 60 : 3000);
            var logits = Enumerable.Range(0, n).Select(_ => rng.Next(3) == 0 ? special[rng.Next(special.Length)] : rng.Next(7) - 3f + (trial % 2) * (float)rng.NextDouble()).ToArray();
            var expected = Enumerable.Range(0, n).ToArray();
            Array.Sort(expected, (a, b) => logits[b].CompareTo(logits[a]) is var c && c != 0 ? c : a.CompareTo(b));
            int topK = rng.Next(4) switch { 0 => 0, 1 => 1, 2 => 1 + rng.Next(n), _ => n + rng.Next(3) };
            var ranked = Sampler.Ranked(logits, topK);
            Assert.True(expected.Take(topK > 0 ? Math.Min(topK, n) : n).SequenceEqual(ranked),
                $"seed {seed}, trial {trial}, top-k {topK}: [{string.Join(", ", logits)}]");
        }
    }

    /// <summary>Index of the largest logit, first on ties, a NaN never kept once something follows it.</summary>
    private static int ScalarArgMax(float[] logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
            if (logits[i] > logits[best] || float.IsNaN(logits[best]))
                best = i;
        return best;
    }

    [Fact]
    public void SameSeedSameTokensDifferentSeedDifferentStream()
    {
        var options = new SamplingOptions(Temperature: 1.5f, Seed: 42);
        var a = new Sampler(options);
        var b = new Sampler(options);
        var sa = Enumerable.Range(0, 200).Select(_ => a.Sample(Logits)).ToArray();
        var sb = Enumerable.Range(0, 200).Select(_ => b.Sample(Logits)).ToArray();
        Assert.Equal(sa, sb);
        var c = new Sampler(options with { Seed = 43 });
        Assert.NotEqual(sa, Enumerable.Range(0, 200).Select(_ => c.Sample(Logits)).ToArray());
    }

    /// <summary>
    /// Top-p without top-k (the threshold search over the vocabulary's weights) against a float64 reference nucleus:
    /// the shortest run of the most likely tokens, by logit then id, whose probability reaches p. Every draw must fall
    /// inside it, every token in it with at least 1% of its mass must be drawn (3000 draws), and NaN / -inf logits never
    /// are. Vocabulary sizes around the vector widths; many tied logits.
    /// </summary>
    [Theory]
    [InlineData(1000, 0.5f, 0.7f, 0f)]
    [InlineData(32001, 0.9f, 1.0f, 0f)]
    [InlineData(37, 0.99f, 2.0f, 0f)]
    [InlineData(4096, 0.3f, 0.05f, 0f)]
    [InlineData(1000, 0.99f, 1.0f, 8f)] // one token far ahead: the nucleus reaches hundreds of tokens each weighing e^-8 of it
    public void TopPDrawsExactlyTheNucleus(int vocab, float topP, float temperature, float spike)
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        var logits = Enumerable.Range(0, vocab).Select(_ => (float)Math.Round(rng.NextDouble() * (spike > 0 ? 2 : 12) - (spike > 0 ? 1 : 6), rng.Next(2) == 0 ? 1 : 4)).ToArray();
        if (spike > 0) logits[rng.Next(vocab)] = spike;
        logits[rng.Next(vocab)] = float.NaN;
        logits[rng.Next(vocab)] = float.NegativeInfinity;

        // Reference: softmax of logit / T in float64, tokens by logit descending then id, cut where the mass reaches p.
        double max = logits.Where(float.IsFinite).Max();
        var weight = logits.Select(v => float.IsFinite(v) ? Math.Exp((v - max) / temperature) : 0).ToArray();
        double total = weight.Sum();
        var ranked = Enumerable.Range(0, vocab).Where(i => weight[i] > 0)
            .OrderByDescending(i => logits[i]).ThenBy(i => i).ToArray();
        var nucleus = new HashSet<int>();
        double mass = 0;
        foreach (int i in ranked)
        {
            nucleus.Add(i);
            mass += weight[i];
            if (mass >= topP * total) break;
        }

        var sampler = new Sampler(new SamplingOptions(temperature, TopP: topP, Seed: (ulong)seed));
        var drawn = new HashSet<int>();
        for (int draw = 0; draw < 3000; draw++)
        {
            int token = sampler.Sample(logits);
            Assert.True(nucleus.Contains(token), $"seed {seed}: token {token} (logit {logits[token]}) is outside the nucleus of {nucleus.Count}");
            drawn.Add(token);
        }
        foreach (int i in nucleus.Where(i => weight[i] / mass >= 0.01))
            Assert.True(drawn.Contains(i), $"seed {seed}: nucleus token {i} ({weight[i] / mass:P1} of it) never drawn in 3000");

        // The nucleus's less likely half (by rank) must get its share of the draws, within 5 standard deviations: a
        // nucleus cut short, or one missing its low-weight tail, fails here even when no single token weighs 1%.
        var order = ranked.Where(nucleus.Contains).ToArray();
        var tail = order.Skip(order.Length / 2).ToHashSet();
        double share = tail.Sum(i => weight[i]) / mass;
        var check = new Sampler(new SamplingOptions(temperature, TopP: topP, Seed: (ulong)seed + 1));
        int hits = Enumerable.Range(0, 3000).Count(_ => tail.Contains(check.Sample(logits)));
        double sigma = Math.Sqrt(share * (1 - share) / 3000);
        Assert.True(Math.Abs(hits / 3000.0 - share) <= 5 * sigma + 1.0 / 3000,
            $"seed {seed}: the nucleus's lower half ({tail.Count} of {order.Length} tokens) holds {share:P2} of its mass but drew {hits / 3000.0:P2}");
    }

    [Fact]
    public void TopKOneAndTinyTopPAreGreedy()
    {
        var k1 = new Sampler(new SamplingOptions(Temperature: 5f, TopK: 1, Seed: 1));
        var p = new Sampler(new SamplingOptions(Temperature: 0.5f, TopP: 0.01f, Seed: 1));
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(1, k1.Sample(Logits));
            Assert.Equal(1, p.Sample(Logits));
        }
    }

    [Fact]
    public void TopKKeepsOnlyTheKLargest()
    {
        var s = new Sampler(new SamplingOptions(Temperature: 10f, TopK: 3, Seed: 9));
        var seen = Enumerable.Range(0, 500).Select(_ => s.Sample(Logits)).ToHashSet();
        Assert.Equal(new HashSet<int> { 1, 3, 5 }, seen);
    }

    [Fact]
    public void FrequenciesFollowTheSoftmax()
    {
        // Two tokens with logits log 3 and 0 at temperature 1: probabilities 3/4 and 1/4.
        float[] logits = { MathF.Log(3), 0f };
        var s = new Sampler(new SamplingOptions(Temperature: 1f, Seed: 2024));
        int n = 20000, first = Enumerable.Range(0, n).Count(_ => s.Sample(logits) == 0);
        Assert.InRange(first / (double)n, 0.74, 0.76);
    }

    [Theory]
    [InlineData(-1f, 0, 1f)]
    [InlineData(1f, -2, 1f)]
    [InlineData(1f, 0, 0f)]
    [InlineData(1f, 0, 1.5f)]
    public void NonsenseOptionsAreRejected(float temperature, int topK, float topP)
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Sampler(new SamplingOptions(temperature, topK, topP)));
    }

    /// <summary>min_p at temperature T: every draw is a token whose probability at T is at least min_p of the most likely
    /// one's (with and without top-k and top-p), and the tokens well above it are drawn.</summary>
    [Fact]
    public void Min_p_draws_only_tokens_within_its_fraction_of_the_most_likely()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        for (int trial = 0; trial < 60; trial++)
        {
            var logits = Enumerable.Range(0, 2 + rng.Next(60)).Select(_ => (float)(rng.NextDouble() * 6 - 3)).ToArray();
            double minP = 0.05 + 0.9 * rng.NextDouble(), temperature = 0.3 + rng.NextDouble() * 1.5;
            var options = new SamplingOptions((float)temperature, TopK: trial % 3 == 1 ? 5 : 0, TopP: trial % 3 == 2 ? 0.9f : 1f, Seed: (ulong)trial, MinP: minP);
            var sampler = new Sampler(options);
            // Probabilities relative to the most likely, at T, from their definition.
            var relative = logits.Select(x => Math.Exp((x - logits.Max()) / (double)options.Temperature)).ToArray();
            var drawn = Enumerable.Range(0, 1000).Select(_ => sampler.Sample(logits)).ToHashSet();
            Assert.All(drawn, t => Assert.True(relative[t] >= minP - 1e-6, $"seed {seed}, trial {trial}: token {t} at {relative[t]} of the best, min_p {minP}"));
            if (options.TopK == 0 && options.TopP == 1f)
                for (int v = 0; v < logits.Length; v++)
                    if (relative[v] >= 0.5 && relative[v] >= minP && relative.Count(r => r >= minP) <= 10) // drawn with p >= 5%: missing from 1000 draws ~1e-22
                        Assert.True(drawn.Contains(v), $"seed {seed}, trial {trial}: token {v} at {relative[v]} of the best never drawn");
        }
    }
}
