using Xunit.Sdk;

namespace SpecializedInference.Tests.Ordering;

/// <summary>The collection orderer: longest first by the summed <see cref="CiSecondsAttribute"/> of a collection's classes.</summary>
public sealed class LongestFirstCollectionOrdererTests
{
    private static readonly TestAssembly Assembly = new(Reflector.Wrap(typeof(LongestFirstCollectionOrderer).Assembly));

    private static TestCollection Named(string name) => new(Assembly, null, name);

    private static TestCollection PerClass<T>() => Named("Test collection for " + typeof(T).FullName);

    [Fact]
    public void StartsTheLongestFirstAndSumsANamedCollectionsClasses()
    {
        var unmarked = PerClass<LongestFirstCollectionOrdererTests>();
        var collections = new[]
        {
            unmarked,
            PerClass<Model.DenseKernelTests>(),
            Named("Console"),
            PerClass<Kernels.SpecializedKernelTests>(),
            PerClass<Model.HfReferenceTests>(),
        };

        var ordered = new LongestFirstCollectionOrderer().OrderTestCollections(collections).Select(c => c.DisplayName).ToArray();

        int Seconds<T>() => ((CiSecondsAttribute)Attribute.GetCustomAttribute(typeof(T), typeof(CiSecondsAttribute))!).Seconds;
        // "Console" holds four classes, two of them marked: its estimate is their sum.
        int console = Seconds<Benchmarks.BenchmarkSuiteSmokeTests>() + Seconds<Cli.BatchGenerationCliTests>();
        var expected = new (string Name, int Seconds)[]
        {
            (collections[1].DisplayName, Seconds<Model.DenseKernelTests>()),
            ("Console", console),
            (collections[3].DisplayName, Seconds<Kernels.SpecializedKernelTests>()),
            (collections[4].DisplayName, Seconds<Model.HfReferenceTests>()),
            (unmarked.DisplayName, 0),
        }.OrderByDescending(e => e.Seconds).ThenBy(e => e.Name, StringComparer.Ordinal).Select(e => e.Name);
        Assert.Equal(expected, ordered);
        Assert.Equal(unmarked.DisplayName, ordered[^1]);
        Assert.Equal(collections.Length, ordered.Distinct().Count());
    }
}
