using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Runtime;
using SpecializedInference.Text;

namespace SpecializedInference.Cli;

/// <summary>What <c>si serve</c> serves: an engine, the text side, and what clients should call it.</summary>
internal sealed record LoadedModel(
    InferenceEngine Engine,
    ITextTokenizer? Tokenizer,
    IChatTemplate? ChatTemplate,
    string Name,
    IReadOnlyList<int> EosTokenIds,
    bool AddBos,
    string Description,
    IReadOnlyList<string> Notes);

/// <summary>Which model to load and how (from the command line).</summary>
internal sealed record ModelRequest(string? CheckpointDirectory, bool Synthetic, string? Name, int MaxBatchSize, int? KvBlocks,
    int SyntheticVocabSize, int SyntheticMaxSeqLen, TimeSpan SyntheticStepDelay);

/// <summary>Loads what <c>si serve</c> and <c>si loadtest</c> serve, reporting progress per stage.</summary>
internal static class ModelLoading
{
    public static LoadedModel Load(ModelRequest request, IProgress<ModelLoadProgress> progress)
    {
        var notes = new List<string>();
        CheckpointFacts? facts = null;
        if (request.CheckpointDirectory is { } dir)
        {
            progress.Report(new ModelLoadProgress("Reading checkpoint", 0, 1, Path.GetFileName(Path.TrimEndingDirectorySeparator(dir))));
            facts = CheckpointFacts.Read(dir);
            progress.Report(new ModelLoadProgress("Reading checkpoint", 1, 1));
        }

        ITextTokenizer? tokenizer = null;
        if (facts is not null)
        {
            progress.Report(new ModelLoadProgress("Loading tokenizer", 0, 1));
            tokenizer = Tokenizers.TryLoad(facts, notes);
            progress.Report(new ModelLoadProgress("Loading tokenizer", 1, 1));
        }
        if (facts is { HasChatTemplate: true })
            notes.Add("tokenizer_config.json has a chat_template, but this build cannot run Jinja templates: /v1/chat/completions answers 400.");

        IModelRunner runner;
        string description;
        int maxSeqLen = facts?.MaxPositionEmbeddings ?? request.SyntheticMaxSeqLen;
        if (request.Synthetic)
        {
            int vocab = facts?.VocabSize ?? request.SyntheticVocabSize;
            int blockSize = 16;
            int blocks = request.KvBlocks ?? Math.Max(64, request.MaxBatchSize * ((maxSeqLen + blockSize - 1) / blockSize));
            progress.Report(new ModelLoadProgress("Creating synthetic model runner", 0, 1));
            runner = new SyntheticModelRunner(vocab, maxSeqLen, blocks, blockSize, request.SyntheticStepDelay);
            progress.Report(new ModelLoadProgress("Creating synthetic model runner", 1, 1));
            description = $"synthetic model runner (no weights: logits hash the token history), vocabulary {vocab}, max_seq_len {maxSeqLen}, {blocks} KV blocks of {blockSize}";
        }
        else
        {
            runner = ModelRunners.Load(facts!, request, progress);
            description = $"checkpoint {facts!.Directory}";
        }

        var options = new EngineOptions { MaxBatchSize = request.MaxBatchSize, MaxNumBatchedTokens = Math.Max(512, request.MaxBatchSize), KvBlocks = request.KvBlocks is null ? null : Math.Min(request.KvBlocks.Value, runner.NumBlocks) };
        var engine = new InferenceEngine(runner, options);
        string name = request.Name
            ?? (facts is not null ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(facts.Directory))) : "synthetic");
        return new LoadedModel(engine, tokenizer, null, name, facts?.EosTokenIds ?? Array.Empty<int>(), facts?.AddBos ?? true, description, notes);
    }
}

/// <summary>The checkpoint's model runner. This build has none yet: it lands with the model branch.</summary>
internal static class ModelRunners
{
    public static IModelRunner Load(CheckpointFacts checkpoint, ModelRequest request, IProgress<ModelLoadProgress> progress) =>
        throw new NotSupportedException(
            $"This build has no model runner for checkpoints yet, so '{checkpoint.Directory}' cannot be served. "
            + "Add --synthetic to serve its tokenizer over a synthetic model runner.");
}

/// <summary>The checkpoint's tokenizer, when this build can load it.</summary>
internal static class Tokenizers
{
    public static ITextTokenizer? TryLoad(CheckpointFacts checkpoint, List<string> notes)
    {
        if (File.Exists(Path.Combine(checkpoint.Directory, "tokenizer.model")))
            notes.Add("tokenizer.model found, but this build has no SentencePiece tokenizer: prompts must be token ids.");
        else
            notes.Add("The checkpoint has no tokenizer.model: prompts must be token ids.");
        return null;
    }
}

/// <summary>What the server needs from a Hugging Face checkpoint folder's JSON files.</summary>
internal sealed record CheckpointFacts(string Directory, int VocabSize, int? MaxPositionEmbeddings, IReadOnlyList<int> EosTokenIds, bool AddBos, bool HasChatTemplate)
{
    public static CheckpointFacts Read(string directory)
    {
        if (!System.IO.Directory.Exists(directory))
            throw new UsageException($"The model directory '{directory}' does not exist.");
        string configPath = Path.Combine(directory, "config.json");
        if (!File.Exists(configPath))
            throw new UsageException($"'{directory}' has no config.json: --model expects a Hugging Face checkpoint folder.");
        using var config = ReadJson(configPath, required: true)!;
        int vocab = config.RootElement.TryGetProperty("vocab_size", out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out int vs) && vs > 0
            ? vs
            : throw new UsageException($"{configPath}: 'vocab_size' must be a positive integer.");
        int? maxPositions = config.RootElement.TryGetProperty("max_position_embeddings", out var mp) && mp.ValueKind == JsonValueKind.Number && mp.TryGetInt32(out int m) && m > 1 ? m : null;

        using var generation = ReadJson(Path.Combine(directory, "generation_config.json"), required: false);
        var eos = TokenIds(generation?.RootElement, "eos_token_id", "generation_config.json");
        if (eos.Count == 0)
            eos = TokenIds(config.RootElement, "eos_token_id", configPath);

        using var tokenizerConfig = ReadJson(Path.Combine(directory, "tokenizer_config.json"), required: false);
        bool addBos = tokenizerConfig?.RootElement.TryGetProperty("add_bos_token", out var ab) != true || ab.ValueKind != JsonValueKind.False;
        bool chat = tokenizerConfig?.RootElement.TryGetProperty("chat_template", out var ct) == true && ct.ValueKind != JsonValueKind.Null;
        return new CheckpointFacts(directory, vocab, maxPositions, eos, addBos, chat);
    }

    private static JsonDocument? ReadJson(string path, bool required)
    {
        if (!File.Exists(path))
            return required ? throw new UsageException($"{path} does not exist.") : null;
        try
        {
            var document = JsonDocument.Parse(File.ReadAllText(path), new JsonDocumentOptions { AllowTrailingCommas = true });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new UsageException($"{path}: expected a JSON object.");
            return document;
        }
        catch (JsonException e)
        {
            throw new UsageException($"{path} is not valid JSON: {e.Message}");
        }
    }

    private static IReadOnlyList<int> TokenIds(JsonElement? root, string field, string file)
    {
        if (root is not { } r || !r.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
            return Array.Empty<int>();
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int one))
            return [one];
        if (value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(e => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out _)))
            return value.EnumerateArray().Select(e => e.GetInt32()).ToArray();
        throw new UsageException($"{file}: '{field}' must be a token id or an array of token ids.");
    }
}
