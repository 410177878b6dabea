using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Text;
using SpecializedInference.Tokenization;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary><c>si generate</c>: load a Hugging Face Llama checkpoint and generate from one prompt.</summary>
internal sealed class GenerateCommand : Command<GenerateCommand.Settings>
{
    internal sealed class Settings : CheckpointRunSettings
    {
        [CommandOption("--prompt <TEXT>")]
        [Description("Prompt text (needs the checkpoint's tokenizer; BOS is added as tokenizer_config.json says).")]
        public string? Prompt { get; init; }

        [CommandOption("--chat <TEXT>")]
        [Description("A user message, rendered with the checkpoint's chat template (chat_template.jinja or tokenizer_config.json's chat_template, " +
            "as transformers' apply_chat_template with add_generation_prompt renders it) and encoded with its special tokens.")]
        public string? Chat { get; init; }

        [CommandOption("--system <TEXT>")]
        [Description("A system message before the --chat message.")]
        public string? SystemMessage { get; init; }

        [CommandOption("--prompt-ids <IDS>")]
        [Description("Prompt token ids, comma-separated (e.g. 1,420,264), used as given.")]
        public string? PromptIds { get; init; }

        [CommandOption("--max-new-tokens <N>")]
        [Description("Tokens to generate at most (default 32).")]
        public int MaxNewTokens { get; init; } = 32;

        [CommandOption("--greedy")]
        [Description("Pick the most likely token every step (the default unless --temperature is given).")]
        public bool Greedy { get; init; }

        [CommandOption("--temperature <T>")]
        [Description("Sample with this temperature (0 = greedy).")]
        public float? Temperature { get; init; }

        [CommandOption("--top-k <K>")]
        [Description("Sample among the K most likely tokens (0 = all).")]
        public int TopK { get; init; }

        [CommandOption("--top-p <P>")]
        [Description("Sample among the most likely tokens whose probability adds up to P (1 = all).")]
        public float TopP { get; init; } = 1f;

        [CommandOption("--repetition-penalty <R>")]
        [Description("Divide the positive logits (multiply the negative ones) of tokens already in the prompt or output by R, as Hugging Face does (1 = off; above 1 discourages repeats).")]
        public double RepetitionPenalty { get; init; } = 1;

        [CommandOption("--frequency-penalty <F>")]
        [Description("Subtract F times the number of times a token was generated from its logit, as OpenAI does (-2 to 2; 0 = off).")]
        public double FrequencyPenalty { get; init; }

        [CommandOption("--presence-penalty <P>")]
        [Description("Subtract P from the logit of every token generated so far, as OpenAI does (-2 to 2; 0 = off).")]
        public double PresencePenalty { get; init; }

        internal LogitPenalties Penalties => new(RepetitionPenalty, FrequencyPenalty, PresencePenalty);

        [CommandOption("--min-p <P>")]
        [Description("Sample only among the tokens at least P times as likely as the most likely one, at the temperature (0 = off).")]
        public double MinP { get; init; }

        [CommandOption("--min-tokens <N>")]
        [Description("End-of-sequence tokens cannot end the output before N tokens are generated (0 = off).")]
        public int MinTokens { get; init; }

        [CommandOption("--seed <SEED>")]
        [Description("Seed of the sampler (same seed, same tokens).")]
        public ulong? Seed { get; init; }

        [CommandOption("--ignore-eos")]
        [Description("Keep generating past end-of-sequence tokens.")]
        public bool IgnoreEos { get; init; }

        [CommandOption("--json")]
        [Description("Print one JSON object: tokens, step_logits, engine, specialized, device, prefill_ms, decode_tokens_per_s (after the first decode step, which compiles kernels: first_decode_ms).")]
        public bool Json { get; init; }

        [CommandOption("--cuda-cores")]
        [Description("f16 projections and decode attention on CUDA cores only (tensor cores are the default on CUDA).")]
        public bool CudaCores { get; init; }

        [CommandOption("--prefetch-weights <WHAT>")]
        [Description("What each decode matvec pulls into L2 ahead of its loads: MiB of the next projection's weights (MiB at the end of its grid, start:MiB at the start), rows (each warp's own rows past its first load step), or both (rows+8). CUDA only; off by default until measured.")]
        public string? PrefetchWeights { get; init; }

        [CommandOption("--fused-matvec-launch <WARPS:REGISTERS>")]
        [Description("Warps per group and register cap of the fused decode matvec, e.g. 2:88 (0 registers: the compiler's choice; the cap is CUDA's). Default 4:0.")]
        public string? FusedMatvecLaunch { get; init; }

        [CommandOption("--decode-launches <PLAN>")]
        [Description("per-stage (default): a launch per projection of a decode step; grid-synced-tails: each layer's o_proj, MLP and the next layer's qkv as one launch whose groups meet at grid barriers; grid-synced-tails-preloaded: the same, each warp loading its first rows of the next stage before each barrier; per-stage-pdl: a launch per stage, each matvec loading its first weights, and the decode attention its K/V rows, before it waits for the kernel before it (programmatic dependent launch, CUDA sm_90); grid-synced-layers: the layer's decode attention too (warp schedule, up to 4 tokens). Off by default until measured.")]
        public string? DecodeLaunches { get; init; }

        [CommandOption("--matvec-loads <HOW>")]
        [Description("registers (default): the per-stage decode matvecs (o_proj, down_proj, qkv, gate|up, LM head) load their weights into registers a step at a time; async-copy: through shared memory by asynchronous copies, 8 chunks per lane in flight (CUDA sm_80+; warp schedule; with --decode-launches per-stage-pdl each ring fills before the wait). Off by default until measured.")]
        public string? MatvecLoads { get; init; }

        [CommandOption("--stream <KIND>")]
        [Description("legacy (default): ILGPU's stream, the legacy NULL stream; non-blocking: a non-blocking stream of the engine's own, made ILGPU's default stream before anything loads (CUDA; for programmatic dependent launch, should the legacy stream not let kernels overlap).")]
        public string? Stream { get; init; }

        [CommandOption("--cuda-graphs")]
        [Description("Capture decode steps as CUDA graphs and replay them: a step whose launch arguments repeat the step before is captured once, then replayed with one launch for as long as they stay the same (batch 1 at least until the next decode partition). Needs CUDA and the non-blocking stream, which it implies unless --stream says otherwise. Off by default until measured.")]
        public bool CudaGraphs { get; init; }

        /// <summary>--stream, parsed (when not given: the non-blocking stream under --cuda-graphs, which cannot capture the legacy one; else the legacy stream).</summary>
        internal DeviceStream ParsedStream => Stream is not null ? DeviceStreamNames.Parse(Stream) : CudaGraphs ? DeviceStream.NonBlocking : DeviceStream.Legacy;

        /// <summary>--matvec-loads, parsed (the default when not given).</summary>
        internal MatvecLoads ParsedMatvecLoads => MatvecLoads is null ? Kernels.Dense.MatvecLoads.Registers : MatvecLoadNames.Parse(MatvecLoads);

        /// <summary>--decode-launches, parsed (the default when not given).</summary>
        internal DecodeLaunches ParsedDecodeLaunches => DecodeLaunches is null ? Kernels.Dense.DecodeLaunches.PerStage : DecodeLaunchNames.Parse(DecodeLaunches);

        /// <summary>--prefetch-weights, parsed (null when not given).</summary>
        internal WeightPrefetch? ParsedPrefetch => PrefetchWeights is null ? null : WeightPrefetch.Parse(PrefetchWeights);

        /// <summary>--fused-matvec-launch, parsed (null when not given).</summary>
        internal Kernels.Dense.FusedMatvecLaunch? ParsedFusedLaunch => FusedMatvecLaunch is null ? null : Kernels.Dense.FusedMatvecLaunch.Parse(FusedMatvecLaunch);

        [CommandOption("--stage-times")]
        [Description("Time each stage of the decode steps on the device (an event between stages, from the second decode step on: the first compiles kernels) and print where a step's time goes. Not with --prompts-file.")]
        public bool StageTimes { get; init; }

        [CommandOption("--generic")]
        [Description("Use the generic attention kernels even when a generated kernel set matches the model.")]
        public bool Generic { get; init; }

        [CommandOption("--prefill-chunk <N>")]
        [Description("Longest prefill step in tokens; longer prompts are prefilled in chunks (default 512).")]
        public int PrefillChunk { get; init; } = 512;

        [CommandOption("--prompts-file <FILE>")]
        [Description("JSON lines, one request each (prompt_ids or prompt, max_new_tokens, temperature, top_k, top_p, seed, greedy, ignore_eos, id): run them all concurrently through the engine; prints one JSON object per request, then {\"stats\": ...}.")]
        public string? PromptsFile { get; init; }

        [CommandOption("--kv-memory <BYTES>")]
        [Description("With --prompts-file: KV cache size in bytes (whole blocks of 16 tokens).")]
        public long? KvMemory { get; init; }

        [CommandOption("--max-batch-size <N>")]
        [Description("With --prompts-file: most requests running at once (default 8).")]
        public int MaxBatchSize { get; init; } = 8;

        [CommandOption("--max-num-batched-tokens <N>")]
        [Description("With --prompts-file: token budget of one step (default max(512, --max-batch-size)).")]
        public int? MaxNumBatchedTokens { get; init; }

        public override ValidationResult Validate()
        {
            if (string.IsNullOrWhiteSpace(Model)) return ValidationResult.Error("--model <DIR> is required");
            if ((Prompt is null ? 0 : 1) + (Chat is null ? 0 : 1) + (PromptIds is null ? 0 : 1) + (PromptsFile is null ? 0 : 1) != 1)
                return ValidationResult.Error("give exactly one of --prompt, --chat, --prompt-ids or --prompts-file");
            if (SystemMessage is not null && Chat is null) return ValidationResult.Error("--system goes with --chat: it is the system message of that chat");
            if (MaxBatchSize < 1) return ValidationResult.Error("--max-batch-size must be at least 1");
            if (MaxNumBatchedTokens is < 1) return ValidationResult.Error("--max-num-batched-tokens must be at least 1");
            if (KvMemory is < 1) return ValidationResult.Error("--kv-memory must be a positive number of bytes");
            if (MaxNewTokens < 1) return ValidationResult.Error("--max-new-tokens must be at least 1");
            if (Greedy && Temperature is > 0) return ValidationResult.Error("--greedy and --temperature > 0 contradict each other");
            if (PrefillChunk < 1) return ValidationResult.Error("--prefill-chunk must be at least 1");
            if (Penalties.FindProblem() is var (field, expected))
                return ValidationResult.Error($"--{field.Replace('_', '-')} must be {expected}");
            if (!(MinP is >= 0 and <= 1)) return ValidationResult.Error("--min-p must be between 0 and 1 (0 = off)");
            if (MinTokens < 0 || MinTokens > MaxNewTokens) return ValidationResult.Error($"--min-tokens must be between 0 and --max-new-tokens ({MaxNewTokens})");
            if (StageTimes && PromptsFile is not null) return ValidationResult.Error("--stage-times times one prompt's decode steps; it does not go with --prompts-file");
            return ValidationResult.Success();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        try
        {
            return settings.PromptsFile is not null ? BatchGeneration.Run(settings) : Run(settings);
        }
        catch (Exception e) when (e is CheckpointException or ArgumentException or InvalidDataException or NotSupportedException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 2;
        }
    }

    internal static DeviceKind ParseDevice(string text) => text.ToLowerInvariant() switch
    {
        "auto" => DeviceKind.Auto,
        "cpu" => DeviceKind.Cpu,
        "cuda" or "gpu" => DeviceKind.Cuda,
        _ => throw new ArgumentException($"--device '{text}': expected auto, cpu or cuda"),
    };

    internal static WeightDtype ParseWeightDtype(string text) => text.ToLowerInvariant() switch
    {
        "f16" or "fp16" or "float16" => WeightDtype.F16,
        "f32" or "fp32" or "float32" => WeightDtype.F32,
        _ => throw new ArgumentException($"--weight-dtype '{text}': expected f16 or f32"),
    };

    internal static KvDtype ParseKvDtype(string text) => text.ToLowerInvariant() switch
    {
        "f16" or "fp16" or "float16" => KvDtype.F16,
        "f32" or "fp32" or "float32" => KvDtype.F32,
        _ => throw new ArgumentException($"--kv-dtype '{text}': expected f16 or f32"),
    };

    internal static int[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new ArgumentException("--prompt-ids: no ids given");
        return parts.Select(p => int.TryParse(p, NumberStyles.Integer, CultureInfo.InvariantCulture, out var id) && id >= 0
            ? id
            : throw new ArgumentException($"--prompt-ids: '{p}' is not a non-negative integer")).ToArray();
    }

    private static int Run(Settings s)
    {
        var device = ParseDevice(s.Device);
        var weightDtype = ParseWeightDtype(s.WeightDtype);
        var kvDtype = ParseKvDtype(s.KvDtype);
        var sampling = new SamplingOptions(s.Greedy ? 0f : s.Temperature ?? 0f, s.TopK, s.TopP, s.Seed, s.MinP);
        sampling.Validate();

        using var checkpoint = LlamaCheckpoint.Open(s.Model);
        var tokenizer = TextTokenizer.TryLoad(s.Model);
        int[] prompt;
        if (s.PromptIds is not null)
        {
            prompt = ParseIds(s.PromptIds);
        }
        else
        {
            string option = s.Chat is not null ? "--chat" : "--prompt";
            if (tokenizer is null)
                throw new ArgumentException($"{s.Model} has no tokenizer ({TextTokenizer.SentencePieceFileName} or {TextTokenizer.TokenizerJsonFileName}), " +
                    $"so a text {option} cannot be encoded; only --prompt-ids can be used");
            prompt = s.Chat is not null ? tokenizer.EncodeWithSpecialTokens(ChatPrompt.Render(s.Model, s.SystemMessage, s.Chat), addBos: false) : tokenizer.Encode(s.Prompt!);
            if (prompt.Length == 0) throw new ArgumentException($"{option} encodes to no tokens");
        }

        foreach (var id in prompt)
            if (id >= checkpoint.Config.VocabSize)
                throw new ArgumentException($"--prompt-ids: id {id} is outside the vocabulary (0..{checkpoint.Config.VocabSize - 1})");

        // Size the cache and rotary tables for this request only.
        int maxSeqLen = Math.Min(checkpoint.Config.MaxPositionEmbeddings, prompt.Length + s.MaxNewTokens);
        if (prompt.Length >= maxSeqLen)
            throw new ArgumentException($"the prompt has {prompt.Length} tokens; the model allows {checkpoint.Config.MaxPositionEmbeddings} positions (max_position_embeddings)");
        var options = new ModelOptions(weightDtype, kvDtype, device, MaxSeqLen: maxSeqLen,
            MaxBatchTokens: Math.Min(prompt.Length, s.PrefillChunk), ForceGenericKernels: s.Generic);
        if (s.CudaCores) options = options.OnCudaCoresOnly();
        options = options with { WeightPrefetch = s.ParsedPrefetch, FusedMatvecLaunch = s.ParsedFusedLaunch, DecodeLaunches = s.ParsedDecodeLaunches, MatvecLoads = s.ParsedMatvecLoads,
            CudaGraphs = s.CudaGraphs };

        var clock = Stopwatch.StartNew();
        using var handle = AcceleratorFactory.Create(new AcceleratorOptions(device, Profiling: s.StageTimes, Stream: s.ParsedStream));
        if (handle.Notice is not null) Console.Error.WriteLine(handle.Notice);
        using var runner = new LlamaModelRunner(handle.Accelerator, checkpoint, options);
        double loadMs = clock.Elapsed.TotalMilliseconds;
        if (runner.KernelNotice is not null) Console.Error.WriteLine(runner.KernelNotice);
        if (runner.DecodeAttentionLaunchNotice is not null) Console.Error.WriteLine(runner.DecodeAttentionLaunchNotice);
        if (runner.CudaGraphsNotice is not null) Console.Error.WriteLine($"--cuda-graphs: {runner.CudaGraphsNotice}");
        if (s.CudaGraphs && s.StageTimes) Console.Error.WriteLine("--cuda-graphs: --stage-times marks every launch, so the timed steps are launched one by one");
        if (s.CudaCores && ModelLoading.NoTensorCorePath(runner.DenseSchedule, weightDtype) is { } why)
            Console.Error.WriteLine($"--cuda-cores has no effect on {handle.Description}: {why}.");
        foreach (var notice in ModelLoading.MatvecOptionNotices(options, runner.DenseSchedule, handle.Accelerator))
            Console.Error.WriteLine($"{notice} ({handle.Description}).");

        var generator = new Generator(runner, checkpoint.EosTokenIds);
        var genOptions = new GenerationOptions(s.MaxNewTokens, sampling, s.IgnoreEos, s.PrefillChunk, RecordLogits: s.Json, Penalties: s.Penalties,
            MinTokens: s.MinTokens);
        // --stage-times: the timeline starts once the first decode step (which compiles the decode kernels) is done,
        // i.e. at the second token.
        int tokensSeen = 0;
        void TimeFromSecondToken()
        {
            if (s.StageTimes && ++tokensSeen == 2) runner.StartStageTimeline();
        }
        IReadOnlyList<StageTime> Stages() => runner.StopStageTimeline()?.MeanStep(runner.StageWeightBytes) ?? [];

        if (s.Json)
        {
            var result = generator.Generate(prompt, genOptions, _ => TimeFromSecondToken());
            var json = new Dictionary<string, object?>
            {
                ["tokens"] = result.Tokens,
                ["step_logits"] = result.StepLogits,
                ["engine"] = runner.KernelSetName,
                ["specialized"] = runner.IsSpecialized,
                ["device"] = handle.Description,
                ["prefill_ms"] = Math.Round(result.PrefillMs, 3),
                ["decode_tokens_per_s"] = Math.Round(result.DecodeTokensPerSecond, 3),
                ["first_decode_ms"] = Math.Round(result.FirstDecodeMs, 3),
                ["prompt_ids"] = prompt,
                ["text"] = tokenizer is null ? null : IncrementalDetokenizer.Continuation(new CheckpointTextTokenizer(tokenizer), s.Chat is null ? prompt : [], result.Tokens),
                ["stop_reason"] = result.StopReason switch
                {
                    StopReason.EndOfSequence => "eos",
                    StopReason.MaxSequenceLength => "max_seq_len",
                    _ => "max_new_tokens",
                },
                ["seed"] = sampling.IsGreedy ? null : result.Seed,
                ["weight_dtype"] = weightDtype.ToString().ToLowerInvariant(),
                ["kv_dtype"] = kvDtype.ToString().ToLowerInvariant(),
                ["load_ms"] = Math.Round(loadMs, 3),
                ["weight_bytes"] = runner.WeightBytes,
                ["decode_weight_bytes"] = runner.DecodeWeightBytes,
                ["decode_steps"] = result.DecodeSteps,
            };
            if (s.CudaGraphs)
                json["cuda_graph_steps"] = new Dictionary<string, object?> { ["captured"] = runner.CudaGraphSteps.Captured, ["replayed"] = runner.CudaGraphSteps.Replayed };
            if (s.StageTimes)
                json["stage_times"] = Stages().Select(t => new Dictionary<string, object?>
                {
                    ["stage"] = t.Stage,
                    ["calls_per_step"] = t.CallsPerStep,
                    ["seconds_per_step"] = t.Seconds,
                    ["weight_bytes_per_step"] = t.WeightBytes,
                }).ToList();
            Console.Out.WriteLine(JsonSerializer.Serialize(json));
            return 0;
        }

        // Readable: the prompt, then the continuation as it is generated. The prompt and the continuation are
        // decoded together so word-initial spaces and multi-byte characters come out right.
        var sequence = new List<int>(prompt);
        string shown = tokenizer?.Decode(sequence) ?? "";
        Console.Out.Write(tokenizer is not null ? shown : $"[{string.Join(", ", prompt)}] ->");
        var res = generator.Generate(prompt, genOptions, token =>
        {
            TimeFromSecondToken();
            sequence.Add(token);
            if (tokenizer is null)
            {
                Console.Out.Write($" {token}");
                return;
            }

            var text = tokenizer.Decode(sequence);
            if (text.StartsWith(shown, StringComparison.Ordinal))
            {
                Console.Out.Write(text[shown.Length..]);
                shown = text;
            }
        });
        Console.Out.WriteLine();
        Console.Error.WriteLine(
            $"{res.Tokens.Length} tokens ({StopText(res.StopReason)}); prefill {prompt.Length} tokens in {res.PrefillMs:F1} ms; " +
            $"decode {res.DecodeTokensPerSecond:F1} tokens/s (first step {res.FirstDecodeMs:F1} ms, compiling kernels); attention kernels: {runner.KernelSetName}{(runner.IsSpecialized ? " (specialized)" : "")}; " +
            $"device {handle.Description}; load {loadMs:F0} ms; a decode step reads {runner.DecodeWeightBytes / 1e9:F2} GB of weights " +
            $"({runner.DecodeWeightBytes * res.DecodeTokensPerSecond / 1e9:F0} GB/s)");
        if (s.CudaGraphs)
            Console.Error.WriteLine($"CUDA graphs: {runner.CudaGraphSteps.Captured} decode steps captured, {runner.CudaGraphSteps.Replayed} replayed");
        if (s.StageTimes) PrintStages(Stages());
        return 0;
    }

    /// <summary>--stage-times, readable: one line per stage of the mean decode step.</summary>
    private static void PrintStages(IReadOnlyList<StageTime> stages)
    {
        if (stages.Count == 0)
        {
            Console.Error.WriteLine("stage times: no decode step after the first was timed (ask for more tokens)");
            return;
        }
        double step = stages.Sum(t => t.Seconds);
        Console.Error.WriteLine($"device time of a decode step by stage ({step * 1e6:F0} us in all; an event between stages, launch gaps included):");
        foreach (var t in stages)
            Console.Error.WriteLine($"  {t.Stage,-20} {t.CallsPerStep,4:0.#} x {t.Seconds / Math.Max(1, t.CallsPerStep) * 1e6,9:F1} us = {t.Seconds * 1e6,9:F1} us  {t.Seconds / step,6:P1}" +
                (t.WeightBytesPerSecond is double r ? $"  {r / 1e9,7:G3} GB/s of weights" : ""));
    }

    private static string StopText(StopReason reason) => reason switch
    {
        StopReason.EndOfSequence => "end of sequence",
        StopReason.MaxSequenceLength => "max sequence length",
        _ => "max new tokens",
    };
}
