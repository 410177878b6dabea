using System.Runtime.InteropServices;
using ILGPU;

namespace SpecializedInference.Kernels.Dense;

/// <summary>16 bytes of weights, loaded as one vector access (<c>ld.global.v4.u32</c>): 4 f32 or 8 f16.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 16)]
public struct Bits128
{
    public uint X, Y, Z, W;
}

/// <summary>Four f32 activations, loaded or stored as one 16-byte access.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 16)]
public struct Vec4
{
    public float X, Y, Z, W;

    public Vec4(float x, float y, float z, float w)
    {
        X = x;
        Y = y;
        Z = z;
        W = w;
    }
}

/// <summary>
/// One weight chunk widened to f32 in registers: 8 values (f16), or 4 in <see cref="Lo"/> (f32, <see cref="Hi"/> unused).
/// Lets a kernel decode a chunk once and reuse it against several tokens' activations.
/// </summary>
public struct Vec8
{
    public Vec4 Lo, Hi;

    public Vec8(Vec4 lo, Vec4 hi)
    {
        Lo = lo;
        Hi = hi;
    }
}

/// <summary>
/// How a weight matrix's 16-byte chunks hold numbers. A kernel's struct type parameter: each format compiles
/// to its own kernel, with the chunk decoding inlined.
/// </summary>
public interface IWeightFormat
{
    /// <summary>Weights per 16-byte chunk: 4 (f32) or 8 (f16).</summary>
    int ElementsPerChunk { get; }

    /// <summary>Dot product of one weight chunk with the activations <c>x[4 * xVec ..]</c> (one or two Vec4).</summary>
    float Dot(Bits128 w, ArrayView<Vec4> x, long xVec);

    /// <summary>Writes the chunk's weights as f32 to <c>output[index + j * stride]</c>.</summary>
    void Unpack(Bits128 w, ArrayView<float> output, long index, int stride);

    /// <summary>Quads (groups of 4 weights, one <see cref="Vec4"/> of activations) per chunk: 1 (f32) or 2 (f16).</summary>
    int QuadsPerChunk { get; }

    /// <summary>Weights <c>4q .. 4q+3</c> of the chunk as f32 (call with a constant q, so it folds).</summary>
    Vec4 Quad(Bits128 w, int q);
}

/// <summary>What every weight format gives through its quads.</summary>
public static class WeightChunks
{
    /// <summary>The chunk's weights as f32 registers: its quads (the first <see cref="IWeightFormat.ElementsPerChunk"/> of the 8).</summary>
    public static Vec8 Widen<TW>(Bits128 w)
        where TW : struct, IWeightFormat
        => new(default(TW).Quad(w, 0), default(TW).QuadsPerChunk == 2 ? default(TW).Quad(w, 1) : default);
}

/// <summary>f32 weights: 4 per chunk.</summary>
public struct F32Weights : IWeightFormat
{
    public readonly int ElementsPerChunk => 4;

    public readonly float Dot(Bits128 w, ArrayView<Vec4> x, long xVec)
    {
        var a = x[xVec];
        return Interop.IntAsFloat(w.X) * a.X + Interop.IntAsFloat(w.Y) * a.Y + Interop.IntAsFloat(w.Z) * a.Z + Interop.IntAsFloat(w.W) * a.W;
    }

    public readonly void Unpack(Bits128 w, ArrayView<float> output, long index, int stride)
    {
        output[index] = Interop.IntAsFloat(w.X);
        output[index + stride] = Interop.IntAsFloat(w.Y);
        output[index + 2 * stride] = Interop.IntAsFloat(w.Z);
        output[index + 3 * stride] = Interop.IntAsFloat(w.W);
    }

    public readonly int QuadsPerChunk => 1;

    public readonly Vec4 Quad(Bits128 w, int q) =>
        new(Interop.IntAsFloat(w.X), Interop.IntAsFloat(w.Y), Interop.IntAsFloat(w.Z), Interop.IntAsFloat(w.W));
}

/// <summary>IEEE f16 weights: 8 per chunk, two per 32-bit lane (low half first, as stored little-endian).</summary>
public struct F16Weights : IWeightFormat
{
    public readonly int ElementsPerChunk => 8;

    private static float Low(uint bits) => Interop.IntAsFloat((ushort)(bits & 0xFFFF));

    private static float High(uint bits) => Interop.IntAsFloat((ushort)(bits >> 16));

    public readonly float Dot(Bits128 w, ArrayView<Vec4> x, long xVec)
    {
        var a = x[xVec];
        var b = x[xVec + 1];
        return Low(w.X) * a.X + High(w.X) * a.Y + Low(w.Y) * a.Z + High(w.Y) * a.W
            + Low(w.Z) * b.X + High(w.Z) * b.Y + Low(w.W) * b.Z + High(w.W) * b.W;
    }

    public readonly void Unpack(Bits128 w, ArrayView<float> output, long index, int stride)
    {
        output[index] = Low(w.X);
        output[index + stride] = High(w.X);
        output[index + 2 * stride] = Low(w.Y);
        output[index + 3 * stride] = High(w.Y);
        output[index + 4 * stride] = Low(w.Z);
        output[index + 5 * stride] = High(w.Z);
        output[index + 6 * stride] = Low(w.W);
        output[index + 7 * stride] = High(w.W);
    }

    public readonly int QuadsPerChunk => 2;

    public readonly Vec4 Quad(Bits128 w, int q) => q == 0
        ? new(Low(w.X), High(w.X), Low(w.Y), High(w.Y))
        : new(Low(w.Z), High(w.Z), Low(w.W), High(w.W));
}

/// <summary>How a projection's result lands in its output: stored, or added to it (the residual stream).</summary>
public interface IEpilogue
{
    void Write(ArrayView<float> y, long index, float value);
}

/// <summary><c>y = x · Wᵀ</c></summary>
public struct StoreOutput : IEpilogue
{
    public readonly void Write(ArrayView<float> y, long index, float value) => y[index] = value;
}

/// <summary><c>y += x · Wᵀ</c>: the residual add fused into o_proj and down_proj (each element has one writer).</summary>
public struct AddToOutput : IEpilogue
{
    public readonly void Write(ArrayView<float> y, long index, float value) => y[index] += value;
}
