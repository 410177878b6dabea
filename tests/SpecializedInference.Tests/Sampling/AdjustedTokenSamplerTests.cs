using SpecializedInference.Engine;
using SpecializedInference.Sampling;

namespace SpecializedInference.Tests.Sampling;

public sealed class AdjustedTokenSamplerTests
{
    /// <summary>Hands back the row it was given and the next scripted token.</summary>
    private sealed class RecordingSampler(int[] script) : ITokenSampler
    {
        private int _next;

        public float[] LastRow { get; private set; } = [];

        public int Sample(ReadOnlySpan<float> logits)
        {
            LastRow = logits.ToArray();
            return script[_next++];
        }
    }

    private static AdjustedTokenSampler Penalized(LogitPenalties penalties, int[] prompt) =>
        new(GreedyTokenSampler.Instance, SamplingParams.ArgMax with { Penalties = penalties }, prompt);

    private static AdjustedTokenSampler Biased(Dictionary<int, float> bias) =>
        new(GreedyTokenSampler.Instance, SamplingParams.ArgMax with { LogitBias = bias }, []);

    [Fact]
    public void Every_row_the_sampler_sees_is_the_reference_penalized_row()
    {
        int seed = Random.Shared.Next();
        var rng = new Random(seed);
        for (int trial = 0; trial < 40; trial++)
        {
            int vocab = 1 + rng.Next(60);
            var prompt = Enumerable.Range(0, 1 + rng.Next(12)).Select(_ => rng.Next(vocab)).ToArray(); // repeats included
            var script = Enumerable.Range(0, 8).Select(_ => rng.Next(vocab)).ToArray();
            var penalties = new LogitPenalties(0.25 + 2 * rng.NextDouble(), 4 * rng.NextDouble() - 2, 4 * rng.NextDouble() - 2);
            var bias = Enumerable.Range(0, rng.Next(4)).Select(_ => rng.Next(vocab)).Distinct().ToDictionary(t => t, _ => (float)(rng.NextDouble() * 200 - 100));
            var inner = new RecordingSampler(script);
            var sampler = new AdjustedTokenSampler(inner, new SamplingParams { Penalties = penalties, LogitBias = bias }, prompt);
            var output = new List<int>();
            foreach (int expected in script)
            {
                // Positive, negative and zero logits: the repetition penalty divides the first and multiplies the second.
                var logits = Enumerable.Range(0, vocab).Select(_ => rng.Next(5) == 0 ? 0f : (float)(rng.NextDouble() * 8 - 4)).ToArray();
                var untouched = (float[])logits.Clone();
                Assert.Equal(expected, sampler.Sample(logits));
                Assert.Equal(untouched, logits); // the caller's row is not modified
                var reference = PenaltyReference.Apply(logits, prompt, output, penalties, bias);
                for (int v = 0; v < vocab; v++)
                    Assert.True(Math.Abs(inner.LastRow[v] - reference[v]) <= 1e-5 * Math.Max(1, Math.Abs(reference[v])),
                        $"seed {seed}, trial {trial}, step {output.Count}, token {v}: {inner.LastRow[v]} vs {reference[v]} ({penalties}, bias {string.Join(",", bias)})");
                output.Add(expected);
            }
        }
    }

    [Fact]
    public void A_repetition_penalty_moves_greedy_off_a_repeated_token()
    {
        float[] logits = [1.0f, 3.0f, 2.0f, -1.0f];
        var greedy = Penalized(new LogitPenalties(Repetition: 2), [1, 3]);
        Assert.Equal(2, greedy.Sample(logits)); // 3 / 2 = 1.5 < 2; -1 * 2 = -2
        Assert.Equal(1, greedy.Sample(logits)); // 2 was generated: 2 / 2 = 1.0 < 1.5

        // A frequency penalty grows with each repeat: 3, then 3 - 1.5 < 2, then 3 - 1.5 = 1.5 > 2 - 1.5.
        var frequency = Penalized(new LogitPenalties(Frequency: 1.5), [1]);
        Assert.Equal([1, 2, 1], new[] { frequency.Sample([1f, 3f, 2f]), frequency.Sample([1f, 3f, 2f]), frequency.Sample([1f, 3f, 2f]) });
    }

    [Fact]
    public void Frequency_counts_each_generation_and_presence_counts_once()
    {
        float[] logits = [5f, 4f, 0f];
        var inner = new RecordingSampler([0, 0, 0, 1]);
        var sampler = new AdjustedTokenSampler(inner, new SamplingParams { Penalties = new LogitPenalties(Frequency: 0.5, Presence: 0.25) }, promptTokenIds: [2]);
        for (int i = 0; i < 4; i++) sampler.Sample(logits);
        // Before the 4th draw token 0 was generated three times: 5 - 3 * 0.5 - 0.25. The prompt's token 2 is not
        // counted by frequency or presence.
        Assert.Equal([3.25f, 4f, 0f], inner.LastRow);
    }

    [Fact]
    public void A_bias_of_minus_100_bans_a_token_and_plus_100_forces_it()
    {
        float[] logits = [1f, 3f, 2f];
        Assert.Equal(2, Biased(new Dictionary<int, float> { [1] = -100 }).Sample(logits));
        Assert.Equal(0, Biased(new Dictionary<int, float> { [0] = 100 }).Sample(logits));
        Assert.Throws<ArgumentException>(() => Biased(new Dictionary<int, float> { [0] = float.NaN }));
    }

    [Fact]
    public void Min_tokens_holds_the_end_tokens_back_until_enough_are_generated()
    {
        float[] logits = [0f, 5f, 4f, 1f]; // token 1 (EOS here) is the most likely, then 2 (a stop token)
        var sampler = new AdjustedTokenSampler(GreedyTokenSampler.Instance, SamplingParams.ArgMax with { MinTokens = 2 }, [], endTokens: [1, 2]);
        Assert.Equal([3, 3, 1], new[] { sampler.Sample(logits), sampler.Sample(logits), sampler.Sample(logits) });
    }

    [Theory]
    [InlineData(0.0, 0.0, 0.0, "repetition_penalty")]
    [InlineData(-1.0, 0.0, 0.0, "repetition_penalty")]
    [InlineData(double.PositiveInfinity, 0.0, 0.0, "repetition_penalty")]
    [InlineData(1.0, 2.5, 0.0, "frequency_penalty")]
    [InlineData(1.0, 0.0, -2.01, "presence_penalty")]
    [InlineData(1.0, double.NaN, 0.0, "frequency_penalty")]
    public void Values_outside_their_range_are_refused_by_name(double repetition, double frequency, double presence, string name)
    {
        var e = Assert.Throws<ArgumentException>(() => Penalized(new LogitPenalties(repetition, frequency, presence), [1]));
        Assert.StartsWith(name, e.Message);
    }
}
