using ILGPU;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;

namespace SpecializedInference.Runtime;

/// <summary>
/// Where a <see cref="LlamaModelRunner"/>'s weights come from: tensors by their Hugging Face names
/// (<see cref="LlamaCheckpoint.ExpectedTensors"/>), put on the device in the engine's dtype.
/// </summary>
public interface ILlamaWeights
{
    /// <summary>The model config the tensors belong to.</summary>
    LlamaConfig Config { get; }

    /// <summary>End-of-sequence ids (generation_config.json first, else config.json).</summary>
    IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>Names the source in messages (the checkpoint's config.json, or what generated the weights).</summary>
    string Origin { get; }

    /// <summary>The row-wise concatenation of the named <c>[rows_i, cols]</c> tensors as one device matrix
    /// (e.g. q | k | v fused into one projection).</summary>
    DeviceMatrix Matrix(Accelerator accelerator, IReadOnlyList<string> names, WeightDtype dtype);

    /// <summary>A 1-D tensor (a norm weight) as f32.</summary>
    MemoryBuffer1D<float, Stride1D.Dense> Vector(Accelerator accelerator, string name);
}

/// <summary>The weights of a checkpoint folder, converted piece by piece from the memory-mapped safetensors.</summary>
public sealed class CheckpointWeights(LlamaCheckpoint checkpoint) : ILlamaWeights
{
    public LlamaConfig Config => checkpoint.Config;

    public IReadOnlyList<int> EosTokenIds => checkpoint.EosTokenIds;

    public string Origin => Path.Combine(checkpoint.Directory, LlamaCheckpoint.ConfigFileName);

    public DeviceMatrix Matrix(Accelerator accelerator, IReadOnlyList<string> names, WeightDtype dtype) =>
        WeightUpload.Matrix(accelerator, checkpoint.Weights, names.Select(checkpoint.Tensor).ToList(), dtype);

    public MemoryBuffer1D<float, Stride1D.Dense> Vector(Accelerator accelerator, string name) =>
        WeightUpload.Vector(accelerator, checkpoint.Weights, checkpoint.Tensor(name));
}

/// <summary>
/// Seeded random weights generated on the device: nothing is written to disk or copied from the host, so a
/// benchmark of a real model size (16 GB of Llama-3-8B f16 weights) starts in about a second instead of minutes.
/// Same distribution as <c>RandomCheckpoint</c>: projections and embeddings uniform with standard deviation
/// <paramref name="std"/>, norm weights 1 ± 0.1.
/// </summary>
public sealed class RandomDeviceWeights(LlamaConfig config, uint seed = 0, double std = 0.02) : ILlamaWeights
{
    private readonly Dictionary<string, long[]> _shapes = LlamaCheckpoint.ExpectedTensors(config).ToDictionary(t => t.Name, t => t.Shape);

    public LlamaConfig Config => config;

    public IReadOnlyList<int> EosTokenIds => config.EosTokenIds;

    public string Origin => $"random device weights (seed {seed})";

    public DeviceMatrix Matrix(Accelerator accelerator, IReadOnlyList<string> names, WeightDtype dtype)
    {
        var shapes = names.Select(Shape).ToList();
        int cols = checked((int)shapes[0][1]);
        if (shapes.Any(s => s.Length != 2 || s[1] != cols))
            throw new ArgumentException($"{string.Join(", ", names)}: only 2-D tensors with the same column count can be fused into one matrix.");
        long rows = shapes.Sum(s => s[0]);
        var buffer = accelerator.Allocate1D<Bits128>(DeviceMatrix.ChunksFor(rows, cols, dtype));
        try
        {
            float amplitude = (float)(std * Math.Sqrt(3)); // uniform [-a, a] has standard deviation a / sqrt(3)
            var random = DeviceRandom.For(accelerator);
            uint tensorSeed = seed * 0x9E3779B9u ^ StableHash(names[0]);
            if (dtype == WeightDtype.F16) random.Halves(((ArrayView<Bits128>)buffer.View).Cast<global::ILGPU.Half>(), tensorSeed, amplitude);
            else random.Floats(((ArrayView<Bits128>)buffer.View).Cast<float>(), tensorSeed, amplitude);
            return new DeviceMatrix(buffer, checked((int)rows), cols, dtype);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    public MemoryBuffer1D<float, Stride1D.Dense> Vector(Accelerator accelerator, string name)
    {
        var shape = Shape(name);
        var values = new float[shape[0]];
        var rng = new Random((int)(seed ^ StableHash(name)));
        for (int i = 0; i < values.Length; i++) values[i] = 1 + 0.1f * (2 * rng.NextSingle() - 1);
        var buffer = accelerator.Allocate1D<float>(values.Length);
        buffer.View.CopyFromCPU(values);
        return buffer;
    }

    private long[] Shape(string name)
    {
        if (name == "lm_head.weight" && config.TieWordEmbeddings) name = "model.embed_tokens.weight";
        return _shapes.TryGetValue(name, out var shape) ? shape
            : throw new ArgumentException($"{Origin}: no tensor '{name}' in a Llama model of this config.");
    }

    /// <summary>FNV-1a of the name: the same tensor gets the same values in every process.</summary>
    private static uint StableHash(string name)
    {
        uint h = 2166136261;
        foreach (char ch in name) h = (h ^ ch) * 16777619;
        return h;
    }
}

/// <summary>Fills device buffers with seeded uniform values in [-amplitude, amplitude), on the device.</summary>
public sealed class DeviceRandom
{
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<Accelerator, DeviceRandom> Loaded = new();
    private readonly int _threads;
    private readonly Action<Index1D, ArrayView<float>, long, int, uint, float> _floats;
    private readonly Action<Index1D, ArrayView<global::ILGPU.Half>, long, int, uint, float> _halves;

    private DeviceRandom(Accelerator accelerator)
    {
        // A grid-stride loop covers the buffer; the CPU accelerator pays per simulated thread, so it gets few.
        _threads = accelerator.AcceleratorType == AcceleratorType.CPU ? 64 : 1 << 20;
        _floats = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, long, int, uint, float>(FillFloats);
        _halves = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<global::ILGPU.Half>, long, int, uint, float>(FillHalves);
    }

    /// <summary>The fill kernels of <paramref name="accelerator"/>, compiled once.</summary>
    public static DeviceRandom For(Accelerator accelerator) => Loaded.GetValue(accelerator, a => new DeviceRandom(a));

    private int Threads(long n) => (int)Math.Max(1, Math.Min(n, _threads));

    /// <summary>Enqueues the fill of an f32 view.</summary>
    public void Floats(ArrayView<float> view, uint seed, float amplitude = 1)
    {
        if (view.Length > 0) _floats(Threads(view.Length), view, view.Length, Threads(view.Length), seed, amplitude);
    }

    /// <summary>Enqueues the fill of an f16 view.</summary>
    public void Halves(ArrayView<global::ILGPU.Half> view, uint seed, float amplitude = 1)
    {
        if (view.Length > 0) _halves(Threads(view.Length), view, view.Length, Threads(view.Length), seed, amplitude);
    }

    /// <summary>lowbias32 of the element index and the seed, as a uniform value in [-1, 1).</summary>
    private static float Uniform(long index, uint seed)
    {
        uint h = (uint)index ^ (uint)(index >> 32) * 0x9E3779B9u ^ seed * 0x85EBCA6Bu;
        h ^= h >> 16;
        h *= 0x7FEB352Du;
        h ^= h >> 15;
        h *= 0x846CA68Bu;
        h ^= h >> 16;
        return (h >> 8) * (2f / (1 << 24)) - 1f;
    }

    /// <param name="view">[n] f32</param>
    private static void FillFloats(Index1D thread, ArrayView<float> view, long n, int stride, uint seed, float amplitude)
    {
        for (long i = thread; i < n; i += stride)
            view[i] = amplitude * Uniform(i, seed);
    }

    /// <param name="view">[n] f16</param>
    private static void FillHalves(Index1D thread, ArrayView<global::ILGPU.Half> view, long n, int stride, uint seed, float amplitude)
    {
        for (long i = thread; i < n; i += stride)
            view[i] = (global::ILGPU.Half)(amplitude * Uniform(i, seed));
    }
}
