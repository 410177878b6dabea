namespace SpecializedInference.Runtime;

/// <summary>
/// Progress of loading a model, reported through <see cref="IProgress{T}"/> by loaders (weights, tokenizer,
/// kernel compilation) so a front end can show it.
/// </summary>
/// <param name="Stage">What is being done, e.g. "Loading weights" or "Compiling kernels"; reports of one stage share it.</param>
/// <param name="Completed">Units done in this stage (bytes, tensors, kernels).</param>
/// <param name="Total">Units in this stage; 0 when unknown.</param>
/// <param name="Item">What is being worked on now (a tensor or kernel name), if anything.</param>
public readonly record struct ModelLoadProgress(string Stage, long Completed, long Total, string? Item = null);
