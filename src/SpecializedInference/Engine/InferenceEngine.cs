using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using SpecializedInference.Runtime;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Engine;

/// <summary>
/// The serving API: many threads submit requests; one dedicated engine thread runs the step loop
/// (scheduler → model runner → sampling) and streams tokens back through channels.
/// <para>Lifecycle of a request: <see cref="StreamAsync"/> / <see cref="GenerateAsync"/> validate it at once
/// (throwing <see cref="RequestRejectedException"/> naming the request and the limit) and queue it. It ends
/// with Stop/Length; or Cancelled when its token is cancelled (or a stream reader stops early), which frees
/// its KV blocks before the caller is told; or Error when the runner/sampler failed on it. Disposing the
/// engine ends every outstanding request (Cancelled, with an error text) so nothing hangs.</para>
/// <para>The model runner is only ever called from the engine thread.</para>
/// </summary>
public sealed class InferenceEngine : IDisposable, IAsyncDisposable
{
    private readonly bool _ownsRunner;
    private readonly ConcurrentQueue<Command> _commands = new();
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly object _submitLock = new();
    private readonly Dictionary<long, RequestHandle> _handles = new(); // engine thread only
    private readonly Thread _thread;
    private EngineCore _core = null!; // set by the engine thread before the constructor returns
    private long _nextId;
    private bool _stopping; // guarded by _submitLock
    private volatile string? _fault;
    private Exception? _runnerDisposeError;

    /// <summary>
    /// Builds an engine over a model runner (which it disposes, on the engine thread, unless
    /// <paramref name="ownsRunner"/> is false). The runner is called from the engine thread, not the one
    /// that built it; <see cref="Create"/> and <see cref="FromCheckpoint"/> build it on the engine thread.
    /// </summary>
    public InferenceEngine(IModelRunner runner, EngineOptions? options = null, TokenSamplerFactory? samplerFactory = null, bool ownsRunner = true)
        : this(() => runner ?? throw new ArgumentNullException(nameof(runner)), options, samplerFactory, ownsRunner, disposeRunnerOnFailure: false)
    {
    }

    private InferenceEngine(Func<IModelRunner> createRunner, EngineOptions? options, TokenSamplerFactory? samplerFactory, bool ownsRunner, bool disposeRunnerOnFailure)
    {
        _ownsRunner = ownsRunner;
        var ready = new TaskCompletionSource();
        // The runner is created (factory paths), used and disposed on this one thread: device contexts are thread-affine.
        _thread = new Thread(() =>
        {
            IModelRunner? runner = null;
            try
            {
                runner = createRunner();
                _core = new EngineCore(runner, options, samplerFactory);
            }
            catch (Exception e)
            {
                if (disposeRunnerOnFailure)
                    runner?.Dispose();
                ready.SetException(e);
                return;
            }
            ready.SetResult();
            Loop();
        })
        { IsBackground = true, Name = "SpecializedInference engine" };
        _thread.Start();
        ready.Task.GetAwaiter().GetResult();
    }

    /// <summary>
    /// Builds an engine whose runner comes from <paramref name="createRunner"/>, called once with the
    /// options on the engine thread (where the runner is then used and disposed).
    /// </summary>
    public static InferenceEngine Create(Func<EngineOptions, IModelRunner> createRunner, EngineOptions? options = null, TokenSamplerFactory? samplerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(createRunner);
        options ??= new EngineOptions();
        return new InferenceEngine(() => createRunner(options), options, samplerFactory, ownsRunner: true, disposeRunnerOnFailure: true);
    }

    /// <summary>
    /// The checkpoint path: <paramref name="createRunner"/> loads the model at <paramref name="checkpointDirectory"/>
    /// (e.g. <c>(dir, o) => LlamaModelRunner.Load(dir, o)</c> once the model runner lands) and sizes its KV
    /// cache from <see cref="EngineOptions.KvBlocks"/> (see <see cref="KvCache.KvCacheSizing"/>). It runs on
    /// the engine thread.
    /// </summary>
    public static InferenceEngine FromCheckpoint(string checkpointDirectory, EngineOptions options,
        Func<string, EngineOptions, IModelRunner> createRunner, TokenSamplerFactory? samplerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(checkpointDirectory);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(createRunner);
        if (!Directory.Exists(checkpointDirectory))
            throw new DirectoryNotFoundException($"Checkpoint directory '{checkpointDirectory}' does not exist.");
        return new InferenceEngine(() => createRunner(checkpointDirectory, options), options, samplerFactory, ownsRunner: true, disposeRunnerOnFailure: true);
    }

    public EngineOptions Options => _core.Options;

    public int BlockSize => _core.BlockSize;

    public int NumBlocks => _core.NumBlocks;

    public int MaxSeqLen => _core.MaxSeqLen;

    public int VocabSize => _core.Runner.VocabSize;

    internal EngineCore Core => _core;

    /// <summary>
    /// Submits a request now and streams its tokens as they are sampled; the last one carries the finish
    /// reason. Cancelling <paramref name="cancellationToken"/> (or a token given to <c>WithCancellation</c>)
    /// frees the request's blocks and then throws <see cref="OperationCanceledException"/> to the reader;
    /// stopping the enumeration early cancels the request. Engine disposal throws
    /// <see cref="ObjectDisposedException"/>, a runner failure <see cref="InferenceRequestException"/>.
    /// </summary>
    public IAsyncEnumerable<GeneratedToken> StreamAsync(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        var handle = Submit(request, streaming: true, cancellationToken);
        return ReadStream(handle, cancellationToken);
    }

    /// <summary>
    /// Submits a request and completes with all its tokens. Cancellation does not throw: the completion
    /// then has <see cref="FinishReason.Cancelled"/> and the tokens generated so far (its blocks are already freed).
    /// </summary>
    public Task<Completion> GenerateAsync(GenerationRequest request, CancellationToken cancellationToken = default) =>
        Submit(request, streaming: false, cancellationToken).Completion.Task;

    /// <summary>Measured statistics now (thread-safe).</summary>
    public EngineStatistics Snapshot() => _core.Snapshot();

    public void Dispose()
    {
        bool first;
        lock (_submitLock)
        {
            first = !_stopping;
            _stopping = true;
        }
        if (first)
            _wake.Release();
        // The engine thread finishes every outstanding request, then disposes the runner it owns.
        if (Thread.CurrentThread != _thread)
            _thread.Join();
        if (Interlocked.Exchange(ref _runnerDisposeError, null) is { } error)
            throw new InvalidOperationException($"Disposing the model runner failed: {error.Message}", error);
    }

    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }

    private RequestHandle Submit(GenerationRequest request, bool streaming, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (_fault is { } fault)
            throw new InvalidOperationException($"The engine stopped after an internal error: {fault}");
        long id = Interlocked.Increment(ref _nextId);
        var prepared = _core.Prepare(id, request, Stopwatch.GetTimestamp());
        var handle = new RequestHandle(prepared, streaming, cancellationToken);
        lock (_submitLock)
        {
            ObjectDisposedException.ThrowIf(_stopping, this);
            _commands.Enqueue(new Command(handle, Abort: false));
        }
        _wake.Release();
        if (cancellationToken.CanBeCanceled)
            handle.SetRegistration(cancellationToken.Register(() => RequestAbort(handle)));
        return handle;
    }

    private async IAsyncEnumerable<GeneratedToken> ReadStream(RequestHandle handle, [EnumeratorCancellation] CancellationToken enumeratorToken = default)
    {
        // A token passed through WithCancellation cancels the request too.
        using var registration = enumeratorToken != handle.CancellationToken && enumeratorToken.CanBeCanceled
            ? enumeratorToken.Register(() => { handle.CancelledBy = enumeratorToken; RequestAbort(handle); })
            : default;
        var reader = handle.Channel!.Reader;
        try
        {
            while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
            {
                while (reader.TryRead(out var token))
                    yield return token;
            }
        }
        finally
        {
            // The reader stopped early (break or exception): cancel the request so its blocks are freed.
            if (!handle.Completion.Task.IsCompleted)
                RequestAbort(handle);
        }
        if (handle.Terminal is { } terminal)
            throw terminal;
    }

    private void RequestAbort(RequestHandle handle)
    {
        lock (_submitLock)
        {
            if (_stopping)
                return;
            _commands.Enqueue(new Command(handle, Abort: true));
        }
        _wake.Release();
    }

    private void Loop()
    {
        try
        {
            while (true)
            {
                while (_commands.TryDequeue(out var command))
                    Process(command);
                lock (_submitLock)
                {
                    if (_stopping)
                        break;
                }
                if (!_core.HasWork)
                {
                    _wake.Wait();
                    continue;
                }
                foreach (var e in _core.Step())
                    Dispatch(e, disposed: false);
            }
        }
        catch (Exception e)
        {
            // A bug in the engine itself (not a runner failure, which Step handles): fail everything and stop.
            _fault = $"{e.GetType().Name}: {e.Message}";
            lock (_submitLock) _stopping = true;
            foreach (var handle in _handles.Values.ToList())
                Complete(handle, new Completion(handle.Id, Array.Empty<int>(), FinishReason.Error,
                    new CompletionUsage(handle.Prepared.Request.PromptTokenIds.Count, 0, 0, 0, null), $"The engine failed: {_fault}"),
                    new InferenceRequestException($"The engine failed: {_fault}", e));
        }
        finally
        {
            Shutdown();
        }
    }

    private void Shutdown()
    {
        // Submissions stopped (_stopping is set): what is queued or active now is everything outstanding.
        // Requests still queued never reached the core; they are completed below with the active ones.
        const string message = "The engine was disposed before the request finished.";
        while (_commands.TryDequeue(out var command))
            if (!command.Abort)
                _handles.TryAdd(command.Handle.Id, command.Handle);
        try
        {
            foreach (var completion in _core.AbortAll(FinishReason.Cancelled, message))
                Dispatch(new RequestEvent(completion.RequestId, null, completion), disposed: true);
        }
        catch (Exception e)
        {
            // Only after an engine fault; the handles left are completed below. Nothing may escape this thread.
            _fault ??= $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            foreach (var handle in _handles.Values.ToList())
                Complete(handle, new Completion(handle.Id, Array.Empty<int>(), FinishReason.Cancelled,
                    new CompletionUsage(handle.Prepared.Request.PromptTokenIds.Count, 0, 0, 0, null), message),
                    new ObjectDisposedException(nameof(InferenceEngine), message));
            if (_ownsRunner)
            {
                try
                {
                    _core.Runner.Dispose();
                }
                catch (Exception e)
                {
                    // Rethrown by Dispose: an exception escaping this thread would end the process.
                    _runnerDisposeError = e;
                }
            }
        }
    }

    private void Process(Command command)
    {
        var handle = command.Handle;
        if (!command.Abort)
        {
            _handles.Add(handle.Id, handle);
            _core.Add(handle.Prepared);
            // Cancelled before the engine saw it: its abort command may not be queued yet (the registration is
            // made after the add is queued), so end it here, before a step can run it.
            if (handle.CancellationToken.IsCancellationRequested && _core.Abort(handle.Id) is { } cancelled)
                Dispatch(new RequestEvent(handle.Id, null, cancelled), disposed: false);
        }
        else if (_handles.ContainsKey(handle.Id) && _core.Abort(handle.Id) is { } completion)
        {
            Dispatch(new RequestEvent(handle.Id, null, completion), disposed: false);
        }
    }

    private void Dispatch(RequestEvent e, bool disposed)
    {
        if (!_handles.TryGetValue(e.RequestId, out var handle))
            return;
        if (e.Token is { } token)
            handle.Channel?.Writer.TryWrite(token);
        if (e.Completion is not { } completion)
            return;
        Exception? terminal = completion.FinishReason switch
        {
            FinishReason.Cancelled when disposed => new ObjectDisposedException(nameof(InferenceEngine), $"{handle.Prepared.DisplayName}: {completion.Error}"),
            FinishReason.Cancelled => new OperationCanceledException($"{handle.Prepared.DisplayName} was cancelled.", handle.CancelledBy),
            FinishReason.Error => new InferenceRequestException(completion.Error ?? $"{handle.Prepared.DisplayName} failed."),
            _ => null,
        };
        Complete(handle, completion, terminal);
    }

    private void Complete(RequestHandle handle, Completion completion, Exception? terminal)
    {
        _handles.Remove(handle.Id);
        handle.Terminal = terminal;
        handle.Completion.TrySetResult(completion);
        handle.Channel?.Writer.TryComplete();
        handle.DisposeRegistration();
    }

    private readonly record struct Command(RequestHandle Handle, bool Abort);

    private sealed class RequestHandle
    {
        private readonly object _gate = new();
        private CancellationTokenRegistration _registration;
        private bool _done;

        public RequestHandle(PreparedRequest prepared, bool streaming, CancellationToken cancellationToken)
        {
            Prepared = prepared;
            CancellationToken = cancellationToken;
            CancelledBy = cancellationToken;
            if (streaming)
                Channel = System.Threading.Channels.Channel.CreateUnbounded<GeneratedToken>(
                    new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        }

        public long Id => Prepared.Id;

        public PreparedRequest Prepared { get; }

        public CancellationToken CancellationToken { get; }

        public CancellationToken CancelledBy { get; set; }

        public Channel<GeneratedToken>? Channel { get; }

        public TaskCompletionSource<Completion> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        // Written by the engine thread before the channel completes; read by the stream after it drains.
        public Exception? Terminal { get; set; }

        public void SetRegistration(CancellationTokenRegistration registration)
        {
            lock (_gate)
            {
                if (!_done)
                {
                    _registration = registration;
                    return;
                }
            }
            registration.Dispose();
        }

        public void DisposeRegistration()
        {
            CancellationTokenRegistration registration;
            lock (_gate)
            {
                _done = true;
                registration = _registration;
                _registration = default;
            }
            // Unregister only: never wait here (the callback may be queued behind this engine thread).
            registration.Unregister();
        }
    }
}
