using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SpecializedInference.Engine;
using SpecializedInference.Text;

namespace SpecializedInference.Server;

/// <summary>
/// An OpenAI-compatible HTTP server (ASP.NET Core, Kestrel, minimal APIs) over an <see cref="InferenceEngine"/>:
/// <c>POST /v1/completions</c>, <c>POST /v1/chat/completions</c>, <c>GET /v1/models</c>, <c>GET /health</c>,
/// <c>GET /metrics</c> (Prometheus).
/// <code>
/// await using var server = InferenceServer.Create(engine, new ServerOptions { ModelName = "m", Port = 0 }, tokenizer);
/// await server.StartAsync();
/// Console.WriteLine(server.BaseAddress);   // http://127.0.0.1:41234/
/// await server.WaitForShutdownAsync();      // Ctrl+C / SIGTERM
/// </code>
/// The server does not own the engine: dispose the engine after the server.
/// </summary>
public sealed class InferenceServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly OpenAiApi _api;
    private Uri? _baseAddress;
    private bool _disposed;

    private InferenceServer(WebApplication app, OpenAiApi api, ServerOptions options)
    {
        _app = app;
        _api = api;
        Options = options;
    }

    /// <summary>
    /// Builds a server over <paramref name="engine"/>. Without a <paramref name="tokenizer"/> prompts must be
    /// token ids and responses carry token ids only; without a <paramref name="chatTemplate"/>,
    /// <c>/v1/chat/completions</c> answers 400 saying why.
    /// </summary>
    public static InferenceServer Create(InferenceEngine engine, ServerOptions? options = null, ITextTokenizer? tokenizer = null, IChatTemplate? chatTemplate = null)
    {
        ArgumentNullException.ThrowIfNull(engine);
        options ??= new ServerOptions();
        options.Validate();
        var listen = ParseHost(options.Host);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            Args = Array.Empty<string>(),
            ApplicationName = typeof(InferenceServer).Assembly.GetName().Name,
            ContentRootPath = AppContext.BaseDirectory,
            // Never the developer exception page: no stack trace leaves the server.
            EnvironmentName = Environments.Production,
        });
        builder.Logging.ClearProviders();
        if (options.LogToConsole)
        {
            builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
            builder.Logging.SetMinimumLevel(LogLevel.Warning);
        }
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(options.ShutdownTimeoutSeconds));
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
            if (listen is null && options.Port != 0)
                kestrel.ListenLocalhost(options.Port);
            else if (listen is null)
                kestrel.Listen(IPAddress.Loopback, 0); // Kestrel cannot bind "localhost" to a dynamic port
            else
                kestrel.Listen(listen!, options.Port);
        });

        var app = builder.Build();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("SpecializedInference.Server");
        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        var api = new OpenAiApi(engine, options, tokenizer, chatTemplate, logger, lifetime.ApplicationStopping);

        // An unexpected exception becomes a 500 error object; its details go to the log only.
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = context =>
            {
                var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
                logger.LogError(error, "Unhandled exception for {Method} {Path}", context.Request.Method, context.Request.Path);
                return ApiErrors.WriteAsync(context, 500,
                    ApiErrors.Json("The server had an internal error while handling this request; the details are in its log.", ApiErrorTypes.Server, null, "internal_error"));
            },
        });
        // Unknown routes and methods get an error object too.
        app.UseStatusCodePages(context =>
        {
            var http = context.HttpContext;
            int status = http.Response.StatusCode;
            string message = status switch
            {
                404 => $"There is no endpoint at {http.Request.Path}; see GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health, GET /metrics.",
                405 => $"{http.Request.Method} is not allowed on {http.Request.Path}.",
                _ => $"HTTP {status}.",
            };
            return ApiErrors.WriteAsync(http, status, ApiErrors.Json(message, status >= 500 ? ApiErrorTypes.Server : ApiErrorTypes.InvalidRequest, null,
                status switch { 404 => "not_found", 405 => "method_not_allowed", _ => null }));
        });
        api.Map(app);
        return new InferenceServer(app, api, options);
    }

    public ServerOptions Options { get; }

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:41234/</c> (the bound port when <see cref="ServerOptions.Port"/> is 0).</summary>
    public Uri BaseAddress => _baseAddress ?? throw new InvalidOperationException("The server has not been started.");

    /// <summary>Requests accepted at once (engine batch plus max waiting); beyond it requests get 429.</summary>
    public int Capacity => _api.Capacity;

    /// <summary>Requests accepted and not finished now.</summary>
    public int InFlight => _api.InFlight;

    /// <summary>Binds the port and starts serving; throws (e.g. <see cref="IOException"/>) when the address is in use.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _app.StartAsync(cancellationToken).ConfigureAwait(false);
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        string address = addresses?.FirstOrDefault() ?? throw new InvalidOperationException("Kestrel reported no bound address.");
        _baseAddress = new Uri(address.EndsWith('/') ? address : address + "/");
    }

    /// <summary>Completes when the host stops (Ctrl+C, SIGTERM, or <see cref="StopAsync"/>).</summary>
    public Task WaitForShutdownAsync(CancellationToken cancellationToken = default) => _app.WaitForShutdownAsync(cancellationToken);

    /// <summary>Stops accepting requests, cancels running generations, and waits up to the shutdown timeout.</summary>
    public Task StopAsync(CancellationToken cancellationToken = default) => _app.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (_disposed)
            return;
        _disposed = true;
        try
        {
            await _app.StopAsync().ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        await _app.DisposeAsync().ConfigureAwait(false);
    }

    // null = localhost (both loopbacks).
    private static IPAddress? ParseHost(string host)
    {
        if (host.Equals("localhost", StringComparison.OrdinalIgnoreCase))
            return null;
        if (host is "*" or "+")
            return IPAddress.Any;
        return IPAddress.TryParse(host.Trim('[', ']'), out var address)
            ? address
            : throw new ArgumentException($"Host '{host}' must be an IP address (127.0.0.1, 0.0.0.0, ::1) or localhost.", nameof(host));
    }
}
