using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpecializedInference.Accelerators;
using SpecializedInference.Engine;
using SpecializedInference.Runtime;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary>
/// <c>si perplexity</c>: how well a checkpoint predicts a text, exp of the mean negative log-likelihood of its tokens,
/// to check that a checkpoint loads right (f16 against f32, a conversion, generic against specialized kernels).
/// </summary>
/// <remarks>
/// A text longer than the context is scored in sliding windows (Hugging Face's recipe): window k covers tokens
/// [k·stride, k·stride + context), and scores the tokens no earlier window scored, each with every token of its window
/// before it as context. The first token has nothing before it and is not scored. All windows go through the engine
/// together, as prompts whose tokens the engine scores (<see cref="GenerationRequest.PromptLogprobs"/>).
/// </remarks>
internal sealed class PerplexityCommand : Command<PerplexityCommand.Settings>
{
    internal sealed class Settings : CheckpointRunSettings
    {
        [CommandOption("--text <TEXT>")]
        [Description("The text to score (encoded with BOS as the tokenizer's config says).")]
        public string? Text { get; init; }

        [CommandOption("--text-file <PATH>")]
        [Description("A UTF-8 file whose whole text is scored.")]
        public string? TextFile { get; init; }

        [CommandOption("--prompt-ids <IDS>")]
        [Description("Token ids to score, comma-separated, used as given.")]
        public string? PromptIds { get; init; }

        [CommandOption("--context <N>")]
        [Description("Tokens per window (default: 1024, or less when the model's max_seq_len is shorter).")]
        public int? Context { get; init; }

        [CommandOption("--stride <N>")]
        [Description("Tokens between window starts, less than --context (default: half of it). Smaller gives each token more context and costs more.")]
        public int? Stride { get; init; }

        [CommandOption("--max-batch-size <N>")]
        [Description("Windows the engine runs at once (default 8).")]
        public int MaxBatchSize { get; init; } = 8;

        [CommandOption("--json")]
        [Description("Print one JSON object: perplexity, nll_per_token, tokens_scored, windows, context, stride, seconds, device.")]
        public bool Json { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model <DIR> is required");
            if ((Text is null ? 0 : 1) + (TextFile is null ? 0 : 1) + (PromptIds is null ? 0 : 1) != 1)
                return ValidationResult.Error("give exactly one of --text, --text-file or --prompt-ids");
            if (Context is < 2) return ValidationResult.Error("--context must be at least 2 (a token and one to score)");
            if (Stride is < 1) return ValidationResult.Error("--stride must be at least 1");
            if (Context is { } c && Stride is { } s && s >= c)
                return ValidationResult.Error($"--stride ({s}) must be less than --context ({c}): each window scores its last tokens with the ones before it as context");
            if (MaxBatchSize < 1) return ValidationResult.Error("--max-batch-size must be at least 1");
            return ValidationResult.Success();
        }
    }

    /// <summary>One window: tokens [Begin, Begin + Length) of the text, scoring positions [FirstScored, Begin + Length).</summary>
    internal readonly record struct Window(int Begin, int Length, int FirstScored);

    /// <summary>The sliding windows over <paramref name="tokens"/> tokens: every position from 1 on is scored once.</summary>
    internal static List<Window> Windows(int tokens, int context, int stride)
    {
        var windows = new List<Window>();
        int scoredUpTo = 1;
        for (int begin = 0; scoredUpTo < tokens; begin += stride)
        {
            int end = Math.Min(begin + context, tokens);
            windows.Add(new Window(begin, end - begin, scoredUpTo));
            scoredUpTo = end;
        }
        return windows;
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        try
        {
            return Run(settings);
        }
        catch (Exception e) when (e is UsageException or ArgumentException or InvalidDataException or NotSupportedException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    private static int[] CheckLength(int[] ids) => ids.Length >= 2
        ? ids
        : throw new ArgumentException($"the text is {ids.Length} token{(ids.Length == 1 ? "" : "s")}; at least 2 are needed (the first is context only)");

    private static int Run(Settings s)
    {
        var device = GenerateCommand.ParseDevice(s.Device);
        string? text = s.TextFile is { } path ? File.ReadAllText(path) : s.Text;
        // Token ids are checked before the model loads; a text needs the checkpoint's tokenizer first.
        int[]? ids = s.PromptIds is null ? null : CheckLength(GenerateCommand.ParseIds(s.PromptIds));
        var loaded = ModelLoading.Load(new ModelRequest(s.Model, Synthetic: false, Name: null, s.MaxBatchSize, KvBlocks: null, device,
            SyntheticVocabSize: 0, SyntheticMaxSeqLen: 0, SyntheticStepDelay: TimeSpan.Zero,
            WeightDtype: GenerateCommand.ParseWeightDtype(s.WeightDtype), KvDtype: GenerateCommand.ParseKvDtype(s.KvDtype)), new Progress<ModelLoadProgress>());
        using var engine = loaded.Engine;
        foreach (var note in loaded.Notes)
            Console.Error.WriteLine(note);
        if (ids is null)
        {
            var tokenizer = loaded.Tokenizer ?? throw new ArgumentException($"{s.Model} has no tokenizer, so a text cannot be encoded; only --prompt-ids can be used");
            ids = CheckLength(tokenizer.Encode(text!, loaded.AddBos));
        }
        for (int i = 0; i < ids.Length; i++)
            if ((uint)ids[i] >= (uint)engine.VocabSize)
                throw new ArgumentException($"token id {ids[i]} at index {i} is outside the vocabulary (0..{engine.VocabSize - 1})");

        // A window is a prompt, and the engine generates one token after it.
        int longest = engine.MaxSeqLen - 1;
        int windowTokens = s.Context ?? Math.Min(1024, longest);
        if (windowTokens > longest)
            throw new ArgumentException($"--context {windowTokens}: this model runs at most {engine.MaxSeqLen} positions, so a window can be at most {longest} tokens");
        int stride = s.Stride ?? Math.Max(1, windowTokens / 2);
        if (stride >= windowTokens)
            throw new ArgumentException($"--stride ({stride}) must be less than --context ({windowTokens})");
        var windows = Windows(ids.Length, windowTokens, stride);

        var clock = Stopwatch.StartNew();
        var completions = windows.Select((w, k) => engine.GenerateAsync(new GenerationRequest(ids[w.Begin..(w.Begin + w.Length)], 1)
        {
            PromptLogprobs = 0,
            IgnoreEos = true,
            Name = $"window {k} (tokens {w.Begin}..{w.Begin + w.Length - 1})",
        })).ToArray();
        Task.WaitAll(completions);
        double seconds = clock.Elapsed.TotalSeconds;

        double nll = 0;
        int scored = 0;
        for (int k = 0; k < windows.Count; k++)
        {
            var completion = completions[k].Result;
            if (completion.Error is not null)
                throw new InvalidOperationException($"window {k} failed: {completion.Error}");
            var w = windows[k];
            var logprobs = completion.PromptLogprobs!; // entry j scores position Begin + j + 1
            for (int position = w.FirstScored; position < w.Begin + w.Length; position++)
            {
                nll -= logprobs[position - w.Begin - 1].Chosen.Logprob;
                scored++;
            }
        }
        double perToken = nll / scored;
        double perplexity = Math.Exp(perToken);

        if (s.Json)
        {
            Console.Out.WriteLine(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["perplexity"] = perplexity,
                ["nll_per_token"] = perToken,
                ["tokens_scored"] = scored,
                ["windows"] = windows.Count,
                ["context"] = windowTokens,
                ["stride"] = stride,
                ["seconds"] = Math.Round(seconds, 3),
                ["device"] = loaded.Description,
            }));
            return 0;
        }
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"perplexity {perplexity:F4} over {scored} tokens (negative log-likelihood {perToken:F4} per token)"));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{windows.Count} window{(windows.Count == 1 ? "" : "s")} of up to {windowTokens} tokens, stride {stride}; {seconds:F2} s ({ids.Length / seconds:F0} tokens/s); {loaded.Description}"));
        return 0;
    }
}
