using System.Text.Json;

namespace SpecializedInference.Model;

/// <summary>The parts of <c>generation_config.json</c> the engine uses: the end-of-sequence ids.</summary>
public sealed record GenerationConfig(IReadOnlyList<int> EosTokenIds, int? BosTokenId)
{
    public static readonly GenerationConfig Empty = new(Array.Empty<int>(), null);

    /// <summary>Reads <paramref name="path"/>, or returns <see cref="Empty"/> when the file does not exist.</summary>
    public static GenerationConfig LoadOrEmpty(string path)
    {
        if (!File.Exists(path)) return Empty;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{path}: not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{path}: expected a JSON object at the top level");
            var r = new LlamaConfig.FieldReader(doc.RootElement, path, "");
            return new GenerationConfig(LlamaConfig.ReadTokenIds(r, "eos_token_id"), r.OptionalInt("bos_token_id"));
        }
    }
}
