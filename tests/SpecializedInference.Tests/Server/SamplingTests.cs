using SpecializedInference.Engine;
using SpecializedInference.Sampling;
using SpecializedInference.Tests.Scheduling;
using static SpecializedInference.Tests.Server.ServerHarness;

namespace SpecializedInference.Tests.Server;

/// <summary>temperature / top_k / top_p / seed reach the engine's samplers (<see cref="EngineSamplers"/>).</summary>
public sealed class SamplingTests
{
    [Fact]
    public async Task SeededSamplingIsReproducibleStreamedOrNotAndTopK1IsGreedy()
    {
        await using var h = await ServerHarness.StartAsync(samplers: EngineSamplers.Factory, vocabSize: 64);
        int[] prompt = [9, 8, 7, 6];
        string body = $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 20, "temperature": 1.5, "top_p": 0.95, "seed": 42""";

        var first = TokensOf((await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0]);
        var again = TokensOf((await h.PostOkAsync("v1/completions", body + "}")).GetProperty("choices")[0]);
        var streamed = (await h.PostStreamAsync("v1/completions", body + """, "stream": true}"""))
            .SelectMany(e => TokensOf(e.GetProperty("choices")[0])).ToArray();
        var direct = await h.Engine.GenerateAsync(new GenerationRequest(prompt, 20)
        {
            Sampling = new SamplingParams { Temperature = 1.5, TopP = 0.95, Seed = 42 },
        });
        Assert.Equal(first, again);
        Assert.Equal(first, streamed);
        Assert.Equal(first, direct.Tokens);
        Assert.NotEqual(FakeModelRunner.GreedyReference(prompt, 20, h.VocabSize), first); // 20 draws at temperature 1.5 over 64 tokens

        var topK1 = TokensOf((await h.PostOkAsync("v1/completions",
            $$"""{"prompt": {{Ids(prompt)}}, "max_tokens": 20, "temperature": 1.5, "top_k": 1, "seed": 7}""")).GetProperty("choices")[0]);
        Assert.Equal(FakeModelRunner.GreedyReference(prompt, 20, h.VocabSize), topK1);
    }
}
