using System.Buffers;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using SpecializedInference.Engine;
using SpecializedInference.Scheduling;
using SpecializedInference.Text;

namespace SpecializedInference.Server;

/// <summary>
/// The OpenAI-compatible endpoints over one <see cref="InferenceEngine"/>. Every request runs through
/// <see cref="InferenceEngine.StreamAsync"/> with a token linked to the client's connection, so a client
/// that disconnects cancels its request and the engine frees its KV blocks.
/// </summary>
internal sealed class OpenAiApi
{
    private readonly InferenceEngine _engine;
    private readonly ServerOptions _options;
    private readonly ITextTokenizer? _tokenizer;
    private readonly RequestParser _parser;
    private readonly ILogger _logger;
    private readonly CancellationToken _stopping;
    private readonly long _created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
    private int _inFlight;
    private volatile bool _engineFailed;

    public OpenAiApi(InferenceEngine engine, ServerOptions options, ITextTokenizer? tokenizer, IChatTemplate? chatTemplate, ILogger logger, CancellationToken stopping)
    {
        _engine = engine;
        _options = options;
        _tokenizer = tokenizer;
        _logger = logger;
        _stopping = stopping;
        _parser = new RequestParser(options, tokenizer, chatTemplate, engine.MaxSeqLen, engine.VocabSize);
        int running = engine.Options.UseBatching ? engine.Options.MaxBatchSize : 1;
        Capacity = running + options.MaxWaitingRequests;
    }

    /// <summary>Requests accepted at once: the engine's batch plus <see cref="ServerOptions.MaxWaitingRequests"/>.</summary>
    public int Capacity { get; }

    public int InFlight => Volatile.Read(ref _inFlight);

    public ServerMetrics Metrics { get; } = new();

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/completions", (RequestDelegate)(context => HandleAsync(context, ApiKind.Completion)));
        app.MapPost("/v1/chat/completions", (RequestDelegate)(context => HandleAsync(context, ApiKind.Chat)));
        app.MapPost("/tokenize", (RequestDelegate)(context => HandleTextAsync(context, root =>
        {
            var ids = _parser.ParseTokenize(root);
            return ResponseJson.Tokenized(ids, _engine.MaxSeqLen);
        })));
        app.MapPost("/detokenize", (RequestDelegate)(context => HandleTextAsync(context, root => ResponseJson.Detokenized(_parser.ParseDetokenize(root)))));
        app.MapGet("/v1/models", (RequestDelegate)(context =>
            WriteJsonAsync(context, 200, ResponseJson.Models(_options.ModelName, _created, _engine.MaxSeqLen))));
        app.MapGet("/health", (RequestDelegate)(context => _engineFailed
            ? WriteJsonAsync(context, 503, ResponseJson.Health("engine_failed"))
            : WriteJsonAsync(context, 200, ResponseJson.Health("ok"))));
        app.MapGet("/metrics", (RequestDelegate)(async context =>
        {
            string text = PrometheusText.Render(_engine.Snapshot(), Metrics, InFlight, _options.ModelName);
            context.Response.ContentType = PrometheusText.ContentType;
            await context.Response.WriteAsync(text, context.RequestAborted).ConfigureAwait(false);
        }));
    }

    private async Task HandleAsync(HttpContext context, ApiKind kind)
    {
        try
        {
            byte[] body = await ReadBodyAsync(context).ConfigureAwait(false);
            ParsedRequest request;
            using (var document = RequestParser.ParseJson(body))
                request = kind == ApiKind.Completion ? _parser.ParseCompletion(document.RootElement) : _parser.ParseChat(document.RootElement);
            await GenerateAsync(context, kind, request).ConfigureAwait(false);
        }
        catch (ApiException e)
        {
            Metrics.Rejected(e.Status);
            if (context.Response.HasStarted)
                throw new InvalidOperationException("An API error after the response started.", e);
            if (e.Status == 429)
                context.Response.Headers.RetryAfter = _options.RetryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await ApiErrors.WriteAsync(context, e).ConfigureAwait(false);
        }
    }

    /// <summary>One choice of a request: its prompt, its engine request's tokens and the text they make.</summary>
    private sealed record ChoiceStream(int Index, int[] Prompt, IAsyncEnumerable<GeneratedToken> Tokens, OutputAssembler Output);

    // /tokenize and /detokenize: the tokenizer alone, no engine.
    private async Task HandleTextAsync(HttpContext context, Func<System.Text.Json.JsonElement, byte[]> answer)
    {
        try
        {
            byte[] body = await ReadBodyAsync(context).ConfigureAwait(false);
            byte[] json;
            using (var document = RequestParser.ParseJson(body))
                json = answer(document.RootElement);
            await WriteJsonAsync(context, 200, json).ConfigureAwait(false);
        }
        catch (ApiException e)
        {
            Metrics.Rejected(e.Status);
            await ApiErrors.WriteAsync(context, e).ConfigureAwait(false);
        }
    }

    private async Task GenerateAsync(HttpContext context, ApiKind kind, ParsedRequest request)
    {
        // Each prompt's n choices, prompt by prompt, as OpenAI numbers a batch's choices.
        int n = request.N * request.Prompts.Count;
        if (n > Capacity)
            throw ApiException.BadField(request.Prompts.Count > 1 ? "prompt" : "n",
                $"This request asks for {n} choices ({request.Prompts.Count} prompt{(request.Prompts.Count == 1 ? "" : "s")} × n {request.N}), but this server runs at most {Capacity} requests at once (max batch plus max_waiting_requests).");
        if (Interlocked.Add(ref _inFlight, n) > Capacity)
        {
            Interlocked.Add(ref _inFlight, -n);
            throw new ApiException(429,
                $"The server is busy: {Capacity} requests are already running or waiting (max batch plus max_waiting_requests {_options.MaxWaitingRequests}). Retry after {_options.RetryAfterSeconds} s.",
                null, "queue_full", ApiErrorTypes.RateLimit);
        }
        try
        {
            using var cancel = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping);
            string id = (kind == ApiKind.Completion ? "cmpl-" : "chatcmpl-") + Guid.NewGuid().ToString("N")[..24];
            var choices = new List<ChoiceStream>(n);
            // A prompt's other choices wait for its first choice's first token: by then the prompt's full blocks are in
            // the prefix cache, so the prompt is computed once rather than n times (vLLM forks a prefilled sequence).
            bool sharePrefill = request.N > 1 && _engine.Options.EnablePrefixCaching && _engine.Options.UseKvCache
                && !(request.Echo && request.Logprobs is not null); // scoring a prompt bypasses the prefix cache
            TaskCompletionSource? prefilled = null;
            try
            {
                for (int i = 0; i < n; i++)
                {
                    var prompt = request.Prompts[i / request.N];
                    int choice = i % request.N;
                    string name = n == 1 ? id : $"{id}-{i}";
                    IAsyncEnumerable<GeneratedToken> tokens;
                    if (!sharePrefill || prompt.Length <= _engine.BlockSize)
                    {
                        tokens = Submit(request, prompt, name, choice, cancel.Token);
                    }
                    else if (choice == 0)
                    {
                        prefilled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                        tokens = SignalFirstToken(Submit(request, prompt, name, choice, cancel.Token), prefilled);
                    }
                    else
                    {
                        var generation = Generation(request, prompt, name, choice);
                        tokens = SubmitAfter(prefilled!.Task, () => _engine.StreamAsync(generation, cancel.Token), cancel.Token);
                    }
                    choices.Add(new ChoiceStream(i, prompt, tokens,
                        new OutputAssembler(_tokenizer, request.Stop, kind == ApiKind.Completion ? prompt : [],
                            logprobs: request.Logprobs is not null, echo: request.Echo ? prompt : null, promptOnly: request.MaxTokens == 0, minTokens: request.Sampling.MinTokens)));
                }
            }
            catch
            {
                cancel.Cancel(); // the choices already submitted stop and free their blocks
                throw;
            }
            Metrics.AddPromptTokens(request.Prompts.Sum(p => p.Length));

            var outcome = request.Stream
                ? await StreamAsync(context, kind, id, request, choices, cancel).ConfigureAwait(false)
                : await RespondAsync(context, kind, id, request, choices, cancel).ConfigureAwait(false);
            foreach (var choice in choices)
                Metrics.Finished(choice.Output.Done ? RequestOutcome.Finished : outcome, choice.Output.FinishReason);
        }
        finally
        {
            Interlocked.Add(ref _inFlight, -n);
        }
    }

    // The first choice's tokens, completing `prefilled` at its first token or its end, whichever comes first.
    private static async IAsyncEnumerable<GeneratedToken> SignalFirstToken(IAsyncEnumerable<GeneratedToken> tokens, TaskCompletionSource prefilled)
    {
        try
        {
            await foreach (var token in tokens.ConfigureAwait(false))
            {
                prefilled.TrySetResult();
                yield return token;
            }
        }
        finally
        {
            prefilled.TrySetResult();
        }
    }

    // Another choice of the same prompt, submitted once the first has computed the prompt. The first's submission
    // checked the same request, so only a stopping engine can refuse this one (ObjectDisposedException, which the pump
    // reports as such).
    private static async IAsyncEnumerable<GeneratedToken> SubmitAfter(Task prefilled, Func<IAsyncEnumerable<GeneratedToken>> submit,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await prefilled.WaitAsync(cancellationToken).ConfigureAwait(false);
        await foreach (var token in submit().WithCancellation(cancellationToken).ConfigureAwait(false))
            yield return token;
    }

    // Choice i of a prompt's n: the request's sampling with seed + i, so a seeded request's choices differ and repeat.
    private GenerationRequest Generation(ParsedRequest request, int[] prompt, string name, int choice)
    {
        var sampling = request.Sampling.Seed is { } seed && choice > 0 ? request.Sampling with { Seed = unchecked(seed + (ulong)choice) } : request.Sampling;
        // max_tokens 0 (with echo): the engine still makes one token, from the prompt's own last logits, and the
        // output drops it.
        return new GenerationRequest(prompt, Math.Max(1, request.MaxTokens))
        {
            Sampling = sampling,
            EosTokenIds = _options.EosTokenIds,
            StopTokenIds = request.StopTokenIds,
            IgnoreEos = request.IgnoreEos,
            Name = name,
            Logprobs = request.Logprobs,
            PromptLogprobs = request.Echo ? request.Logprobs : null,
        };
    }

    private IAsyncEnumerable<GeneratedToken> Submit(ParsedRequest request, int[] prompt, string name, int choice, CancellationToken cancellationToken)
    {
        try
        {
            return _engine.StreamAsync(Generation(request, prompt, name, choice), cancellationToken);
        }
        catch (RequestRejectedException e)
        {
            throw EngineRejection(e);
        }
        catch (ObjectDisposedException)
        {
            throw ShuttingDown();
        }
        catch (InvalidOperationException e)
        {
            // The engine thread stopped after an internal error.
            _engineFailed = true;
            _logger.LogError(e, "The engine refused a request");
            throw new ApiException(503, "The engine has stopped after an internal error, so the server cannot generate; restart it.", null, "engine_failed", ApiErrorTypes.Server);
        }
    }

    // Every choice to its end; the first that does not finish cancels the others.
    private async Task<RequestOutcome> PumpAllAsync(string id, IReadOnlyList<ChoiceStream> choices, Func<ChoiceStream, string, Task>? onToken,
        CancellationTokenSource cancel)
    {
        var outcomes = await Task.WhenAll(choices.Select(async choice =>
        {
            var outcome = await PumpAsync(id, choice.Tokens, choice.Output,
                onToken is null ? null : text => onToken(choice, text), cancel.Token).ConfigureAwait(false);
            if (outcome != RequestOutcome.Finished)
                cancel.Cancel();
            return outcome;
        })).ConfigureAwait(false);
        return outcomes.All(o => o == RequestOutcome.Finished) ? RequestOutcome.Finished
            : outcomes.Contains(RequestOutcome.Failed) ? RequestOutcome.Failed
            : outcomes.Contains(RequestOutcome.EngineStopped) ? RequestOutcome.EngineStopped
            : RequestOutcome.Aborted;
    }

    private static TokenUsage Usage(ParsedRequest request, IReadOnlyList<ChoiceStream> choices) =>
        new(request.Prompts.Sum(p => p.Length), choices.Sum(c => c.Output.Tokens.Count));

    // A plain response: generate everything, then answer once.
    private async Task<RequestOutcome> RespondAsync(HttpContext context, ApiKind kind, string id, ParsedRequest request,
        IReadOnlyList<ChoiceStream> choices, CancellationTokenSource cancel)
    {
        var outcome = await PumpAllAsync(id, choices, onToken: null, cancel).ConfigureAwait(false);
        switch (outcome)
        {
            case RequestOutcome.Finished:
                var json = ResponseJson.Choices(kind, chunk: false, id, Now(), _options.ModelName,
                    choices.Select(c => new ChoiceContent(c.Index, c.Output.Text, c.Output.Tokens, c.Output.FinishReason, c.Output.Logprobs)).ToArray(),
                    Usage(request, choices));
                await WriteJsonAsync(context, 200, json).ConfigureAwait(false);
                break;
            case RequestOutcome.Aborted when context.RequestAborted.IsCancellationRequested:
                break; // nobody to answer
            case RequestOutcome.Aborted or RequestOutcome.EngineStopped:
                await ApiErrors.WriteAsync(context, ShuttingDown()).ConfigureAwait(false);
                break;
            default:
                await ApiErrors.WriteAsync(context, 500, ApiErrors.Json(GenerationFailedMessage, ApiErrorTypes.Server, null, "generation_failed")).ConfigureAwait(false);
                break;
        }
        return outcome;
    }

    // Server-sent events: one chunk per token of a choice (the choices' chunks interleave as their tokens come), the
    // last one of the request with the usage, then [DONE].
    private async Task<RequestOutcome> StreamAsync(HttpContext context, ApiKind kind, string id, ParsedRequest request,
        IReadOnlyList<ChoiceStream> choices, CancellationTokenSource cancel)
    {
        var response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        response.Headers["X-Accel-Buffering"] = "no";
        var body = response.Body;
        long created = Now();
        var started = new bool[choices.Count];
        int unfinished = choices.Count;
        using var writing = new SemaphoreSlim(1, 1); // the choices' pumps take turns on the body
        var cancellationToken = cancel.Token;

        async Task WriteToken(ChoiceStream choice, string text)
        {
            await writing.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                var output = choice.Output;
                // The request's last chunk carries the usage of all its choices.
                if (output.Done) unfinished--;
                TokenUsage? usage = unfinished == 0 ? Usage(request, choices) : null;
                var json = ResponseJson.Choices(kind, chunk: true, id, created, _options.ModelName,
                    [new ChoiceContent(choice.Index, text, output.ChunkTokens, output.FinishReason, output.ChunkLogprobs, FirstChunk: !started[choice.Index])], usage);
                started[choice.Index] = true;
                await body.WriteAsync(ResponseJson.Event(json), cancellationToken).ConfigureAwait(false);
                await body.FlushAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                writing.Release();
            }
        }

        try
        {
            await response.StartAsync(cancellationToken).ConfigureAwait(false);
            await body.FlushAsync(cancellationToken).ConfigureAwait(false); // the headers now, not with the first token
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            return RequestOutcome.Aborted; // leaving without reading the streams cancels the requests
        }
        var outcome = await PumpAllAsync(id, choices, WriteToken, cancel).ConfigureAwait(false);
        byte[]? tail = outcome switch
        {
            RequestOutcome.Finished when request.IncludeUsage => ResponseJson.Event(ResponseJson.UsageChunk(kind, id, created, _options.ModelName, Usage(request, choices))),
            RequestOutcome.Finished => Array.Empty<byte>(),
            RequestOutcome.Failed => ResponseJson.Event(ApiErrors.Json(GenerationFailedMessage, ApiErrorTypes.Server, null, "generation_failed")),
            _ when context.RequestAborted.IsCancellationRequested => null,
            _ => ResponseJson.Event(ApiErrors.Json(ShuttingDown())),
        };
        if (tail is not null)
        {
            try
            {
                await body.WriteAsync(tail, context.RequestAborted).ConfigureAwait(false);
                await body.WriteAsync(ResponseJson.Done, context.RequestAborted).ConfigureAwait(false);
                await body.FlushAsync(context.RequestAborted).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException)
            {
                // The client left after its last token.
            }
        }
        return outcome;
    }

    private const string GenerationFailedMessage = "The model failed while generating this request; the server logged the details.";

    // Reads tokens into the output until it is complete. Leaving the loop early (a stop string, a write to a
    // client that left) disposes the stream, which cancels the request in the engine and frees its blocks.
    private async Task<RequestOutcome> PumpAsync(string id, IAsyncEnumerable<GeneratedToken> tokens, OutputAssembler output,
        Func<string, Task>? onToken, CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var token in tokens.ConfigureAwait(false))
            {
                string text = output.Accept(token);
                if (onToken is not null)
                    await onToken(text).ConfigureAwait(false);
                if (output.Done)
                    break;
            }
            return output.Done ? RequestOutcome.Finished : RequestOutcome.Aborted;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // Cancelled: the client left (a write failed or the connection closed) or the server is stopping.
            return RequestOutcome.Aborted;
        }
        catch (InferenceRequestException e)
        {
            _logger.LogError("Request {Id} failed in the engine: {Message}", id, e.Message);
            return RequestOutcome.Failed;
        }
        catch (ObjectDisposedException)
        {
            return RequestOutcome.EngineStopped;
        }
    }

    private async Task<byte[]> ReadBodyAsync(HttpContext context)
    {
        long limit = _options.MaxRequestBodyBytes;
        var request = context.Request;
        if (request.ContentLength is long declared && declared > limit)
            throw TooLarge(declared);
        // This endpoint enforces its own limit (a 400 with an error object, not Kestrel's bare 413).
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } feature)
            feature.MaxRequestBodySize = null;
        using var body = new MemoryStream();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(buffer, context.RequestAborted).ConfigureAwait(false)) > 0)
            {
                if (body.Length + read > limit)
                    throw TooLarge(null);
                body.Write(buffer, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return body.ToArray();

        ApiException TooLarge(long? size) => new(400,
            $"The request body is {(size is { } n ? $"{n} bytes" : "larger than the limit")}; this server accepts at most {limit} bytes.",
            null, "request_too_large");
    }

    private static ApiException EngineRejection(RequestRejectedException e)
    {
        string? param = e.ParamName switch
        {
            nameof(GenerationRequest.PromptTokenIds) => "prompt",
            nameof(GenerationRequest.MaxNewTokens) => "max_tokens",
            nameof(GenerationRequest.Sampling) => "temperature",
            nameof(GenerationRequest.Logprobs) or nameof(GenerationRequest.PromptLogprobs) => "logprobs",
            _ => null,
        };
        // The engine's message names the request and the limit; drop ArgumentException's " (Parameter 'x')" suffix.
        string message = e.ParamName is null ? e.Message : e.Message.Replace($" (Parameter '{e.ParamName}')", "");
        return new ApiException(400, message, param, "invalid_value");
    }

    private static ApiException ShuttingDown() =>
        new(503, "The server is shutting down and cannot finish this request.", null, "shutting_down", ApiErrorTypes.Server);

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    private static async Task WriteJsonAsync(HttpContext context, int status, byte[] json)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        try
        {
            await context.Response.Body.WriteAsync(json, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
        }
    }
}
