using System.Globalization;
using SpecializedInference.Engine;
using SpecializedInference.Runtime;
using Spectre.Console;

namespace SpecializedInference.Cli;

/// <summary>Console helpers shared by the commands: errors on stderr, load progress, summary lines.</summary>
internal static class ConsoleUi
{
    /// <summary>Errors go to stderr so stdout stays parseable.</summary>
    public static IAnsiConsole Error { get; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>The message of an exception, with the messages of wrapped ones when they add something.</summary>
    public static string Describe(Exception e)
    {
        if (e is AggregateException { InnerExceptions.Count: 1 } aggregate)
            return Describe(aggregate.InnerExceptions[0]);
        string message = e.Message;
        for (var inner = e.InnerException; inner is not null; inner = inner.InnerException)
            if (!message.Contains(inner.Message, StringComparison.Ordinal))
                message += $" ({inner.Message})";
        return message;
    }

    /// <summary>
    /// Runs <paramref name="load"/> while showing one progress bar per stage it reports (weights, tokenizer,
    /// kernel compilation). Without an interactive terminal it prints one line per stage instead.
    /// </summary>
    public static async Task<T> WithLoadProgressAsync<T>(IAnsiConsole console, Func<IProgress<ModelLoadProgress>, Task<T>> load)
    {
        if (!console.Profile.Capabilities.Interactive)
        {
            string? stage = null;
            return await load(new SyncProgress<ModelLoadProgress>(p =>
            {
                if (p.Stage != stage)
                    console.MarkupLine($"[grey]{Markup.Escape(stage = p.Stage)}...[/]");
            })).ConfigureAwait(false);
        }
        return await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                var tasks = new Dictionary<string, ProgressTask>();
                var gate = new object();
                var result = await load(new SyncProgress<ModelLoadProgress>(p =>
                {
                    lock (gate)
                    {
                        foreach (var other in tasks.Where(t => t.Key != p.Stage && !t.Value.IsFinished))
                            other.Value.Value = other.Value.MaxValue; // a new stage means the earlier ones are done
                        if (!tasks.TryGetValue(p.Stage, out var task))
                            tasks[p.Stage] = task = context.AddTask(Markup.Escape(p.Stage), maxValue: Math.Max(1, p.Total));
                        task.IsIndeterminate = p.Total <= 0;
                        if (p.Total > 0)
                        {
                            task.MaxValue = p.Total;
                            task.Value = Math.Min(p.Completed, p.Total);
                        }
                        task.Description = Markup.Escape(p.Item is null ? p.Stage : $"{p.Stage}: {p.Item}");
                    }
                })).ConfigureAwait(false);
                lock (gate)
                {
                    foreach (var task in tasks.Values)
                    {
                        task.IsIndeterminate = false;
                        task.Value = task.MaxValue;
                    }
                }
                return result;
            }).ConfigureAwait(false);
    }

    /// <summary>
    /// The line printed after a generation: "16 tokens in 0.42 s (38.1 tokens/s), time to first token 35 ms,
    /// prompt 12 tokens (8 cached), finish length".
    /// </summary>
    public static string SummaryLine(Completion completion, TimeSpan elapsed)
    {
        var u = completion.Usage;
        double seconds = elapsed.TotalSeconds;
        var ci = CultureInfo.InvariantCulture;
        string rate = seconds > 0 ? (u.CompletionTokens / seconds).ToString("F1", ci) : "-";
        string ttft = u.TimeToFirstToken is { } t ? $"{t.TotalMilliseconds.ToString("F0", ci)} ms" : "-";
        string cached = u.CachedPromptTokens > 0 ? $" ({u.CachedPromptTokens} cached)" : "";
        string preempted = u.Preemptions > 0 ? $", preempted {u.Preemptions}x" : "";
        return $"{u.CompletionTokens} tokens in {seconds.ToString("F2", ci)} s ({rate} tokens/s), time to first token {ttft}, "
            + $"prompt {u.PromptTokens} tokens{cached}, finish {completion.FinishReason.ToString().ToLowerInvariant()}{preempted}";
    }

    /// <summary>An <see cref="IProgress{T}"/> that reports synchronously, in order (System.Progress posts to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
