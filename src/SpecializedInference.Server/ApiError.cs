using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace SpecializedInference.Server;

/// <summary>
/// A request the server answers with an OpenAI-style error object instead of a result:
/// <c>{"error": {"message", "type", "param", "code"}}</c>. <see cref="Param"/> names the offending field.
/// </summary>
internal sealed class ApiException : Exception
{
    public ApiException(int status, string message, string? param, string code, string type = ApiErrorTypes.InvalidRequest)
        : base(message)
    {
        Status = status;
        Param = param;
        Code = code;
        Type = type;
    }

    public int Status { get; }

    public string? Param { get; }

    public string Code { get; }

    public string Type { get; }

    /// <summary>A 400 for a bad field.</summary>
    public static ApiException BadField(string param, string message, string code = "invalid_value") => new(400, message, param, code);
}

internal static class ApiErrorTypes
{
    public const string InvalidRequest = "invalid_request_error";
    public const string RateLimit = "rate_limit_error";
    public const string Server = "server_error";
}

internal static class ApiErrors
{
    /// <summary>The error object as JSON bytes.</summary>
    public static byte[] Json(string message, string type, string? param, string? code)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, JsonOptions.Writer))
        {
            w.WriteStartObject();
            w.WriteStartObject("error");
            w.WriteString("message", message);
            w.WriteString("type", type);
            if (param is null) w.WriteNull("param"); else w.WriteString("param", param);
            if (code is null) w.WriteNull("code"); else w.WriteString("code", code);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] Json(ApiException e) => Json(e.Message, e.Type, e.Param, e.Code);

    /// <summary>Writes the error as the whole response (the response must not have started).</summary>
    public static async Task WriteAsync(HttpContext context, int status, byte[] json)
    {
        var response = context.Response;
        response.StatusCode = status;
        response.ContentType = "application/json";
        response.ContentLength = json.Length;
        try
        {
            await response.Body.WriteAsync(json, context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The client is gone; nothing to tell it.
        }
    }

    public static Task WriteAsync(HttpContext context, ApiException e) => WriteAsync(context, e.Status, Json(e));
}
