using System.Collections.Immutable;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;

namespace SpecializedInference.Generators.Tests;

/// <summary>An AdditionalFile held in memory.</summary>
public sealed class InMemoryAdditionalText(string path, string text) : AdditionalText
{
    private readonly SourceText _text = SourceText.From(text);

    public override string Path { get; } = path;

    public override SourceText GetText(CancellationToken cancellationToken = default) => _text;
}

/// <summary>Runs <see cref="KernelSetGenerator"/> over configs the way the compiler does.</summary>
public static class GeneratorHarness
{
    public static CSharpCompilation EmptyCompilation() => CSharpCompilation.Create("KernelTests",
        references: new[] { MetadataReference.CreateFromFile(typeof(object).Assembly.Location) },
        options: new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary));

    public static GeneratorDriver CreateDriver(IEnumerable<AdditionalText> configs) => CSharpGeneratorDriver.Create(
        generators: new[] { new KernelSetGenerator().AsSourceGenerator() },
        additionalTexts: configs,
        driverOptions: new GeneratorDriverOptions(IncrementalGeneratorOutputKind.None, trackIncrementalGeneratorSteps: true));

    public static GeneratorRunResult Run(params (string Path, string Json)[] configs)
    {
        var driver = CreateDriver(configs.Select(c => new InMemoryAdditionalText(c.Path, c.Json)));
        driver = driver.RunGenerators(EmptyCompilation());
        return driver.GetRunResult().Results.Single();
    }

    public static AdditionalText RepoConfig(string fileName)
    {
        string path = System.IO.Path.Combine(Repository.Configs, fileName);
        return new InMemoryAdditionalText(path, File.ReadAllText(path));
    }

    public static ImmutableArray<Diagnostic> Diagnostics(params (string Path, string Json)[] configs) => Run(configs).Diagnostics;

    /// <summary>"SI0004 bad.json(5,30): message" — 1-based line and column, as the compiler prints them.</summary>
    public static string Format(Diagnostic d)
    {
        var span = d.Location.GetLineSpan();
        return $"{d.Id} {System.IO.Path.GetFileName(span.Path)}({span.StartLinePosition.Line + 1},{span.StartLinePosition.Character + 1}): {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}";
    }
}
