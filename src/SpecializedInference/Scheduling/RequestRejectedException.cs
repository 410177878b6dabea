namespace SpecializedInference.Scheduling;

/// <summary>A request that can never be served (bad arguments or beyond a limit); nothing was admitted.</summary>
public sealed class RequestRejectedException : ArgumentException
{
    public RequestRejectedException(string message, string? paramName = null)
        : base(message, paramName)
    {
    }
}
