using System.ComponentModel;
using System.Globalization;
using SpecializedInference.Server;
using SpecializedInference.Server.Load;
using Spectre.Console;
using Spectre.Console.Cli;

namespace SpecializedInference.Cli.Commands;

/// <summary>
/// <c>si loadtest</c>: a bounded load check. With <c>--url</c> it loads a running server; without, it starts
/// one in-process on a free loopback port over <c>--model</c> or the synthetic runner.
/// </summary>
internal sealed class LoadTestCommand : AsyncCommand<LoadTestCommand.Settings>
{
    internal sealed class Settings : ModelSettings
    {
        [CommandOption("--url <URL>")]
        [Description("A running server to load (e.g. http://127.0.0.1:8000). Without it an in-process server on 127.0.0.1 is started (add --model DIR, else --synthetic is implied).")]
        public string? Url { get; init; }

        [CommandOption("-n|--requests <N>")]
        [Description("Requests to send in all.")]
        [DefaultValue(200)]
        public int Requests { get; init; } = 200;

        [CommandOption("-c|--concurrency <N>")]
        [Description("Requests in flight at once (closed loop).")]
        [DefaultValue(16)]
        public int Concurrency { get; init; } = 16;

        [CommandOption("--max-tokens <N>")]
        [Description("Tokens each request generates (sent with ignore_eos).")]
        [DefaultValue(16)]
        public int MaxTokens { get; init; } = 16;

        [CommandOption("--prompt-tokens <N>")]
        [Description("Length of the random token-id prompts.")]
        [DefaultValue(8)]
        public int PromptTokens { get; init; } = 8;

        [CommandOption("--prompt-vocab <N>")]
        [Description("Random prompt ids are drawn from 1 to N-1: keep N within the model's vocabulary.")]
        [DefaultValue(32)]
        public int PromptVocab { get; init; } = 32;

        [CommandOption("--prompt-text <TEXT>")]
        [Description("Send this text prompt instead of random token ids (the server needs a tokenizer).")]
        public string? PromptText { get; init; }

        [CommandOption("--warmup <N>")]
        [Description("Requests sent first and not measured (JIT and connection warm-up).")]
        [DefaultValue(16)]
        public int Warmup { get; init; } = 16;

        [CommandOption("--no-stream")]
        [Description("Plain responses instead of server-sent events.")]
        public bool NoStream { get; init; }

        [CommandOption("--duration <SECONDS>")]
        [Description("Start no new request after this many seconds.")]
        [DefaultValue(60.0)]
        public double DurationSeconds { get; init; } = 60;

        public override ValidationResult Validate()
        {
            if (Url is not null && (Model is not null || Synthetic))
                return ValidationResult.Error("--url loads a running server; --model and --synthetic start one. Give one or the other.");
            if (Url is not null && !(Uri.TryCreate(Url, UriKind.Absolute, out var u) && u.Scheme is "http" or "https"))
                return ValidationResult.Error($"--url '{Url}' must be an absolute http:// or https:// URL.");
            if (Requests < 1 || Concurrency < 1 || MaxTokens < 1 || PromptTokens < 1)
                return ValidationResult.Error("--requests, --concurrency, --max-tokens and --prompt-tokens must be at least 1.");
            if (Warmup < 0)
                return ValidationResult.Error($"--warmup is {Warmup}; it must be at least 0.");
            if (PromptVocab < 2)
                return ValidationResult.Error($"--prompt-vocab is {PromptVocab}; it must be at least 2.");
            if (DurationSeconds <= 0)
                return ValidationResult.Error($"--duration is {DurationSeconds}; it must be positive.");
            // Without --url the in-process server serves --model, else the synthetic runner.
            return Url is null ? ValidateModelOptions(requireModel: false) : ValidationResult.Success();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var console = AnsiConsole.Console;
        LoadedModel? model = null;
        InferenceServer? server = null;
        try
        {
            Uri target;
            string what;
            if (settings.Url is { } url)
            {
                target = new Uri(url.EndsWith('/') ? url : url + "/");
                what = $"server at {target}";
            }
            else
            {
                var request = settings.ToRequest() with { Synthetic = settings.Synthetic || settings.Model is null, MaxBatchSize = settings.MaxBatchSize };
                model = await ConsoleUi.WithLoadProgressAsync(console, progress => Task.Run(() => ModelLoading.Load(request, progress), cancellationToken));
                server = InferenceServer.Create(model.Engine, new ServerOptions
                {
                    ModelName = model.Name,
                    Host = "127.0.0.1",
                    Port = 0,
                    MaxWaitingRequests = Math.Max(settings.Concurrency, 1),
                    EosTokenIds = model.EosTokenIds,
                    AddBos = model.AddBos,
                    ChatTemplateError = model.ChatTemplateError,
                }, model.Tokenizer, model.ChatTemplate);
                await server.StartAsync(cancellationToken);
                target = server.BaseAddress;
                what = $"in-process server at {target} over {model.Description}, max batch {model.Engine.Options.MaxBatchSize}";
            }

            console.MarkupLine($"Load check: {settings.Requests} requests after {settings.Warmup} warm-up ones, concurrency {settings.Concurrency}, "
                + $"{(settings.PromptText is null ? $"{settings.PromptTokens}-token prompts" : "text prompt")}, {settings.MaxTokens} tokens each, "
                + $"{(settings.NoStream ? "plain" : "streaming")}; {Markup.Escape(what)}");
            using var http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
            var result = await console.Status().StartAsync("Sending requests...", _ => LoadGenerator.RunAsync(http, new LoadTestOptions
            {
                BaseAddress = target,
                Requests = settings.Requests,
                Concurrency = settings.Concurrency,
                MaxTokens = settings.MaxTokens,
                PromptTokens = settings.PromptTokens,
                PromptVocabulary = settings.PromptVocab,
                PromptText = settings.PromptText,
                Stream = !settings.NoStream,
                WarmupRequests = settings.Warmup,
                Duration = TimeSpan.FromSeconds(settings.DurationSeconds),
            }, cancellationToken));

            var ci = CultureInfo.InvariantCulture;
            string Ms(double ms) => double.IsNaN(ms) ? "-" : ms.ToString("F1", ci);
            if (console.Profile.Capabilities.Interactive)
            {
                var table = new Table().AddColumns("requests ok", "failed", "wall s", "req/s", "p50 ms", "p95 ms", "max ms", "TTFT p50 ms", "TTFT p95 ms", "tokens/s");
                table.AddRow($"{result.Succeeded}/{result.Sent}", $"{result.Failed}", result.Seconds.ToString("F2", ci), result.RequestsPerSecond.ToString("F1", ci),
                    Ms(result.LatencyP50Ms), Ms(result.LatencyP95Ms), Ms(result.LatencyMaxMs),
                    Ms(result.TimeToFirstTokenP50Ms), Ms(result.TimeToFirstTokenP95Ms), result.CompletionTokensPerSecond.ToString("F0", ci));
                console.Write(table);
            }
            console.WriteLine(result.Summary);
            foreach (var error in result.FirstErrors)
                console.MarkupLine($"[red]failed:[/] {Markup.Escape(error)}");
            return result.Failed == 0 ? ExitCodes.Ok : ExitCodes.RuntimeError;
        }
        finally
        {
            if (server is not null)
                await server.DisposeAsync();
            model?.Engine.Dispose();
        }
    }
}
