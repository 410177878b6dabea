using System.ComponentModel;
using System.Globalization;
using SpecializedInference.Accelerators;
using SpecializedInference.Server;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary>Options shared by commands that load a model.</summary>
internal class ModelSettings : CommandSettings
{
    [CommandOption("-m|--model <DIR>")]
    [Description("Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.model).")]
    public string? Model { get; init; }

    [CommandOption("--synthetic")]
    [Description("Serve a synthetic model runner (no weights; logits hash the token history) to exercise clients and measure serving overhead. With --model, its tokenizer and vocabulary are used.")]
    public bool Synthetic { get; init; }

    [CommandOption("--model-name <NAME>")]
    [Description("The model id clients use (default: the checkpoint folder's name, or 'synthetic').")]
    public string? ModelName { get; init; }

    [CommandOption("--max-batch-size <N>")]
    [Description("Requests the engine runs at once.")]
    [DefaultValue(16)]
    public int MaxBatchSize { get; init; } = 16;

    [CommandOption("--kv-blocks <N>")]
    [Description("KV-cache blocks (default: room for max-batch-size sequences of max_seq_len tokens; lower it for a big model).")]
    public int? KvBlocks { get; init; }

    [CommandOption("--device <DEVICE>")]
    [Description("Where the model runs: auto (CUDA when usable, else the CPU accelerator), cpu or cuda.")]
    [DefaultValue(DeviceKind.Auto)]
    public DeviceKind Device { get; init; } = DeviceKind.Auto;

    [CommandOption("--cuda-cores")]
    [Description("f16 projections and decode attention on CUDA cores only (tensor cores are the default on CUDA).")]
    public bool CudaCores { get; init; }

    [CommandOption("--synthetic-vocab <N>")]
    [Description("Vocabulary of the synthetic runner without --model.")]
    [DefaultValue(1024)]
    public int SyntheticVocab { get; init; } = 1024;

    [CommandOption("--synthetic-max-seq-len <N>")]
    [Description("max_seq_len of the synthetic runner without --model.")]
    [DefaultValue(2048)]
    public int SyntheticMaxSeqLen { get; init; } = 2048;

    [CommandOption("--synthetic-step-ms <MS>")]
    [Description("Milliseconds the synthetic runner sleeps per step, standing in for model compute.")]
    [DefaultValue(0.0)]
    public double SyntheticStepMs { get; init; }

    [CommandOption("-v|--verbose")]
    [Description("Show stack traces of errors.")]
    public bool Verbose { get; init; }

    public override ValidationResult Validate() => ValidateModelOptions(requireModel: true);

    protected ValidationResult ValidateModelOptions(bool requireModel)
    {
        if (requireModel && Model is null && !Synthetic)
            return ValidationResult.Error("Give --model <DIR> (a checkpoint folder) or --synthetic.");
        if (CudaCores && (Synthetic || Model is null))
            return ValidationResult.Error("--cuda-cores needs a model run from its weights (--model without --synthetic): the synthetic runner has no projections to run on CUDA cores.");
        if (MaxBatchSize < 1)
            return ValidationResult.Error($"--max-batch-size is {MaxBatchSize}; it must be at least 1.");
        if (KvBlocks is < 1)
            return ValidationResult.Error($"--kv-blocks is {KvBlocks}; it must be at least 1.");
        if (SyntheticVocab < 2)
            return ValidationResult.Error($"--synthetic-vocab is {SyntheticVocab}; it must be at least 2.");
        if (SyntheticMaxSeqLen < 2)
            return ValidationResult.Error($"--synthetic-max-seq-len is {SyntheticMaxSeqLen}; it must be at least 2.");
        if (SyntheticStepMs < 0)
            return ValidationResult.Error($"--synthetic-step-ms is {SyntheticStepMs}; it must be at least 0.");
        return ValidationResult.Success();
    }

    public ModelRequest ToRequest() => new(Model, Synthetic, ModelName, MaxBatchSize, KvBlocks, Device, SyntheticVocab, SyntheticMaxSeqLen,
        TimeSpan.FromMilliseconds(SyntheticStepMs), TensorCores: !CudaCores);
}

/// <summary><c>si serve</c>: the OpenAI-compatible HTTP server.</summary>
internal sealed class ServeCommand : AsyncCommand<ServeCommand.Settings>
{
    internal sealed class Settings : ModelSettings
    {
        [CommandOption("--host <HOST>")]
        [Description("Address to listen on: an IP address or localhost (0.0.0.0 for every interface).")]
        [DefaultValue("127.0.0.1")]
        public string Host { get; init; } = "127.0.0.1";

        [CommandOption("-p|--port <PORT>")]
        [Description("TCP port (0 picks a free one).")]
        [DefaultValue(8000)]
        public int Port { get; init; } = 8000;

        [CommandOption("--max-waiting <N>")]
        [Description("Requests that may wait beyond the running batch; more get 429 with Retry-After.")]
        [DefaultValue(256)]
        public int MaxWaiting { get; init; } = 256;

        [CommandOption("--max-body-bytes <BYTES>")]
        [Description("Largest request body; larger ones get 400.")]
        [DefaultValue(1048576L)]
        public long MaxBodyBytes { get; init; } = 1 << 20;

        public override ValidationResult Validate()
        {
            var common = base.Validate();
            if (!common.Successful)
                return common;
            if (Port is < 0 or > 65535)
                return ValidationResult.Error($"--port is {Port}; it must be between 0 and 65535.");
            if (MaxWaiting < 0)
                return ValidationResult.Error($"--max-waiting is {MaxWaiting}; it must be at least 0.");
            if (MaxBodyBytes < 1)
                return ValidationResult.Error($"--max-body-bytes is {MaxBodyBytes}; it must be at least 1.");
            if (!Host.Equals("localhost", StringComparison.OrdinalIgnoreCase) && !System.Net.IPAddress.TryParse(Host.Trim('[', ']'), out _))
                return ValidationResult.Error($"--host '{Host}' must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost.");
            return ValidationResult.Success();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var console = AnsiConsole.Console;
        var model = await ConsoleUi.WithLoadProgressAsync(console, progress => Task.Run(() => ModelLoading.Load(settings.ToRequest(), progress), cancellationToken));
        using var engine = model.Engine;
        foreach (var note in model.Notes)
            console.MarkupLine($"[yellow]note:[/] {Markup.Escape(note)}");

        var options = new ServerOptions
        {
            ModelName = model.Name,
            Host = settings.Host,
            Port = settings.Port,
            MaxWaitingRequests = settings.MaxWaiting,
            MaxRequestBodyBytes = settings.MaxBodyBytes,
            EosTokenIds = model.EosTokenIds,
            AddBos = model.AddBos,
            ChatTemplateError = model.ChatTemplateError,
            LogToConsole = true,
        };
        await using var server = InferenceServer.Create(engine, options, model.Tokenizer, model.ChatTemplate);
        await server.StartAsync(cancellationToken);

        var url = server.BaseAddress.ToString().TrimEnd('/');
        console.MarkupLine($"Serving [bold]{Markup.Escape(model.Name)}[/] ({Markup.Escape(model.Description)})");
        console.MarkupLine($"  on [link]{url}[/]: POST /v1/completions{(model.ChatTemplate is null ? "" : ", POST /v1/chat/completions")}, GET /v1/models, GET /health, GET /metrics");
        console.MarkupLine(model.Tokenizer is null ? "  prompts: token ids only (no tokenizer)" : "  prompts: text or token ids");
        console.MarkupLine($"  max batch {engine.Options.MaxBatchSize}, up to {server.Capacity} requests in flight, max_seq_len {engine.MaxSeqLen}. Ctrl+C to stop.");
        console.MarkupLine($"[grey]  try: curl {url}/v1/completions -H 'Content-Type: application/json' -d '{{\"prompt\": {Markup.Escape(model.Tokenizer is null ? "[1, 2, 3]" : "\"Hello\"")}, \"max_tokens\": 16}}'[/]");

        try
        {
            await server.WaitForShutdownAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
        await server.StopAsync(CancellationToken.None);

        var s = engine.Snapshot();
        var ci = CultureInfo.InvariantCulture;
        console.MarkupLine(string.Create(ci,
            $"Stopped after {s.UptimeSeconds:F0} s: {s.CompletedRequests} requests completed, {s.CancelledRequests} cancelled, {s.FailedRequests} failed; "
            + $"{s.GeneratedTokens} tokens generated; time to first token p50 {Ms(s.TimeToFirstToken.P50Ms)}, p95 {Ms(s.TimeToFirstToken.P95Ms)}."));
        return ExitCodes.Ok;
    }

    private static string Ms(double ms) => double.IsNaN(ms) ? "-" : ms.ToString("F1", CultureInfo.InvariantCulture) + " ms";
}
