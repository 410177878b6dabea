using System.Runtime.InteropServices;
using ILGPU;
using Half = System.Half;
using ILGPU.Runtime;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Model.Safetensors;

namespace SpecializedInference.Runtime;

/// <summary>
/// Moves weights to the device in the engine's dtype: tensors are converted (F32/F16/BF16 → f32 or f16) in bounded
/// pieces straight from the memory-mapped checkpoint and copied into one device buffer per matrix.
/// </summary>
public static class WeightUpload
{
    /// <summary>Elements converted per host staging piece (16 MB of f32).</summary>
    private const int PieceElements = 4 << 20;

    /// <summary>
    /// Uploads the row-wise concatenation of <paramref name="parts"/> (each <c>[rows_i, cols]</c>) as one
    /// <c>[Σ rows_i, cols]</c> matrix, e.g. q | k | v projections fused into one.
    /// </summary>
    public static DeviceMatrix Matrix(Accelerator accelerator, SafetensorsCheckpoint weights, IReadOnlyList<TensorEntry> parts, WeightDtype dtype)
    {
        int cols = checked((int)parts[0].Shape[1]);
        int e = DeviceMatrix.ElementsPerChunk(dtype);
        if (cols % e != 0)
            throw new CheckpointException($"{parts[0].File}: tensor '{parts[0].Name}' has {cols} columns; the {dtype.ToString().ToLowerInvariant()} kernels need a multiple of {e}");
        long rows = parts.Sum(p => p.Shape[0]);
        var buffer = accelerator.Allocate1D<Bits128>(DeviceMatrix.ChunksFor(rows, cols, dtype));
        try
        {
            long chunkOffset = 0;
            foreach (var part in parts)
            {
                long elements = part.ElementCount;
                for (long first = 0; first < elements; first += PieceElements)
                {
                    int count = (int)Math.Min(PieceElements, elements - first);
                    var chunks = Convert(weights, part, first, count, dtype);
                    buffer.View.SubView(chunkOffset, chunks.Length).CopyFromCPU(chunks);
                    chunkOffset += chunks.Length;
                }
            }

            return new DeviceMatrix(buffer, checked((int)rows), cols, dtype);
        }
        catch
        {
            buffer.Dispose();
            throw;
        }
    }

    private static Bits128[] Convert(SafetensorsCheckpoint weights, TensorEntry part, long first, int count, WeightDtype dtype)
    {
        // count is a multiple of the chunk size: pieces are multiples of 8 and tensors hold whole rows.
        if (dtype == WeightDtype.F16)
        {
            var halves = new Half[count];
            int overflows = weights.ReadFloat16(part, first, halves);
            if (overflows > 0)
                throw new CheckpointException(
                    $"{part.File}: tensor '{part.Name}' has {overflows} value(s) beyond f16's range (±65504); load it with weight dtype f32");
            return MemoryMarshal.Cast<Half, Bits128>(halves).ToArray();
        }

        var floats = new float[count];
        weights.ReadFloat32(part, first, floats);
        return MemoryMarshal.Cast<float, Bits128>(floats).ToArray();
    }

    /// <summary>Uploads a 1-D float tensor (a norm weight) as f32.</summary>
    public static MemoryBuffer1D<float, Stride1D.Dense> Vector(Accelerator accelerator, SafetensorsCheckpoint weights, TensorEntry tensor)
    {
        var values = new float[tensor.ElementCount];
        weights.ReadFloat32(tensor, 0, values);
        var buffer = accelerator.Allocate1D<float>(values.Length);
        buffer.View.CopyFromCPU(values);
        return buffer;
    }

    /// <summary>Uploads an in-memory <c>[rows, cols]</c> f32 matrix in <paramref name="dtype"/> (tests, benchmarks).</summary>
    public static DeviceMatrix Matrix(Accelerator accelerator, float[] values, int rows, int cols, WeightDtype dtype)
    {
        if (values.Length != (long)rows * cols) throw new ArgumentException($"{values.Length} values for a [{rows}, {cols}] matrix");
        int e = DeviceMatrix.ElementsPerChunk(dtype);
        if (cols % e != 0) throw new ArgumentException($"cols ({cols}) must be a multiple of {e} for {dtype}");
        Bits128[] chunks = dtype == WeightDtype.F16
            ? MemoryMarshal.Cast<Half, Bits128>(values.Select(v => (Half)v).ToArray()).ToArray()
            : MemoryMarshal.Cast<float, Bits128>(values).ToArray();
        var buffer = accelerator.Allocate1D(chunks);
        return new DeviceMatrix(buffer, rows, cols, dtype);
    }
}
