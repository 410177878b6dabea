using System.Text.Json;

namespace SpecializedInference.Text;

/// <summary>How an error message names a JSON value that is not what was expected ("got the number 42").</summary>
public static class JsonDescriptions
{
    public static string Describe(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => "a string",
        JsonValueKind.Number => $"the number {value.GetRawText()}",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Array => "an array",
        JsonValueKind.Object => "an object",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };
}
