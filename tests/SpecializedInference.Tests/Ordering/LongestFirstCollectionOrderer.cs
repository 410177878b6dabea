using System.Reflection;
using Xunit.Abstractions;
using Xunit.Sdk;

[assembly: TestCollectionOrderer(
    "SpecializedInference.Tests.Ordering.LongestFirstCollectionOrderer", "SpecializedInference.Tests")]

namespace SpecializedInference.Tests.Ordering;

/// <summary>
/// About how many seconds a test class takes on CI's two cores (the CPU accelerator simulates every GPU thread with
/// an OS thread, so the kernel-running classes take minutes). It only orders the run: nothing is asserted on it.
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class CiSecondsAttribute(int seconds) : Attribute
{
    public int Seconds { get; } = seconds;
}

/// <summary>
/// Starts the test collections longest first (by the <see cref="CiSecondsAttribute"/> of their classes), so that
/// xunit's two parallel workers finish together instead of one running the slowest class alone at the end
/// (longest-processing-time-first scheduling). Unmarked collections follow in name order.
/// </summary>
public sealed class LongestFirstCollectionOrderer : ITestCollectionOrderer
{
    private const string PerClassPrefix = "Test collection for ";

    private static readonly Type[] TestTypes = typeof(LongestFirstCollectionOrderer).Assembly.GetTypes();

    public IEnumerable<ITestCollection> OrderTestCollections(IEnumerable<ITestCollection> testCollections) =>
        testCollections
            .OrderByDescending(Seconds)
            .ThenBy(c => c.DisplayName, StringComparer.Ordinal)
            .ToList();

    /// <summary>The summed estimate of the classes in <paramref name="collection"/>: its own class, or every class
    /// that names it in <see cref="CollectionAttribute"/>.</summary>
    private static int Seconds(ITestCollection collection)
    {
        var members = collection.DisplayName.StartsWith(PerClassPrefix, StringComparison.Ordinal)
            ? TestTypes.Where(t => t.FullName == collection.DisplayName[PerClassPrefix.Length..])
            : TestTypes.Where(t => CollectionName(t) == collection.DisplayName);
        return members.Sum(t => t.GetCustomAttribute<CiSecondsAttribute>()?.Seconds ?? 0);
    }

    private static string? CollectionName(Type type) =>
        type.GetCustomAttributesData()
            .FirstOrDefault(a => a.AttributeType == typeof(CollectionAttribute))?
            .ConstructorArguments.FirstOrDefault().Value as string;
}
