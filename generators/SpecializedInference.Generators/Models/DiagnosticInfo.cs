using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace SpecializedInference.Generators.Models;

/// <summary>
/// A diagnostic as plain data (no <see cref="Location"/>, which would defeat caching): the descriptor id,
/// the file, the span with its line/column, and the formatted message arguments.
/// </summary>
internal sealed record DiagnosticInfo(
    string DescriptorId,
    string FilePath,
    TextSpan Span,
    LinePositionSpan LineSpan,
    EquatableArray<string> MessageArgs)
{
    public Diagnostic ToDiagnostic()
    {
        var descriptor = DiagnosticDescriptors.ById(DescriptorId);
        var location = Location.Create(FilePath, Span, LineSpan);
        return Diagnostic.Create(descriptor, location, MessageArgs.Cast<object?>().ToArray());
    }
}
