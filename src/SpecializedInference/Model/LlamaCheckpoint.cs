using SpecializedInference.Model.Safetensors;

namespace SpecializedInference.Model;

/// <summary>A tensor the config implies: its Hugging Face name, its shape and where the shape comes from.</summary>
public sealed record ExpectedTensor(string Name, long[] Shape, string ShapeMeaning);

/// <summary>
/// A Hugging Face Llama checkpoint folder: <c>config.json</c>, optional <c>generation_config.json</c>, and
/// safetensors weights whose every expected tensor was checked for presence, dtype and shape on open.
/// </summary>
public sealed class LlamaCheckpoint : IDisposable
{
    public const string ConfigFileName = "config.json";
    public const string GenerationConfigFileName = "generation_config.json";

    public string Directory { get; }

    public LlamaConfig Config { get; }

    public GenerationConfig Generation { get; }

    public SafetensorsCheckpoint Weights { get; }

    /// <summary>End-of-sequence ids: generation_config.json's when it names any, else config.json's.</summary>
    public IReadOnlyList<int> EosTokenIds => Generation.EosTokenIds.Count > 0 ? Generation.EosTokenIds : Config.EosTokenIds;

    /// <summary>Whether the LM head reuses the embedding matrix (tied, or no <c>lm_head.weight</c> while tied).</summary>
    public bool UsesTiedEmbeddings => Config.TieWordEmbeddings;

    private LlamaCheckpoint(string directory, LlamaConfig config, GenerationConfig generation, SafetensorsCheckpoint weights)
    {
        Directory = directory;
        Config = config;
        Generation = generation;
        Weights = weights;
    }

    /// <summary>Opens and validates a checkpoint folder.</summary>
    /// <exception cref="CheckpointException">Something is missing or does not match the config.</exception>
    public static LlamaCheckpoint Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new CheckpointException($"{directory}: checkpoint folder does not exist");
        var configPath = Path.Combine(directory, ConfigFileName);
        if (!File.Exists(configPath))
            throw new CheckpointException($"{directory}: no {ConfigFileName} (a Hugging Face checkpoint folder is expected)");
        var config = LlamaConfig.Load(configPath);
        var generation = GenerationConfig.LoadOrEmpty(Path.Combine(directory, GenerationConfigFileName));
        var weights = SafetensorsCheckpoint.Open(directory);
        try
        {
            Validate(config, weights, configPath);
            return new LlamaCheckpoint(directory, config, generation, weights);
        }
        catch
        {
            weights.Dispose();
            throw;
        }
    }

    /// <summary>Every tensor the config implies, with Hugging Face names.</summary>
    public static IReadOnlyList<ExpectedTensor> ExpectedTensors(LlamaConfig c)
    {
        long h = c.HiddenSize;
        var list = new List<ExpectedTensor>
        {
            new("model.embed_tokens.weight", new[] { c.VocabSize, h }, "vocab_size, hidden_size"),
        };
        for (int i = 0; i < c.NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}.";
            list.Add(new(p + "input_layernorm.weight", new[] { h }, "hidden_size"));
            list.Add(new(p + "self_attn.q_proj.weight", new[] { c.QueryDim, h }, "num_attention_heads * head_dim, hidden_size"));
            list.Add(new(p + "self_attn.k_proj.weight", new[] { c.KeyValueDim, h }, "num_key_value_heads * head_dim, hidden_size"));
            list.Add(new(p + "self_attn.v_proj.weight", new[] { c.KeyValueDim, h }, "num_key_value_heads * head_dim, hidden_size"));
            list.Add(new(p + "self_attn.o_proj.weight", new[] { h, c.QueryDim }, "hidden_size, num_attention_heads * head_dim"));
            list.Add(new(p + "post_attention_layernorm.weight", new[] { h }, "hidden_size"));
            list.Add(new(p + "mlp.gate_proj.weight", new[] { c.IntermediateSize, h }, "intermediate_size, hidden_size"));
            list.Add(new(p + "mlp.up_proj.weight", new[] { c.IntermediateSize, h }, "intermediate_size, hidden_size"));
            list.Add(new(p + "mlp.down_proj.weight", new[] { h, c.IntermediateSize }, "hidden_size, intermediate_size"));
        }

        list.Add(new("model.norm.weight", new[] { h }, "hidden_size"));
        if (!c.TieWordEmbeddings)
            list.Add(new("lm_head.weight", new[] { c.VocabSize, h }, "vocab_size, hidden_size"));
        return list;
    }

    private static void Validate(LlamaConfig config, SafetensorsCheckpoint weights, string configPath)
    {
        var errors = new List<string>();
        var files = string.Join(", ", weights.Files);
        foreach (var expected in ExpectedTensors(config))
        {
            if (!weights.TryGet(expected.Name, out var t))
            {
                var hint = expected.Name == "lm_head.weight" ? " (config.json has tie_word_embeddings false, so the LM head must be stored)" : "";
                errors.Add($"{files}: tensor '{expected.Name}' is missing; {configPath} implies shape {TensorEntry.FormatShape(expected.Shape)}{hint}");
                continue;
            }

            if (!t.Dtype.IsFloatWeight())
                errors.Add($"{t.File}: tensor '{t.Name}' has dtype {t.Dtype.Name()}; expected F32, F16 or BF16");
            if (!t.Shape.SequenceEqual(expected.Shape))
                errors.Add($"{t.File}: tensor '{t.Name}' has shape {t.ShapeText}; {configPath} implies {TensorEntry.FormatShape(expected.Shape)} ({expected.ShapeMeaning})");
        }

        if (errors.Count == 0) return;
        const int shown = 8;
        var message = string.Join(Environment.NewLine, errors.Take(shown));
        if (errors.Count > shown) message += $"{Environment.NewLine}(and {errors.Count - shown} more problems)";
        throw new CheckpointException(message);
    }

    /// <summary>A validated tensor by name (the embedding when the LM head is tied).</summary>
    public TensorEntry Tensor(string name)
    {
        if (name == "lm_head.weight" && Config.TieWordEmbeddings) name = "model.embed_tokens.weight";
        return Weights.TryGet(name, out var t) ? t : throw new CheckpointException($"tensor '{name}' is not in {string.Join(", ", Weights.Files)}");
    }

    public void Dispose() => Weights.Dispose();
}
