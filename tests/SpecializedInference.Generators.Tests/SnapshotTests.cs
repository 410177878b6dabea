namespace SpecializedInference.Generators.Tests;

/// <summary>The generated source of every config in configs/, compared with its accepted snapshot.</summary>
public class SnapshotTests
{
    public static TheoryData<string> ConfigFiles()
    {
        var data = new TheoryData<string>();
        foreach (var file in Directory.GetFiles(Repository.Configs, "*.json").OrderBy(f => f, StringComparer.Ordinal))
            data.Add(Path.GetFileName(file));
        return data;
    }

    [Theory]
    [MemberData(nameof(ConfigFiles))]
    public void GeneratedKernelSet(string configFile)
    {
        var driver = GeneratorHarness.CreateDriver(new[] { GeneratorHarness.RepoConfig(configFile) })
            .RunGenerators(GeneratorHarness.EmptyCompilation());
        var result = driver.GetRunResult().Results.Single();
        Assert.Empty(result.Diagnostics);
        Assert.Null(result.Exception);
        var files = result.GeneratedSources.Where(s => s.HintName != "KernelRegistry.g.cs").ToList();
        Assert.NotEmpty(files);
        // Check every file before failing, so one run writes every *.received.cs to review.
        var failures = new List<string>();
        foreach (var source in files)
        {
            try
            {
                Snapshot.Verify(source.SourceText.ToString(), nameof(SnapshotTests),
                    Path.GetFileNameWithoutExtension(configFile) + "." + source.HintName.Replace(".g.cs", ""));
            }
            catch (Xunit.Sdk.XunitException ex)
            {
                failures.Add(ex.Message);
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public void Registry()
    {
        var configs = Directory.GetFiles(Repository.Configs, "*.json").Select(f => GeneratorHarness.RepoConfig(Path.GetFileName(f)));
        var result = GeneratorHarness.CreateDriver(configs).RunGenerators(GeneratorHarness.EmptyCompilation()).GetRunResult().Results.Single();
        Assert.Empty(result.Diagnostics);
        var registry = result.GeneratedSources.Single(s => s.HintName == "KernelRegistry.g.cs");
        Snapshot.Verify(registry.SourceText.ToString(), nameof(SnapshotTests), "KernelRegistry");
    }
}
