using SpecializedInference.Benchmarks.Infrastructure;

namespace SpecializedInference.Benchmarks.EndToEnd;

/// <summary>Runs random-weight models end to end through the engine.</summary>
public sealed class EndToEndBench(BenchDevice device, int seed)
{
    public EndToEndResult Run(EndToEndModel model, int batch, int promptTokens, int decodeTokens, EngineToggles toggles)
        => throw new NotSupportedException($"end-to-end runs need the model runner (model branch), not merged yet ({device.KindName}, seed {seed}).");

    public IEnumerable<AblationResult> Ablate(AblationPlan plan, Action<string> log)
    {
        var baseline = Run(plan.Model, plan.Batch, plan.PromptTokens, plan.DecodeTokens, EngineToggles.AllOn);
        foreach (var (name, toggles) in EngineToggles.EachOff)
        {
            log($"  {name} off");
            yield return new AblationResult(name, baseline, Run(plan.Model, plan.Batch, plan.PromptTokens, plan.DecodeTokens, toggles));
        }
    }
}
