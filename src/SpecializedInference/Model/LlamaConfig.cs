using System.Text.Json;

namespace SpecializedInference.Model;

/// <summary>How rotary frequencies are scaled (the <c>rope_type</c> of <c>rope_scaling</c> / <c>rope_parameters</c>).</summary>
public abstract record RopeScaling
{
    private RopeScaling() { }

    /// <summary>Plain RoPE: <c>inv_freq[i] = theta^(-2i/head_dim)</c>.</summary>
    public sealed record Default : RopeScaling
    {
        public static readonly Default Instance = new();
    }

    /// <summary>Llama 3.1's frequency scaling: long wavelengths divided by <paramref name="Factor"/>, short ones kept,
    /// the band between interpolated.</summary>
    public sealed record Llama3(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings)
        : RopeScaling;
}

/// <summary>Precision of the rotary inverse frequencies.</summary>
public enum RopeFrequencyPrecision
{
    /// <summary>float32, as Hugging Face computes them at load (and as vLLM does).</summary>
    Float32,

    /// <summary>Rounded to bfloat16: a Hugging Face model cast in memory with <c>.to(torch.bfloat16)</c>.</summary>
    BFloat16,
}

/// <summary>
/// The Llama architecture fields of a Hugging Face <c>config.json</c> (or the <c>model</c> object of this
/// project's own config form), with Hugging Face's defaults for fields that are absent.
/// </summary>
public sealed record LlamaConfig(
    int HiddenSize,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    int HeadDim,
    int NumHiddenLayers,
    int IntermediateSize,
    int VocabSize,
    double RmsNormEps,
    int MaxPositionEmbeddings,
    double RopeTheta,
    RopeScaling RopeScaling,
    bool TieWordEmbeddings,
    int? BosTokenId,
    IReadOnlyList<int> EosTokenIds)
{
    public int GroupSize => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Width of the query projection: <c>num_attention_heads * head_dim</c>.</summary>
    public int QueryDim => NumAttentionHeads * HeadDim;

    /// <summary>Width of the key (and value) projection: <c>num_key_value_heads * head_dim</c>.</summary>
    public int KeyValueDim => NumKeyValueHeads * HeadDim;

    /// <summary>Reads <c>config.json</c> of a checkpoint folder.</summary>
    public static LlamaConfig Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException($"{path}: cannot read the model config: {e.Message}", e);
        }

        return Parse(text, path);
    }

    /// <summary>Parses a Hugging Face config (or the project's <c>{"name", "model", "engine"}</c> form).</summary>
    /// <param name="json">The JSON text.</param>
    /// <param name="file">The file name used in error messages.</param>
    public static LlamaConfig Parse(string json, string file)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new CheckpointException($"{file}: not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new CheckpointException($"{file}: expected a JSON object at the top level, found {root.ValueKind}");

            // The project's own form keeps the Hugging Face fields under "model".
            var prefix = "";
            if (root.TryGetProperty("model", out var model) && model.ValueKind == JsonValueKind.Object)
            {
                root = model;
                prefix = "model.";
            }

            var r = new FieldReader(root, file, prefix);
            CheckArchitecture(r);

            int hidden = r.PositiveInt("hidden_size");
            int heads = r.PositiveInt("num_attention_heads");
            int kvHeads = r.OptionalPositiveInt("num_key_value_heads") ?? heads;
            if (heads % kvHeads != 0)
                throw r.Error("num_key_value_heads", $"num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kvHeads})");
            int? headDimField = r.OptionalPositiveInt("head_dim");
            if (headDimField is null && hidden % heads != 0)
                throw r.Error("head_dim", $"absent, and hidden_size ({hidden}) is not a multiple of num_attention_heads ({heads})");
            int headDim = headDimField ?? hidden / heads;
            if (headDim % 2 != 0)
                throw r.Error("head_dim", $"must be even for rotary embeddings, found {headDim}");

            int layers = r.PositiveInt("num_hidden_layers");
            int intermediate = r.PositiveInt("intermediate_size");
            int vocab = r.PositiveInt("vocab_size");
            double eps = r.OptionalDouble("rms_norm_eps") ?? 1e-6;
            if (!(eps > 0)) throw r.Error("rms_norm_eps", $"must be positive, found {eps}");
            int maxPos = r.OptionalPositiveInt("max_position_embeddings") ?? 2048;
            bool tie = r.OptionalBool("tie_word_embeddings") ?? false;

            var (theta, scaling) = ReadRope(r);

            int? bos = r.OptionalInt("bos_token_id");
            var eos = ReadTokenIds(r, "eos_token_id");

            return new LlamaConfig(hidden, heads, kvHeads, headDim, layers, intermediate, vocab, eps, maxPos, theta, scaling, tie, bos, eos);
        }
    }

    private static void CheckArchitecture(FieldReader r)
    {
        var modelType = r.OptionalString("model_type");
        var archs = r.Root.TryGetProperty("architectures", out var a) && a.ValueKind == JsonValueKind.Array
            ? a.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToArray()
            : Array.Empty<string>();
        bool isLlama = modelType is null or "llama" || archs.Contains("LlamaForCausalLM");
        if (!isLlama)
            throw r.Error("model_type", $"'{modelType}' is not a Llama model (expected model_type \"llama\" or architectures [\"LlamaForCausalLM\"])");

        var act = r.OptionalString("hidden_act");
        if (act is not null && act != "silu")
            throw r.Error("hidden_act", $"'{act}' is not supported (the Llama MLP is SwiGLU: \"silu\")");
        if (r.OptionalBool("attention_bias") == true)
            throw r.Error("attention_bias", "true is not supported (Llama projections have no bias)");
        if (r.OptionalBool("mlp_bias") == true)
            throw r.Error("mlp_bias", "true is not supported (Llama projections have no bias)");
    }

    /// <summary>
    /// rope_theta is top level in transformers 4 and under <c>rope_parameters</c> in transformers 5; the scaling
    /// type is <c>rope_scaling.rope_type</c> (or <c>.type</c>), or <c>rope_parameters.rope_type</c>.
    /// </summary>
    private static (double Theta, RopeScaling Scaling) ReadRope(FieldReader r)
    {
        double? theta = r.OptionalDouble("rope_theta");
        RopeScaling scaling = RopeScaling.Default.Instance;
        foreach (var field in new[] { "rope_parameters", "rope_scaling" })
        {
            if (!r.Root.TryGetProperty(field, out var p) || p.ValueKind == JsonValueKind.Null)
                continue;
            if (p.ValueKind != JsonValueKind.Object)
                throw r.Error(field, $"expected an object or null, found {p.ValueKind}");
            var sub = r.Child(p, field);
            theta ??= sub.OptionalDouble("rope_theta");
            var type = sub.OptionalString("rope_type") ?? sub.OptionalString("type") ?? "default";
            scaling = type switch
            {
                "default" => RopeScaling.Default.Instance,
                "llama3" => new RopeScaling.Llama3(
                    sub.PositiveDouble("factor"),
                    sub.PositiveDouble("low_freq_factor"),
                    sub.PositiveDouble("high_freq_factor"),
                    sub.PositiveInt("original_max_position_embeddings")),
                _ => throw sub.Error(sub.Root.TryGetProperty("rope_type", out _) ? "rope_type" : "type",
                    $"'{type}' is not supported (supported: \"default\", \"llama3\")"),
            };
            if (scaling is RopeScaling.Llama3 l && !(l.HighFreqFactor > l.LowFreqFactor))
                throw sub.Error("high_freq_factor", $"must be greater than low_freq_factor ({l.LowFreqFactor}), found {l.HighFreqFactor}");
            break;
        }

        theta ??= 10000.0;
        if (!(theta > 0)) throw r.Error("rope_theta", $"must be positive, found {theta}");
        return (theta.Value, scaling);
    }

    internal static IReadOnlyList<int> ReadTokenIds(FieldReader r, string field)
    {
        if (!r.Root.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null)
            return Array.Empty<int>();
        if (v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var single))
            return new[] { single };
        if (v.ValueKind == JsonValueKind.Array)
        {
            var ids = new List<int>();
            foreach (var e in v.EnumerateArray())
            {
                if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt32(out var id))
                    throw r.Error(field, $"expected an integer or a list of integers, found an element {e.GetRawText()}");
                ids.Add(id);
            }

            return ids;
        }

        throw r.Error(field, $"expected an integer or a list of integers, found {v.GetRawText()}");
    }

    /// <summary>
    /// The rotary inverse frequencies <c>[head_dim / 2]</c>, computed as Hugging Face computes them (in float32),
    /// with the config's scaling applied.
    /// </summary>
    /// <param name="precision">
    /// <see cref="RopeFrequencyPrecision.BFloat16"/> rounds them to bfloat16, as Hugging Face does when a model is
    /// cast in memory with <c>model.to(torch.bfloat16)</c> (the cast also rounds the non-persistent
    /// <c>inv_freq</c> buffer, and later casts to wider types keep the rounded values).
    /// </param>
    public float[] RopeInverseFrequencies(RopeFrequencyPrecision precision = RopeFrequencyPrecision.Float32)
    {
        int half = HeadDim / 2;
        var inv = new float[half];
        for (int i = 0; i < half; i++)
        {
            // HF: 1.0 / (base ** (arange(0, dim, 2).float() / dim)), all in float32.
            float exponent = (float)(2 * i) / HeadDim;
            float power = (float)Math.Pow(RopeTheta, exponent);
            inv[i] = 1f / power;
        }

        if (RopeScaling is RopeScaling.Llama3 l)
        {
            // transformers' _compute_llama3_parameters.
            double lowFreqWavelen = l.OriginalMaxPositionEmbeddings / l.LowFreqFactor;
            double highFreqWavelen = l.OriginalMaxPositionEmbeddings / l.HighFreqFactor;
            for (int i = 0; i < half; i++)
            {
                double f = inv[i];
                double wavelen = 2 * Math.PI / f;
                double scaled;
                if (wavelen < highFreqWavelen)
                    scaled = f; // high frequency: unchanged
                else if (wavelen > lowFreqWavelen)
                    scaled = f / l.Factor; // low frequency: interpolated by the factor
                else
                {
                    // Between the two: blend the scaled and unscaled frequency.
                    double smooth = (l.OriginalMaxPositionEmbeddings / wavelen - l.LowFreqFactor) / (l.HighFreqFactor - l.LowFreqFactor);
                    scaled = (1 - smooth) * f / l.Factor + smooth * f;
                }

                inv[i] = (float)scaled;
            }
        }

        if (precision == RopeFrequencyPrecision.BFloat16)
            for (int i = 0; i < half; i++)
                inv[i] = BitConverter.UInt32BitsToSingle((uint)Safetensors.SafetensorsWriter.ToBFloat16(inv[i]) << 16);
        return inv;
    }

    /// <summary>Reads typed fields of one JSON object and names the file and field in errors.</summary>
    internal readonly struct FieldReader(JsonElement root, string file, string prefix)
    {
        public JsonElement Root { get; } = root;

        public FieldReader Child(JsonElement element, string field) => new(element, file, prefix + field + ".");

        public CheckpointException Error(string field, string message) => new($"{file}: {prefix}{field}: {message}");

        private bool TryGet(string field, out JsonElement v) =>
            Root.TryGetProperty(field, out v) && v.ValueKind != JsonValueKind.Null;

        public int PositiveInt(string field) =>
            OptionalPositiveInt(field) ?? throw Error(field, "required field is missing");

        public int? OptionalPositiveInt(string field)
        {
            var v = OptionalInt(field);
            if (v is <= 0) throw Error(field, $"must be positive, found {v}");
            return v;
        }

        public int? OptionalInt(string field)
        {
            if (!TryGet(field, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i))
                throw Error(field, $"expected an integer, found {v.GetRawText()}");
            return i;
        }

        public double PositiveDouble(string field)
        {
            var v = OptionalDouble(field) ?? throw Error(field, "required field is missing");
            if (!(v > 0)) throw Error(field, $"must be positive, found {v}");
            return v;
        }

        public double? OptionalDouble(string field)
        {
            if (!TryGet(field, out var v)) return null;
            if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !double.IsFinite(d))
                throw Error(field, $"expected a number, found {v.GetRawText()}");
            return d;
        }

        public bool? OptionalBool(string field)
        {
            if (!TryGet(field, out var v)) return null;
            return v.ValueKind switch
            {
                JsonValueKind.True => true,
                JsonValueKind.False => false,
                _ => throw Error(field, $"expected true or false, found {v.GetRawText()}"),
            };
        }

        public string? OptionalString(string field)
        {
            if (!TryGet(field, out var v)) return null;
            if (v.ValueKind != JsonValueKind.String) throw Error(field, $"expected a string, found {v.GetRawText()}");
            return v.GetString();
        }
    }
}
