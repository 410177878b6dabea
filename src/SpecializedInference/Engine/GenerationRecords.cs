using SpecializedInference.Sampling;

namespace SpecializedInference.Engine;

/// <summary>Why a request ended.</summary>
public enum FinishReason
{
    /// <summary>An end-of-sequence token (unless ignored) or a stop token was generated; it is the last token.</summary>
    Stop,

    /// <summary>max_new_tokens tokens were generated.</summary>
    Length,

    /// <summary>The caller cancelled, stopped reading the stream, or the engine was disposed.</summary>
    Cancelled,

    /// <summary>The model runner or the sampler failed on this request.</summary>
    Error,
}

/// <summary>
/// How the next token is picked. <see cref="Greedy"/> (or <see cref="Temperature"/> 0) means argmax;
/// otherwise temperature, then top-k (0 = off), then top-p (1 = off), with an optional seed.
/// </summary>
public sealed record SamplingParams
{
    public double Temperature { get; init; } = 1.0;

    public int TopK { get; init; }

    public double TopP { get; init; } = 1.0;

    public ulong? Seed { get; init; }

    public bool Greedy { get; init; }

    /// <summary>Repetition, frequency and presence penalties, applied to the logits before the choice (greedy or not).</summary>
    public LogitPenalties Penalties { get; init; } = LogitPenalties.None;

    /// <summary>Added to the logits of these token ids before the penalties and the choice (OpenAI's <c>logit_bias</c>).</summary>
    public IReadOnlyDictionary<int, float>? LogitBias { get; init; }

    /// <summary>Drop the tokens less likely than this fraction of the most likely one, at the temperature and before
    /// top-k and top-p (vLLM's and Hugging Face's <c>min_p</c>; 0 = off). Greedy decoding ignores it.</summary>
    public double MinP { get; init; }

    /// <summary>End-of-sequence and stop tokens cannot be chosen before this many tokens are generated (vLLM's
    /// <c>min_tokens</c>; 0 = off).</summary>
    public int MinTokens { get; init; }

    /// <summary>Whether anything changes the logits before the choice (<see cref="Sampling.AdjustedTokenSampler"/>).</summary>
    public bool AdjustsLogits => !Penalties.IsNone || LogitBias is { Count: > 0 } || MinTokens > 0;

    /// <summary>Greedy decoding (argmax).</summary>
    public static SamplingParams ArgMax { get; } = new() { Greedy = true };

    public bool IsGreedy => Greedy || Temperature == 0;
}

/// <summary>One generation request.</summary>
/// <param name="PromptTokenIds">Prompt token ids (at least one).</param>
/// <param name="MaxNewTokens">Most tokens to generate (at least 1); prompt + this must fit max_seq_len.</param>
public sealed record GenerationRequest(IReadOnlyList<int> PromptTokenIds, int MaxNewTokens)
{
    public SamplingParams Sampling { get; init; } = SamplingParams.ArgMax;

    /// <summary>Keep generating past end-of-sequence tokens (stop tokens still stop).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>End-of-sequence token ids (from the model's generation config).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Extra token ids that always stop generation.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>Optional label used in messages and errors.</summary>
    public string? Name { get; init; }

    /// <summary>
    /// When set, each <see cref="GeneratedToken"/> carries its log-probability and those of this many most likely
    /// tokens (0 to <see cref="TokenLogprobs.MaxTop"/>); see <see cref="TokenLogprobs"/> for which distribution.
    /// </summary>
    public int? Logprobs { get; init; }

    /// <summary>
    /// When set, the log-probability of each prompt token after the first, under the model's distribution after the
    /// tokens before it, with this many most likely tokens (0 to <see cref="TokenLogprobs.MaxTop"/>): what scoring a text
    /// needs (OpenAI's <c>echo</c> with <c>logprobs</c>, vLLM's <c>prompt_logprobs</c>). Such a prompt is computed in
    /// full (no prefix-cache reuse) and copies a vocabulary-sized row per prompt token off the device.
    /// </summary>
    public int? PromptLogprobs { get; init; }
}

/// <summary>A token streamed as soon as it is sampled. <see cref="FinishReason"/> is set on the last one.</summary>
/// <param name="RequestId">The engine's id of the request.</param>
/// <param name="TokenId">The sampled token id.</param>
/// <param name="Index">0 for the first generated token, then 1, 2, ...</param>
/// <param name="FinishReason">Set when this token ends the request (Stop or Length).</param>
/// <param name="Logprobs">Its log-probabilities, when the request asked for them (<see cref="GenerationRequest.Logprobs"/>).</param>
public sealed record GeneratedToken(long RequestId, int TokenId, int Index, FinishReason? FinishReason, TokenLogprobs? Logprobs = null)
{
    /// <summary>On the first token of a request that asked for them (<see cref="GenerationRequest.PromptLogprobs"/>):
    /// prompt tokens 1, 2, ...'s log-probabilities (the first prompt token has none).</summary>
    public IReadOnlyList<TokenLogprobs>? PromptLogprobs { get; init; }
}

/// <summary>Token counts and timing of one request.</summary>
/// <param name="PromptTokens">Prompt length.</param>
/// <param name="CompletionTokens">Tokens generated.</param>
/// <param name="CachedPromptTokens">Prompt tokens served from the prefix cache at admission.</param>
/// <param name="Preemptions">Times the request was preempted and recomputed.</param>
/// <param name="TimeToFirstToken">From submission to the first sampled token; null if none was produced.</param>
public sealed record CompletionUsage(int PromptTokens, int CompletionTokens, int CachedPromptTokens, int Preemptions, TimeSpan? TimeToFirstToken)
{
    public int TotalTokens => PromptTokens + CompletionTokens;
}

/// <summary>The outcome of a request: generated tokens (a Stop token included) and why it ended.</summary>
public sealed record Completion(long RequestId, IReadOnlyList<int> Tokens, FinishReason FinishReason, CompletionUsage Usage, string? Error = null)
{
    /// <summary>Each generated token's log-probabilities, in order, when the request asked for them
    /// (<see cref="GenerationRequest.Logprobs"/>); else null.</summary>
    public IReadOnlyList<TokenLogprobs>? Logprobs { get; init; }

    /// <summary>Prompt tokens 1, 2, ...'s log-probabilities when the request asked for them
    /// (<see cref="GenerationRequest.PromptLogprobs"/>); else null.</summary>
    public IReadOnlyList<TokenLogprobs>? PromptLogprobs { get; init; }
}

/// <summary>A request failed inside the engine (model runner or sampler error); thrown to stream readers.</summary>
public sealed class InferenceRequestException : Exception
{
    public InferenceRequestException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
