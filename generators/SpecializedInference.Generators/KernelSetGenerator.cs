using System;
using System.Collections.Generic;
using System.Collections.Immutable;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;
using SpecializedInference.Generators.Emission;
using SpecializedInference.Generators.Models;
using SpecializedInference.Generators.Parsing;

namespace SpecializedInference.Generators;

/// <summary>
/// Reads every config JSON given as an AdditionalFile and emits, per config, a kernel set specialized for
/// its shape, plus one registry of all kernel sets.
/// </summary>
/// <remarks>
/// Pipeline: AdditionalFiles (*.json) → <see cref="ConfigParser"/> (one <see cref="ConfigParseResult"/> per
/// file, cached per file) → collect and drop duplicate names → one <see cref="KernelSetSpec"/> per kernel
/// set → <see cref="KernelSetEmitter"/>; the collected list also feeds <see cref="RegistryEmitter"/>. Every
/// model between steps is an equatable record, so editing one config re-emits only that config's files.
/// </remarks>
[Generator(LanguageNames.CSharp)]
public sealed class KernelSetGenerator : IIncrementalGenerator
{
    public void Initialize(IncrementalGeneratorInitializationContext context)
    {
        var generatedNamespace = context.AnalyzerConfigOptionsProvider
            .Select(static (options, _) =>
                options.GlobalOptions.TryGetValue("build_property.RootNamespace", out var root) && !string.IsNullOrWhiteSpace(root)
                    ? root + ".Generated"
                    : "SpecializedInference.Generated")
            .WithTrackingName(TrackingNames.Namespace);

        var parsed = context.AdditionalTextsProvider
            .Where(static file => file.Path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            .Combine(generatedNamespace)
            .Select(static (pair, ct) => ConfigParser.Parse(pair.Left.Path, pair.Left.GetText(ct), pair.Right))
            .WithTrackingName(TrackingNames.Parse);

        context.RegisterSourceOutput(parsed, static (spc, result) =>
        {
            foreach (var diagnostic in result.Diagnostics) spc.ReportDiagnostic(diagnostic.ToDiagnostic());
        });

        var resolved = parsed.Collect()
            .Combine(generatedNamespace)
            .Select(static (pair, _) => Resolve(pair.Left, pair.Right))
            .WithTrackingName(TrackingNames.Resolve);

        var kernelSets = resolved
            .SelectMany(static (r, _) => r.Specs)
            .WithTrackingName(TrackingNames.KernelSets);

        context.RegisterSourceOutput(kernelSets, static (spc, spec) =>
        {
            IReadOnlyList<GeneratedFile> files;
            try
            {
                files = KernelSetEmitter.Emit(spec);
            }
            catch (Exception ex)
            {
                spc.ReportDiagnostic(Diagnostic.Create(DiagnosticDescriptors.InternalError, Location.None, spec.ConfigFileName, ex.Message));
                return;
            }
            foreach (var file in files) spc.AddSource(file.HintName, SourceText.From(file.Source, System.Text.Encoding.UTF8));
        });

        context.RegisterSourceOutput(resolved, static (spc, r) =>
        {
            foreach (var diagnostic in r.Diagnostics) spc.ReportDiagnostic(diagnostic.ToDiagnostic());
            var entries = r.Specs.Select(s => new RegistryEntry(s.Name, s.Namespace)).ToList();
            spc.AddSource(RegistryEmitter.HintName, SourceText.From(RegistryEmitter.Emit(r.Namespace, entries), System.Text.Encoding.UTF8));
        });
    }

    /// <summary>Keeps the first config of each name (in file-path order) and reports the others.</summary>
    private static ResolvedConfigs Resolve(ImmutableArray<ConfigParseResult> results, string @namespace)
    {
        var specs = new List<KernelSetSpec>();
        var diagnostics = new List<DiagnosticInfo>();
        var byName = new Dictionary<string, KernelSetSpec>(StringComparer.Ordinal);
        foreach (var result in results.Where(r => r.Spec is not null).OrderBy(r => r.Spec!.ConfigFileName, StringComparer.Ordinal))
        {
            var spec = result.Spec!;
            if (byName.TryGetValue(spec.Name, out var first))
            {
                var at = result.NameLocation!;
                diagnostics.Add(at with { MessageArgs = new[] { spec.ConfigFileName, spec.Name, first.ConfigFileName }.ToEquatableArray() });
                continue;
            }
            byName.Add(spec.Name, spec);
            specs.Add(spec);
        }
        specs.Sort((a, b) => StringComparer.Ordinal.Compare(a.Name, b.Name));
        return new ResolvedConfigs(@namespace, specs.ToEquatableArray(), diagnostics.ToEquatableArray());
    }
}

/// <summary>The kernel sets to emit, once duplicates are dropped.</summary>
internal sealed record ResolvedConfigs(string Namespace, EquatableArray<KernelSetSpec> Specs, EquatableArray<DiagnosticInfo> Diagnostics);

/// <summary>Names of the tracked pipeline steps, for the caching tests.</summary>
internal static class TrackingNames
{
    public const string Namespace = nameof(Namespace);
    public const string Parse = nameof(Parse);
    public const string Resolve = nameof(Resolve);
    public const string KernelSets = nameof(KernelSets);
}
