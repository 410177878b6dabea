using SpecializedInference.Model;

namespace SpecializedInference.Tests.Model;

/// <summary>Hugging Face config.json parsing: both rope_theta forms, rope scaling types, EOS forms, errors.</summary>
public sealed class ConfigTests
{
    private const string Base = """
        "hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        "intermediate_size": 96, "vocab_size": 100, "max_position_embeddings": 256
        """;

    [Fact]
    public void TopLevelRopeThetaAndDefaults()
    {
        var c = LlamaConfig.Parse($$"""{ {{Base}}, "rope_theta": 500000.0, "eos_token_id": [128001, 128009] }""", "config.json");
        Assert.Equal(500000.0, c.RopeTheta);
        Assert.Equal(16, c.HeadDim); // hidden / heads when head_dim is absent
        Assert.Equal(1e-6, c.RmsNormEps);
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(new[] { 128001, 128009 }, c.EosTokenIds);
        Assert.IsType<RopeScaling.Default>(c.RopeScaling);
    }

    [Fact]
    public void RopeParametersFormOfTransformers5()
    {
        var c = LlamaConfig.Load(Path.Combine(TestPaths.HfCase("gqa-tiny"), "config.json"));
        Assert.Equal(10000.0, c.RopeTheta);
        Assert.Equal((8, 2, 16), (c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim));
        Assert.Equal(new[] { 2 }, c.EosTokenIds);
    }

    [Fact]
    public void ProjectConfigFormReadsTheModelObject()
    {
        var c = LlamaConfig.Load(TestPaths.Config("medium.json"));
        Assert.Equal((4096, 32, 8, 128, 32), (c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.NumHiddenLayers));
        Assert.Equal(500000.0, c.RopeTheta);
    }

    [Fact]
    public void Llama3ScalingMatchesTheFormula()
    {
        var c = LlamaConfig.Parse($$"""
            { {{Base}}, "rope_theta": 500000.0,
              "rope_scaling": { "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                "original_max_position_embeddings": 8192 } }
            """, "config.json");
        var l = Assert.IsType<RopeScaling.Llama3>(c.RopeScaling);
        Assert.Equal(8.0, l.Factor);
        var scaled = c.RopeInverseFrequencies();
        var plain = (c with { RopeScaling = RopeScaling.Default.Instance }).RopeInverseFrequencies();
        // Independent float64 evaluation of Meta's apply_scaling.
        for (int i = 0; i < plain.Length; i++)
        {
            double f = plain[i];
            double wavelen = 2 * Math.PI / f;
            double expected = wavelen < 8192 / 4.0 ? f
                : wavelen > 8192 / 1.0 ? f / 8
                : (1 - (8192 / wavelen - 1) / 3) * f / 8 + (8192 / wavelen - 1) / 3 * f;
            Assert.Equal(expected, scaled[i], 1e-6 * Math.Max(1, expected));
        }

        Assert.Equal(plain[0], scaled[0]);          // the highest frequency is kept
        Assert.Equal(plain[^1] / 8, scaled[^1], 1e-12); // the lowest is divided by the factor
    }

    [Fact]
    public void RopeParametersWithLlama3AndThetaInside()
    {
        var c = LlamaConfig.Parse($$"""
            { {{Base}}, "rope_parameters": { "rope_theta": 500000.0, "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192 } }
            """, "config.json");
        Assert.Equal(500000.0, c.RopeTheta);
        Assert.Equal(32.0, Assert.IsType<RopeScaling.Llama3>(c.RopeScaling).Factor);
    }

    [Theory]
    [InlineData("rope_scaling", "\"type\": \"yarn\", \"factor\": 4.0", "rope_scaling.type: 'yarn' is not supported")]
    [InlineData("rope_parameters", "\"rope_type\": \"dynamic\", \"factor\": 2.0", "rope_parameters.rope_type: 'dynamic' is not supported")]
    public void UnsupportedRopeTypeNamesFileAndField(string field, string body, string message)
    {
        var e = Assert.Throws<CheckpointException>(() => LlamaConfig.Parse($$"""{ {{Base}}, "{{field}}": { {{body}} } }""", "/models/x/config.json"));
        Assert.Contains("/models/x/config.json", e.Message);
        Assert.Contains(message, e.Message);
    }

    [Theory]
    [InlineData("\"num_key_value_heads\": 3", "num_key_value_heads")]
    [InlineData("\"hidden_act\": \"gelu\"", "hidden_act")]
    [InlineData("\"model_type\": \"gpt2\"", "model_type")]
    [InlineData("\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0}", "low_freq_factor: required field is missing")]
    public void BadFieldsAreNamed(string extra, string expected)
    {
        var json = $$"""{ {{Base.Replace("\"num_key_value_heads\": 2", extra.StartsWith("\"num_key_value_heads") ? extra : "\"num_key_value_heads\": 2")}}{{(extra.StartsWith("\"num_key_value_heads") ? "" : ", " + extra)}} }""";
        var e = Assert.Throws<CheckpointException>(() => LlamaConfig.Parse(json, "config.json"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void MissingRequiredFieldIsNamed()
    {
        var e = Assert.Throws<CheckpointException>(() => LlamaConfig.Parse("""{ "hidden_size": 64 }""", "config.json"));
        Assert.Contains("config.json: num_attention_heads: required field is missing", e.Message);
    }

    [Fact]
    public void GenerationConfigEosIntOrList()
    {
        var dir = Directory.CreateTempSubdirectory("si-genconfig-").FullName;
        try
        {
            var path = Path.Combine(dir, "generation_config.json");
            File.WriteAllText(path, """{ "eos_token_id": 7 }""");
            Assert.Equal(new[] { 7 }, GenerationConfig.LoadOrEmpty(path).EosTokenIds);
            File.WriteAllText(path, """{ "eos_token_id": [7, 9] }""");
            Assert.Equal(new[] { 7, 9 }, GenerationConfig.LoadOrEmpty(path).EosTokenIds);
            File.WriteAllText(path, """{ "eos_token_id": "x" }""");
            Assert.Contains("eos_token_id", Assert.Throws<CheckpointException>(() => GenerationConfig.LoadOrEmpty(path)).Message);
            Assert.Empty(GenerationConfig.LoadOrEmpty(Path.Combine(dir, "absent.json")).EosTokenIds);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
