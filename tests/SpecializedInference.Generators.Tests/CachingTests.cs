using Microsoft.CodeAnalysis;

namespace SpecializedInference.Generators.Tests;

/// <summary>
/// The pipeline caches: a second run with nothing changed is all Cached/Unchanged, and editing one config
/// re-runs only that config's steps (the NetEscapades.EnumGenerators style of test).
/// </summary>
public class CachingTests
{
    private static readonly string[] s_trackedSteps =
    {
        TrackingNames.Parse, TrackingNames.Resolve, TrackingNames.KernelSets,
    };

    [Fact]
    public void SecondRunWithNoChangeIsCached()
    {
        var configs = new[] { "small.json", "medium.json", "gqa-tiny.json" }.Select(GeneratorHarness.RepoConfig).ToArray();
        var compilation = GeneratorHarness.EmptyCompilation();
        var driver = GeneratorHarness.CreateDriver(configs).RunGenerators(compilation);
        var first = driver.GetRunResult();

        driver = driver.RunGenerators(compilation.Clone());
        var second = driver.GetRunResult().Results.Single();

        Assert.Equal(first.GeneratedTrees.Length, driver.GetRunResult().GeneratedTrees.Length);
        foreach (var step in s_trackedSteps)
        {
            Assert.True(second.TrackedSteps.ContainsKey(step), $"step {step} is not tracked");
            foreach (var run in second.TrackedSteps[step])
                foreach (var (_, reason) in run.Outputs)
                    Assert.True(reason is IncrementalStepRunReason.Cached or IncrementalStepRunReason.Unchanged,
                        $"step {step} re-ran ({reason}) with nothing changed");
        }
        foreach (var (_, reason) in second.TrackedOutputSteps.SelectMany(s => s.Value).SelectMany(r => r.Outputs))
            Assert.Equal(IncrementalStepRunReason.Cached, reason);
    }

    [Fact]
    public void EditingOneConfigRerunsOnlyThatConfig()
    {
        var small = GeneratorHarness.RepoConfig("small.json");
        var medium = GeneratorHarness.RepoConfig("medium.json");
        var compilation = GeneratorHarness.EmptyCompilation();
        var driver = GeneratorHarness.CreateDriver(new[] { small, medium }).RunGenerators(compilation);

        string edited = small.GetText()!.ToString().Replace("\"kv_block_size\": 16", "\"kv_block_size\": 32");
        Assert.NotEqual(small.GetText()!.ToString(), edited);
        driver = driver.ReplaceAdditionalText(small, new InMemoryAdditionalText(small.Path, edited)).RunGenerators(compilation);
        var result = driver.GetRunResult().Results.Single();

        // Parse: the edited file re-parses (Modified); the other is Cached.
        var parseReasons = result.TrackedSteps[TrackingNames.Parse].SelectMany(r => r.Outputs).Select(o => o.Reason).ToList();
        Assert.Equal(1, parseReasons.Count(r => r == IncrementalStepRunReason.Modified));
        Assert.Equal(1, parseReasons.Count(r => r == IncrementalStepRunReason.Cached));

        // Kernel sets: TinyLlama's spec changed, Llama3_8B's did not.
        var sets = result.TrackedSteps[TrackingNames.KernelSets].SelectMany(r => r.Outputs).ToList();
        Assert.Contains(sets, o => o.Value is Models.KernelSetSpec { Name: "TinyLlama_1_1B" } && o.Reason == IncrementalStepRunReason.Modified);
        Assert.Contains(sets, o => o.Value is Models.KernelSetSpec { Name: "Llama3_8B" } && o.Reason == IncrementalStepRunReason.Unchanged);

        // The new kernel file name says the new block size; the other config's files are untouched.
        Assert.Contains(result.GeneratedSources, s => s.HintName == "TinyLlama_1_1B.KvCacheWrite.Hd64.Kv4.Bs32.g.cs");
        Assert.DoesNotContain(result.GeneratedSources, s => s.HintName.Contains("Bs16") && s.HintName.StartsWith("TinyLlama"));
    }
}
