using System.Text.Json;
using SpecializedInference.Model.Safetensors;

namespace SpecializedInference.Model;

/// <summary>
/// Writes a valid Hugging Face checkpoint folder with random weights for a config's shape (config.json,
/// generation_config.json, model.safetensors), without any download: for benchmarks of real model sizes.
/// </summary>
public static class RandomCheckpoint
{
    /// <summary>Writes the checkpoint; returns the bytes of model.safetensors.</summary>
    /// <param name="std">Standard deviation of the projection and embedding weights (uniform distribution).</param>
    public static long Write(string directory, LlamaConfig config, SafetensorsDtype dtype, ulong seed = 0, double std = 0.02)
    {
        if (!dtype.IsFloatWeight()) throw new ArgumentException($"dtype {dtype.Name()}: expected F32, F16 or BF16");
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, LlamaCheckpoint.ConfigFileName), ToHuggingFaceJson(config, dtype));
        File.WriteAllText(Path.Combine(directory, LlamaCheckpoint.GenerationConfigFileName), JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["bos_token_id"] = config.BosTokenId,
            ["eos_token_id"] = config.EosTokenIds.Count == 1 ? config.EosTokenIds[0] : config.EosTokenIds,
        }, new JsonSerializerOptions { WriteIndented = true }));

        var tensors = LlamaCheckpoint.ExpectedTensors(config);
        var path = Path.Combine(directory, SafetensorsCheckpoint.SingleFileName);
        using (var writer = new SafetensorsWriter(path, tensors.Select(t => new SafetensorsWriter.Declaration(t.Name, dtype, t.Shape)).ToList(),
                   new Dictionary<string, string> { ["format"] = "pt", ["generator"] = $"SpecializedInference random checkpoint, seed {seed}" }))
        {
            ulong state = seed * 0x9E3779B97F4A7C15UL + 1;
            double amplitude = std * Math.Sqrt(3); // uniform [-a, a] has standard deviation a / sqrt(3)
            var piece = new float[1 << 20];
            foreach (var t in tensors)
            {
                bool norm = t.Shape.Length == 1;
                long remaining = t.Shape.Aggregate(1L, (a, b) => a * b);
                while (remaining > 0)
                {
                    int n = (int)Math.Min(piece.Length, remaining);
                    for (int i = 0; i < n; i++)
                    {
                        double u = Next(ref state) * 2 - 1;
                        piece[i] = norm ? (float)(1 + 0.1 * u) : (float)(amplitude * u);
                    }

                    writer.WriteFloats(piece.AsSpan(0, n));
                    remaining -= n;
                }
            }
        }

        return new FileInfo(path).Length;
    }

    /// <summary>The config as a Hugging Face <c>config.json</c> (transformers 4 form: top-level rope_theta).</summary>
    public static string ToHuggingFaceJson(LlamaConfig c, SafetensorsDtype dtype = SafetensorsDtype.F16)
    {
        var json = new Dictionary<string, object?>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" },
            ["model_type"] = "llama",
            ["hidden_act"] = "silu",
            ["hidden_size"] = c.HiddenSize,
            ["intermediate_size"] = c.IntermediateSize,
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["head_dim"] = c.HeadDim,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["vocab_size"] = c.VocabSize,
            ["rms_norm_eps"] = c.RmsNormEps,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["rope_theta"] = c.RopeTheta,
            ["tie_word_embeddings"] = c.TieWordEmbeddings,
            ["attention_bias"] = false,
            ["mlp_bias"] = false,
            ["bos_token_id"] = c.BosTokenId,
            ["eos_token_id"] = c.EosTokenIds.Count == 1 ? c.EosTokenIds[0] : c.EosTokenIds,
            ["torch_dtype"] = dtype switch { SafetensorsDtype.F32 => "float32", SafetensorsDtype.BF16 => "bfloat16", _ => "float16" },
        };
        if (c.RopeScaling is RopeScaling.Llama3 l)
            json["rope_scaling"] = new Dictionary<string, object>
            {
                ["rope_type"] = "llama3",
                ["factor"] = l.Factor,
                ["low_freq_factor"] = l.LowFreqFactor,
                ["high_freq_factor"] = l.HighFreqFactor,
                ["original_max_position_embeddings"] = l.OriginalMaxPositionEmbeddings,
            };
        return JsonSerializer.Serialize(json, new JsonSerializerOptions { WriteIndented = true });
    }

    /// <summary>Uniform in [0, 1) (SplitMix64).</summary>
    private static double Next(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        return (z >> 11) * (1.0 / (1UL << 53));
    }
}
