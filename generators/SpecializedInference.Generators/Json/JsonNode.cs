using System.Collections.Generic;

namespace SpecializedInference.Generators.Json;

internal enum JsonKind { Object, Array, String, Number, True, False, Null }

/// <summary>
/// A parsed JSON value that remembers where it stood in the file (character offsets), so that every
/// config diagnostic can point at the exact line and column. Lives only inside the parser: pipeline
/// models never hold nodes.
/// </summary>
internal sealed class JsonNode
{
    public JsonNode(JsonKind kind, int start, int end)
    {
        Kind = kind;
        Start = start;
        End = end;
    }

    public JsonKind Kind { get; }
    public int Start { get; }
    public int End { get; set; }

    /// <summary>String contents (unescaped) or the raw number text.</summary>
    public string? Text { get; set; }

    /// <summary>Object members in file order; a member's key keeps its own position.</summary>
    public List<JsonMember>? Members { get; set; }

    public List<JsonNode>? Items { get; set; }

    public JsonMember? Find(string key)
    {
        if (Members is null) return null;
        foreach (var m in Members)
            if (m.Key == key) return m;
        return null;
    }

    public static string Describe(JsonKind kind) => kind switch
    {
        JsonKind.Object => "an object",
        JsonKind.Array => "an array",
        JsonKind.String => "a string",
        JsonKind.Number => "a number",
        JsonKind.True or JsonKind.False => "a boolean",
        _ => "null",
    };
}

internal sealed class JsonMember
{
    public JsonMember(string key, int keyStart, int keyEnd, JsonNode value)
    {
        Key = key;
        KeyStart = keyStart;
        KeyEnd = keyEnd;
        Value = value;
    }

    public string Key { get; }
    public int KeyStart { get; }
    public int KeyEnd { get; }
    public JsonNode Value { get; }
}
