using SpecializedInference.Engine;

namespace SpecializedInference.Sampling;

/// <summary>The engine's per-request samplers built on <see cref="Sampler"/>: greedy, or temperature → top-k → top-p with a seed.</summary>
public static class EngineSamplers
{
    /// <summary>
    /// Greedy requests get argmax; others a seeded <see cref="Sampler"/> of their own (so a seed gives the same
    /// tokens whatever the batching). Meaningless parameters throw <see cref="ArgumentException"/>, which the
    /// engine turns into a rejection naming the request.
    /// </summary>
    public static TokenSamplerFactory Factory { get; } = parameters => parameters.IsGreedy
        ? GreedyTokenSampler.Instance
        : new Sampler(new SamplingOptions((float)parameters.Temperature, parameters.TopK, (float)parameters.TopP, parameters.Seed, parameters.MinP));
}
