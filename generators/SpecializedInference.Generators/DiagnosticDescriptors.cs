using System.Collections.Generic;
using System.Linq;
using Microsoft.CodeAnalysis;

namespace SpecializedInference.Generators;

/// <summary>Every diagnostic the kernel generator reports. Ids are stable: users search for them.</summary>
internal static class DiagnosticDescriptors
{
    private const string Category = "SpecializedInference.Config";

    public static readonly DiagnosticDescriptor MalformedJson = new(
        "SI0001", "Malformed config JSON",
        "Config '{0}' is not valid JSON: {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor MissingField = new(
        "SI0002", "Missing config field",
        "Config '{0}': required field '{1}' is missing",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor WrongType = new(
        "SI0003", "Config field has the wrong type",
        "Config '{0}': field '{1}' must be {2}, found {3}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor HeadsNotDivisible = new(
        "SI0004", "Attention heads not a multiple of key/value heads",
        "Config '{0}': num_attention_heads ({1}) must be a multiple of num_key_value_heads ({2})",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor NonPositive = new(
        "SI0005", "Size must be positive",
        "Config '{0}': field '{1}' must be a positive integer, found {2}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor HeadDimNotSpecializable = new(
        "SI0006", "head_dim cannot be specialized",
        "Config '{0}': head_dim {1} cannot be specialized: {2}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor TileNotSpecializable = new(
        "SI0007", "Tile size cannot be specialized",
        "Config '{0}': {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor NotAnIdentifier = new(
        "SI0008", "Engine name is not a C# identifier",
        "Config '{0}': name \"{1}\" is not a C# identifier (letters, digits and '_', not starting with a digit)",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor DuplicateName = new(
        "SI0009", "Duplicate engine name",
        "Config '{0}': engine name \"{1}\" is already used by config '{2}'",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor BadEnumValue = new(
        "SI0010", "Unknown setting value",
        "Config '{0}': field '{1}' must be one of {2}, found \"{3}\"",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor UnknownEngineSetting = new(
        "SI0011", "Unknown engine setting",
        "Config '{0}': unknown engine setting '{1}' (known: {2})",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor InconsistentShape = new(
        "SI0012", "Inconsistent model shape",
        "Config '{0}': {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor UnsupportedArchitecture = new(
        "SI0013", "Unsupported architecture",
        "Config '{0}': {1}",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    public static readonly DiagnosticDescriptor InternalError = new(
        "SI0099", "Kernel generator failed",
        "The kernel generator failed on config '{0}': {1}. Please report this with the config.",
        Category, DiagnosticSeverity.Error, isEnabledByDefault: true);

    private static readonly Dictionary<string, DiagnosticDescriptor> s_byId = new[]
    {
        MalformedJson, MissingField, WrongType, HeadsNotDivisible, NonPositive, HeadDimNotSpecializable,
        TileNotSpecializable, NotAnIdentifier, DuplicateName, BadEnumValue, UnknownEngineSetting,
        InconsistentShape, UnsupportedArchitecture, InternalError,
    }.ToDictionary(d => d.Id);

    public static DiagnosticDescriptor ById(string id) => s_byId[id];
}
