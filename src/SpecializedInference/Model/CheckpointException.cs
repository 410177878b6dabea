namespace SpecializedInference.Model;

/// <summary>
/// A checkpoint folder that cannot be used: a config field, a safetensors header or a tensor that is not what
/// the model needs. The message names the file, the field or tensor, and what was expected.
/// </summary>
public sealed class CheckpointException : Exception
{
    public CheckpointException(string message) : base(message) { }

    public CheckpointException(string message, Exception inner) : base(message, inner) { }
}
