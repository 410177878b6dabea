using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.Text;
using SpecializedInference.Generators.Json;
using SpecializedInference.Generators.Models;

namespace SpecializedInference.Generators.Parsing;

/// <summary>
/// Turns one config file into a <see cref="KernelSetSpec"/> or positioned diagnostics. Accepts a
/// Hugging Face config.json as it is, or the project's own form {"name", "model", "engine"}.
/// </summary>
internal sealed class ConfigParser
{
    private static readonly string[] s_engineFields =
    {
        "max_batch_size", "max_seq_len", "kv_block_size", "kv_dtype", "weight_dtype", "prefill_tile_q",
        "prefill_tile_kv", "decode_partition_size", "attention_warps", "decode_warps", "large_batch_decode_partition_size",
        "large_batch_decode_warps", "use_flash_attention", "use_gqa", "use_kv_cache", "use_batching",
    };

    private static readonly string[] s_supportedArchitectures =
    {
        "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
    };

    private readonly string _path;
    private readonly string _fileName;
    private readonly SourceText _text;
    private readonly string _namespace;
    private readonly List<DiagnosticInfo> _diagnostics = new();

    private ConfigParser(string path, SourceText text, string @namespace)
    {
        _path = path;
        _fileName = Path.GetFileName(path);
        _text = text;
        _namespace = @namespace;
    }

    public static ConfigParseResult Parse(string path, SourceText? text, string @namespace)
    {
        var parser = new ConfigParser(path, text ?? SourceText.From(string.Empty), @namespace);
        try
        {
            return parser.Parse();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // A generator must never throw: an exception silently drops every generated file.
            parser.Report(DiagnosticDescriptors.InternalError, 0, 0, parser._fileName, ex.GetType().Name + ": " + ex.Message);
            return new ConfigParseResult(null, parser._diagnostics.ToEquatableArray(), null);
        }
    }

    private ConfigParseResult Parse()
    {
        JsonNode root;
        try
        {
            root = JsonReader.Parse(_text.ToString());
        }
        catch (JsonSyntaxException ex)
        {
            int at = Math.Min(ex.Offset, _text.Length);
            Report(DiagnosticDescriptors.MalformedJson, at, Math.Min(at + 1, _text.Length), _fileName, ex.Message);
            return Failed(null);
        }

        if (root.Kind != JsonKind.Object)
        {
            ReportAt(DiagnosticDescriptors.WrongType, root, _fileName, "(root)", "an object", JsonNode.Describe(root.Kind));
            return Failed(null);
        }

        // The project's own form has a "model" object; anything else is read as a Hugging Face config.
        JsonNode modelNode = root;
        JsonNode? engineNode = null;
        string name;
        DiagnosticInfo? nameLocation;
        var modelMember = root.Find("model");
        if (modelMember is not null)
        {
            modelNode = modelMember.Value;
            if (modelNode.Kind != JsonKind.Object)
            {
                ReportAt(DiagnosticDescriptors.WrongType, modelNode, _fileName, "model", "an object", JsonNode.Describe(modelNode.Kind));
                return Failed(null);
            }
            var nameMember = root.Find("name");
            if (nameMember is null)
            {
                Report(DiagnosticDescriptors.MissingField, root.Start, root.Start + 1, _fileName, "name");
                return Failed(null);
            }
            if (nameMember.Value.Kind != JsonKind.String)
            {
                ReportAt(DiagnosticDescriptors.WrongType, nameMember.Value, _fileName, "name", "a string", JsonNode.Describe(nameMember.Value.Kind));
                return Failed(null);
            }
            name = nameMember.Value.Text!;
            nameLocation = Info(DiagnosticDescriptors.DuplicateName, nameMember.Value.Start, nameMember.Value.End);
            if (!SyntaxFacts.IsValidIdentifier(name) || SyntaxFacts.GetKeywordKind(name) != SyntaxKind.None)
            {
                ReportAt(DiagnosticDescriptors.NotAnIdentifier, nameMember.Value, _fileName, name);
                return Failed(null);
            }
            var engineMember = root.Find("engine");
            if (engineMember is not null)
            {
                engineNode = engineMember.Value;
                if (engineNode.Kind != JsonKind.Object)
                {
                    ReportAt(DiagnosticDescriptors.WrongType, engineNode, _fileName, "engine", "an object", JsonNode.Describe(engineNode.Kind));
                    return Failed(null);
                }
            }
        }
        else
        {
            name = IdentifierFromFileName(Path.GetFileNameWithoutExtension(_path));
            nameLocation = Info(DiagnosticDescriptors.DuplicateName, root.Start, root.Start + 1);
        }

        var model = ParseModel(modelNode);
        var engine = ParseEngine(engineNode, model);
        if (model is null || engine is null || _diagnostics.Count > 0) return Failed(nameLocation);

        var spec = new KernelSetSpec(name, _fileName, _namespace, model, engine);
        return new ConfigParseResult(spec, EquatableArray<DiagnosticInfo>.Empty, nameLocation);
    }

    private ModelShape? ParseModel(JsonNode node)
    {
        var architectures = node.Find("architectures");
        if (architectures is not null)
        {
            if (architectures.Value.Kind != JsonKind.Array || architectures.Value.Items!.Any(i => i.Kind != JsonKind.String))
                ReportAt(DiagnosticDescriptors.WrongType, architectures.Value, _fileName, "architectures", "an array of strings", JsonNode.Describe(architectures.Value.Kind));
            else if (!architectures.Value.Items!.Any(i => s_supportedArchitectures.Contains(i.Text)))
                ReportAt(DiagnosticDescriptors.UnsupportedArchitecture, architectures.Value, _fileName,
                    $"architectures must include one of {string.Join(", ", s_supportedArchitectures)} (a Llama-family decoder)");
        }

        int? hidden = RequiredPositiveInt(node, "hidden_size");
        int? heads = RequiredPositiveInt(node, "num_attention_heads");
        int? layers = RequiredPositiveInt(node, "num_hidden_layers");
        int? intermediate = RequiredPositiveInt(node, "intermediate_size");
        int? vocab = RequiredPositiveInt(node, "vocab_size");
        int? kvHeads = OptionalPositiveInt(node, "num_key_value_heads", heads ?? 1);
        int? maxPositions = OptionalPositiveInt(node, "max_position_embeddings", 2048);
        double? eps = OptionalPositiveNumber(node, "rms_norm_eps", 1e-6);
        bool? tie = OptionalBool(node, "tie_word_embeddings", false);
        double? theta = ParseRopeTheta(node);

        int? headDim = null;
        var headDimMember = node.Find("head_dim");
        if (headDimMember is not null && headDimMember.Value.Kind != JsonKind.Null)
        {
            headDim = OptionalPositiveInt(node, "head_dim", 0);
        }
        else if (hidden is int h && heads is int nh)
        {
            if (h % nh != 0)
                ReportAt(DiagnosticDescriptors.InconsistentShape, node.Find("hidden_size")!.Value, _fileName,
                    $"hidden_size ({h}) is not a multiple of num_attention_heads ({nh}) and no head_dim is given");
            else headDim = h / nh;
        }

        if (heads is int q && kvHeads is int kv && q % kv != 0)
            ReportAt(DiagnosticDescriptors.HeadsNotDivisible, (node.Find("num_key_value_heads") ?? node.Find("num_attention_heads"))!.Value,
                _fileName, q.ToString(CultureInfo.InvariantCulture), kv.ToString(CultureInfo.InvariantCulture));

        if (headDim is int d)
        {
            string? why = d % 8 != 0 ? "it must be a multiple of 8 (kernels move K/V in 16-byte chunks of 8 halves)"
                : d > 256 ? "it must be at most 256"
                : null;
            if (why is not null)
            {
                var at = headDimMember?.Value ?? node.Find("hidden_size")?.Value ?? node;
                ReportAt(DiagnosticDescriptors.HeadDimNotSpecializable, at, _fileName, d.ToString(CultureInfo.InvariantCulture), why);
            }
        }

        if (hidden is null || heads is null || layers is null || intermediate is null || vocab is null || kvHeads is null
            || maxPositions is null || eps is null || tie is null || theta is null || headDim is null)
            return null;
        return new ModelShape(hidden.Value, heads.Value, kvHeads.Value, headDim.Value, layers.Value, intermediate.Value,
            vocab.Value, eps.Value, maxPositions.Value, theta.Value, tie.Value);
    }

    private double? ParseRopeTheta(JsonNode node)
    {
        if (node.Find("rope_theta") is not null) return OptionalPositiveNumber(node, "rope_theta", 10000.0);
        foreach (var key in new[] { "rope_parameters", "rope_scaling" })
        {
            var member = node.Find(key);
            if (member is null || member.Value.Kind == JsonKind.Null) continue;
            if (member.Value.Kind != JsonKind.Object)
            {
                ReportAt(DiagnosticDescriptors.WrongType, member.Value, _fileName, key, "an object", JsonNode.Describe(member.Value.Kind));
                return null;
            }
            if (member.Value.Find("rope_theta") is not null) return OptionalPositiveNumber(member.Value, "rope_theta", 10000.0);
        }
        return 10000.0;
    }

    private EngineSettings? ParseEngine(JsonNode? node, ModelShape? model)
    {
        var empty = new JsonNode(JsonKind.Object, 0, 0) { Members = new List<JsonMember>() };
        node ??= empty;
        foreach (var member in node.Members!)
            if (!s_engineFields.Contains(member.Key))
                Report(DiagnosticDescriptors.UnknownEngineSetting, member.KeyStart, member.KeyEnd, _fileName, member.Key, string.Join(", ", s_engineFields));

        int defaultMaxSeq = model is null ? 4096 : Math.Min(model.MaxPositionEmbeddings, 8192);
        int? maxBatch = OptionalPositiveInt(node, "max_batch_size", 64);
        int? maxSeq = OptionalPositiveInt(node, "max_seq_len", defaultMaxSeq);
        int? blockSize = OptionalPositiveInt(node, "kv_block_size", 16);
        var kvDtype = OptionalEnum(node, "kv_dtype", KvDtype.F16);
        var weightDtype = OptionalEnum(node, "weight_dtype", WeightDtype.F16);
        int? tileQ = OptionalPositiveInt(node, "prefill_tile_q", 32);
        int? warps = OptionalPositiveInt(node, "attention_warps", 4);
        int? partition = OptionalPositiveInt(node, "decode_partition_size", 256);
        // decode_warps defaults to attention_warps (to 4 when that is itself invalid, so one bad field is one diagnostic).
        int? decodeWarps = OptionalPositiveInt(node, "decode_warps", warps is 1 or 2 or 4 or 8 ? warps.Value : 4);
        bool? flash = OptionalBool(node, "use_flash_attention", true);
        bool? gqa = OptionalBool(node, "use_gqa", true);
        bool? kvCache = OptionalBool(node, "use_kv_cache", true);
        bool? batching = OptionalBool(node, "use_batching", true);

        // The K/V tile defaults to the largest that fits the 48 KB shared-memory budget.
        int? tileKv;
        var tileKvMember = node.Find("prefill_tile_kv");
        if (tileKvMember is not null) tileKv = OptionalPositiveInt(node, "prefill_tile_kv", 32);
        else tileKv = model is null || tileQ is null ? 32
            : new[] { 32, 16, 8 }.FirstOrDefault(t => SharedMemoryBudget.PrefillBytes(model.HeadDim, t, SharedMemoryBudget.PrefillRows(tileQ.Value, 1)) <= SharedMemoryBudget.MaxBytesPerGroup) is int t && t > 0 ? t : 8;

        JsonNode At(string key) => node.Find(key)?.Value ?? node;

        if (blockSize is int bs && (bs & (bs - 1)) != 0 || blockSize > 1024)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("kv_block_size"), _fileName, $"kv_block_size {blockSize} must be a power of two no larger than 1024");
        if (tileKv is int tkv && tkv != 8 && tkv != 16 && tkv != 32)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("prefill_tile_kv"), _fileName, $"prefill_tile_kv {tkv} must be 8, 16 or 32 (keys per K/V tile in shared memory)");
        if (warps is int w && w != 1 && w != 2 && w != 4 && w != 8)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("attention_warps"), _fileName, $"attention_warps {w} must be 1, 2, 4 or 8");
        if (decodeWarps is int dw && dw != 1 && dw != 2 && dw != 4 && dw != 8)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("decode_warps"), _fileName, $"decode_warps {dw} must be 1, 2, 4 or 8");
        else if (decodeWarps is int dw2 && partition is int dp && dp % 32 == 0 && model is not null && 32 * dw2 > dp
            && (32 * dw2 % dp != 0 || model.HeadDim / 8 % (32 * dw2 / dp) != 0))
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("decode_warps"), _fileName,
                $"decode_warps {dw2} gives {32 * dw2} threads for partitions of {dp} keys: the threads sharing a key must split its {model.HeadDim / 8} 8-dim units evenly (use decode_warps of at most {dp / 32}, or a partition that divides {32 * dw2} threads)");
        if (partition is int p && p % 32 != 0)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("decode_partition_size"), _fileName, $"decode_partition_size {p} must be a multiple of 32 (one key per lane)");
        if (tileQ is int tq && tq > 64)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("prefill_tile_q"), _fileName, $"prefill_tile_q {tq} must be at most 64");
        // Every generated variant must fit, down to one head per group (the expanded mapping).
        if (model is not null && tileKv is int tk2 && tileQ is int tq2
            && SharedMemoryBudget.PrefillBytes(model.HeadDim, tk2, SharedMemoryBudget.PrefillRows(tq2, 1)) is int bytes && bytes > SharedMemoryBudget.MaxBytesPerGroup)
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, At("prefill_tile_kv"), _fileName,
                $"prefill K/V tiles of {tk2} keys at head_dim {model.HeadDim} need {bytes} bytes of shared memory, over the 48 KB per group that ILGPU allows; use a smaller prefill_tile_kv or prefill_tile_q");
        // The decode's shared memory, for the generic kernels' groups and (when it differs) the generated decode's.
        void CheckDecodeBytes(string field, int? groupWarps)
        {
            if (model is not null && groupWarps is int w2 && partition is int p2
                && SharedMemoryBudget.DecodeBytes(model.HeadDim, 1, w2, p2) is int dbytes && dbytes > SharedMemoryBudget.MaxBytesPerGroup)
                ReportAt(DiagnosticDescriptors.TileNotSpecializable, At(field), _fileName,
                    $"decode with {w2} warps and partitions of {p2} keys at head_dim {model.HeadDim} needs {dbytes} bytes of shared memory, over the 48 KB per group that ILGPU allows; use fewer {field} or a smaller decode_partition_size");
        }
        var (largeBatch, largeBatchValid) = LargeBatchDecode(node, model, blockSize, At);
        CheckDecodeBytes("attention_warps", warps);
        if (decodeWarps != warps) CheckDecodeBytes("decode_warps", decodeWarps);
        if (model is not null && maxSeq > model.MaxPositionEmbeddings)
            ReportAt(DiagnosticDescriptors.InconsistentShape, At("max_seq_len"), _fileName,
                $"max_seq_len ({maxSeq}) exceeds max_position_embeddings ({model.MaxPositionEmbeddings})");

        if (maxBatch is null || maxSeq is null || blockSize is null || kvDtype is null || weightDtype is null || tileQ is null
            || tileKv is null || warps is null || decodeWarps is null || partition is null || flash is null || gqa is null || kvCache is null || batching is null
            || !largeBatchValid)
            return null;
        return new EngineSettings(maxBatch.Value, maxSeq.Value, blockSize.Value, kvDtype.Value, weightDtype.Value,
            new TileSizes(tileQ.Value, tileKv.Value, partition.Value, warps.Value, decodeWarps.Value, largeBatch),
            flash.Value, gqa.Value, kvCache.Value, batching.Value);
    }

    private int? RequiredPositiveInt(JsonNode obj, string key)
    {
        if (obj.Find(key) is null)
        {
            Report(DiagnosticDescriptors.MissingField, obj.Start, obj.Start + 1, _fileName, key);
            return null;
        }
        return OptionalPositiveInt(obj, key, 0);
    }

    /// <summary>The optional large-batch decode (large_batch_decode_partition_size and _warps, both or neither): its tiles
    /// when given and valid for this model, and whether the fields are valid (absent ones are).</summary>
    private (DecodeTiles? Tiles, bool Valid) LargeBatchDecode(JsonNode node, ModelShape? model, int? blockSize, Func<string, JsonNode> at)
    {
        const string partitionKey = "large_batch_decode_partition_size", warpsKey = "large_batch_decode_warps";
        bool partitionGiven = node.Find(partitionKey) is not null, warpsGiven = node.Find(warpsKey) is not null;
        if (!partitionGiven && !warpsGiven) return (null, true);
        if (partitionGiven != warpsGiven)
        {
            string given = partitionGiven ? partitionKey : warpsKey, missing = partitionGiven ? warpsKey : partitionKey;
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, at(given), _fileName, $"{given} needs {missing} too: the large-batch decode takes both or neither");
            return (null, false);
        }
        int? partition = OptionalPositiveInt(node, partitionKey, 0);
        int? warps = OptionalPositiveInt(node, warpsKey, 0);
        if (partition is not int p || warps is not int w) return (null, false);
        if (w != 1 && w != 2 && w != 4 && w != 8)
        {
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, at(warpsKey), _fileName, $"{warpsKey} {w} must be 1, 2, 4 or 8");
            return (null, false);
        }
        if (p % (16 * w) != 0)
        {
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, at(partitionKey), _fileName,
                $"{partitionKey} {p} must be a multiple of {16 * w} (16-key tensor-core tiles for each of the {w} warps)");
            return (null, false);
        }
        if (model is null || blockSize is not int bs) return (null, true);   // the model's own diagnostics say why
        var tiles = new DecodeTiles(p, w);
        if (SharedMemoryBudget.LargeBatchHeadsPerGroup(model, tiles, bs) == 0)
        {
            ReportAt(DiagnosticDescriptors.TileNotSpecializable, at(partitionKey), _fileName,
                $"the large-batch decode runs on tensor cores, which need 2 to 8 query heads per K/V head (this model has {model.GroupSize}), " +
                $"head_dim a multiple of 64 (it is {model.HeadDim}) and partitions of {p} keys on {w} warps within 48 KB of shared memory; remove the large_batch_decode fields or change them");
            return (null, false);
        }
        return (tiles, true);
    }

    private int? OptionalPositiveInt(JsonNode obj, string key, int fallback)
    {
        var member = obj.Find(key);
        if (member is null) return fallback;
        var v = member.Value;
        if (v.Kind != JsonKind.Number)
        {
            ReportAt(DiagnosticDescriptors.WrongType, v, _fileName, key, "a positive integer", JsonNode.Describe(v.Kind));
            return null;
        }
        if (!long.TryParse(v.Text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            bool isNumber = double.TryParse(v.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double d);
            if (isNumber && d <= 0) ReportAt(DiagnosticDescriptors.NonPositive, v, _fileName, key, v.Text!);
            else ReportAt(DiagnosticDescriptors.WrongType, v, _fileName, key, "a positive integer", "the number " + v.Text);
            return null;
        }
        if (value <= 0)
        {
            ReportAt(DiagnosticDescriptors.NonPositive, v, _fileName, key, v.Text!);
            return null;
        }
        if (value > int.MaxValue)
        {
            ReportAt(DiagnosticDescriptors.WrongType, v, _fileName, key, "a positive 32-bit integer", "the number " + v.Text);
            return null;
        }
        return (int)value;
    }

    private double? OptionalPositiveNumber(JsonNode obj, string key, double fallback)
    {
        var member = obj.Find(key);
        if (member is null) return fallback;
        var v = member.Value;
        if (v.Kind != JsonKind.Number || !double.TryParse(v.Text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
        {
            ReportAt(DiagnosticDescriptors.WrongType, v, _fileName, key, "a positive number", JsonNode.Describe(v.Kind));
            return null;
        }
        if (!(value > 0) || double.IsInfinity(value))
        {
            ReportAt(DiagnosticDescriptors.NonPositive, v, _fileName, key, v.Text!);
            return null;
        }
        return value;
    }

    private bool? OptionalBool(JsonNode obj, string key, bool fallback)
    {
        var member = obj.Find(key);
        if (member is null) return fallback;
        var v = member.Value;
        if (v.Kind == JsonKind.True) return true;
        if (v.Kind == JsonKind.False) return false;
        ReportAt(DiagnosticDescriptors.WrongType, v, _fileName, key, "true or false", JsonNode.Describe(v.Kind));
        return null;
    }

    private TEnum? OptionalEnum<TEnum>(JsonNode obj, string key, TEnum fallback) where TEnum : struct, Enum
    {
        var member = obj.Find(key);
        if (member is null) return fallback;
        var v = member.Value;
        var names = Enum.GetNames(typeof(TEnum)).Select(n => n.ToLowerInvariant()).ToArray();
        if (v.Kind != JsonKind.String)
        {
            ReportAt(DiagnosticDescriptors.WrongType, v, _fileName, key, "a string", JsonNode.Describe(v.Kind));
            return null;
        }
        if (!names.Contains(v.Text) || !Enum.TryParse(v.Text, ignoreCase: true, out TEnum value))
        {
            ReportAt(DiagnosticDescriptors.BadEnumValue, v, _fileName, key, string.Join("|", names), v.Text!);
            return null;
        }
        return value;
    }

    private static string IdentifierFromFileName(string stem)
    {
        var chars = stem.Select(c => char.IsLetterOrDigit(c) || c == '_' ? c : '_').ToArray();
        var id = new string(chars);
        if (id.Length == 0 || char.IsDigit(id[0])) id = "_" + id;
        return SyntaxFacts.GetKeywordKind(id) != SyntaxKind.None ? "_" + id : id;
    }

    private ConfigParseResult Failed(DiagnosticInfo? nameLocation)
        => new(null, _diagnostics.ToEquatableArray(), nameLocation);

    private void ReportAt(DiagnosticDescriptor descriptor, JsonNode node, params string[] args)
        => Report(descriptor, node.Start, node.End, args);

    private void Report(DiagnosticDescriptor descriptor, int start, int end, params string[] args)
        => _diagnostics.Add(Info(descriptor, start, end, args));

    private DiagnosticInfo Info(DiagnosticDescriptor descriptor, int start, int end, params string[] args)
    {
        var span = TextSpan.FromBounds(start, Math.Max(start, end));
        return new DiagnosticInfo(descriptor.Id, _path, span, _text.Lines.GetLinePositionSpan(span), args.ToEquatableArray());
    }
}
