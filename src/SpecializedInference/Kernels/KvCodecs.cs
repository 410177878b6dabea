using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Algorithms;

namespace SpecializedInference.Kernels;

/// <summary>16 bytes of the KV cache: 8 halves or 4 floats. Loading one compiles to a single 16-byte access
/// (<c>ld.global.v4.u32</c>), which is where the bandwidth comes from.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 16)]
public struct Chunk16
{
    public uint X, Y, Z, W;
}

/// <summary>Four floats moved as one 16-byte access (shared-memory tiles, query and output rows).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 16)]
public struct Float4
{
    public float X, Y, Z, W;

    public Float4(float x, float y, float z, float w)
    {
        X = x;
        Y = y;
        Z = z;
        W = w;
    }

    public static Float4 operator *(Float4 a, float s) => new(a.X * s, a.Y * s, a.Z * s, a.W * s);

    public static Float4 operator +(Float4 a, Float4 b) => new(a.X + b.X, a.Y + b.Y, a.Z + b.Z, a.W + b.W);

    /// <summary>a * s + this, lane by lane.</summary>
    public Float4 Fma(Float4 a, float s) => new(a.X * s + X, a.Y * s + Y, a.Z * s + Z, a.W * s + W);

    public float Dot(Float4 b) => X * b.X + Y * b.Y + Z * b.Z + W * b.W;

    /// <summary>acc + this·b as a chain of four multiply-adds (four FMAs, no separate product sum). Written
    /// left to right from acc: ILGPU reassociated the nested form so that acc was added last, after the products
    /// of every step had been kept live.</summary>
    public float DotAdd(Float4 b, float acc) => acc + X * b.X + Y * b.Y + Z * b.Z + W * b.W;
}

/// <summary>Eight consecutive head_dim elements: the unit of K/V traffic (one f16 chunk or two f32 chunks).</summary>
public struct Float8
{
    public Float4 Lo, Hi;

    public Float8(Float4 lo, Float4 hi)
    {
        Lo = lo;
        Hi = hi;
    }
}

/// <summary>8 elements as loaded, not yet decoded: one 16-byte chunk for f16 (<see cref="B"/> unused), two for f32.
/// Kernels prefetch many of these (4 registers each for f16) before decoding, to keep loads in flight.</summary>
public struct RawChunk8
{
    public Chunk16 A, B;

    /// <summary>This chunk where <paramref name="keep"/>, else zero bits (0.0 in either dtype): masks a row read
    /// past the context with bitwise ands, no branch (a conditional struct became hundreds of moves in ILGPU's PTX).</summary>
    public readonly RawChunk8 Masked(bool keep)
    {
        uint m = keep ? uint.MaxValue : 0u;
        return new RawChunk8
        {
            A = new Chunk16 { X = A.X & m, Y = A.Y & m, Z = A.Z & m, W = A.W & m },
            B = new Chunk16 { X = B.X & m, Y = B.Y & m, Z = B.Z & m, W = B.W & m },
        };
    }
}

/// <summary>
/// How the cache stores an element. The kernels are generic over this struct, so the f16 and f32 caches
/// share one kernel body and ILGPU compiles each without a run-time branch.
/// </summary>
public interface IKvCodec
{
    /// <summary>Loads elements [element, element + 8) of a cache buffer; <paramref name="element"/> is a multiple of 8.</summary>
    Float8 Load8(ArrayView<Chunk16> cache, long element);

    /// <summary>Stores 8 floats (rounded to the cache dtype) at [element, element + 8).</summary>
    void Store8(ArrayView<Chunk16> cache, long element, Float8 value);

    /// <summary>Loads one element (the materialized baseline's scalar path).</summary>
    float Load1(ArrayView<Chunk16> cache, long element);

    /// <summary>Stores one element, rounded to the cache dtype as <see cref="Store8"/> rounds it (the qkv projection's
    /// epilogue writes the new K/V rows this way: <see cref="PagedKvRows{TCodec}"/>).</summary>
    void Store1(ArrayView<Chunk16> cache, long element, float value);

    /// <summary>Loads elements [element, element + 8) without decoding them.</summary>
    RawChunk8 LoadRaw8(ArrayView<Chunk16> cache, long element);

    /// <summary>Decodes what <see cref="LoadRaw8"/> loaded.</summary>
    Float8 Decode8(RawChunk8 raw);
}

/// <summary>f16 cache: one 16-byte chunk holds 8 halves.</summary>
public struct F16Codec : IKvCodec
{
    public Float8 Load8(ArrayView<Chunk16> cache, long element)
    {
        var c = cache[element >> 3];
        return new Float8(new Float4(Lo(c.X), Hi(c.X), Lo(c.Y), Hi(c.Y)), new Float4(Lo(c.Z), Hi(c.Z), Lo(c.W), Hi(c.W)));
    }

    public RawChunk8 LoadRaw8(ArrayView<Chunk16> cache, long element)
    {
        RawChunk8 raw;
        raw.A = cache[element >> 3];
        raw.B = default;
        return raw;
    }

    public Float8 Decode8(RawChunk8 raw)
    {
        var c = raw.A;
        return new Float8(new Float4(Lo(c.X), Hi(c.X), Lo(c.Y), Hi(c.Y)), new Float4(Lo(c.Z), Hi(c.Z), Lo(c.W), Hi(c.W)));
    }

    public void Store8(ArrayView<Chunk16> cache, long element, Float8 v)
    {
        Chunk16 c;
        c.X = Pack(v.Lo.X, v.Lo.Y);
        c.Y = Pack(v.Lo.Z, v.Lo.W);
        c.Z = Pack(v.Hi.X, v.Hi.Y);
        c.W = Pack(v.Hi.Z, v.Hi.W);
        cache[element >> 3] = c;
    }

    public float Load1(ArrayView<Chunk16> cache, long element) => Interop.IntAsFloat(cache.Cast<ushort>()[element]);

    public void Store1(ArrayView<Chunk16> cache, long element, float value) => cache.Cast<ushort>()[element] = (ushort)HalfBits.FromFloat(value);

    private static float Lo(uint bits) => Interop.IntAsFloat((ushort)(bits & 0xFFFFu));

    private static float Hi(uint bits) => Interop.IntAsFloat((ushort)(bits >> 16));

    private static uint Pack(float lo, float hi) => HalfBits.FromFloat(lo) | (HalfBits.FromFloat(hi) << 16);
}

/// <summary>
/// float → f16 bits with round-to-nearest-even, in integer arithmetic. ILGPU's CPU accelerator converts
/// <c>(Half)float</c> by truncation while CUDA rounds to nearest; doing it by hand gives the same cache
/// contents on every device (and matches <see cref="System.Half"/>). It runs once per cached element.
/// </summary>
public static class HalfBits
{
    public static uint FromFloat(float value)
    {
        uint x = Interop.FloatAsInt(value);
        uint sign = (x >> 16) & 0x8000u;
        uint abs = x & 0x7FFFFFFFu;
        if (abs >= 0x7F800000u) return sign | 0x7C00u | (abs > 0x7F800000u ? 0x200u : 0u); // inf, NaN
        if (abs >= 0x477FF000u) return sign | 0x7C00u;                                     // rounds past 65504: inf
        if (abs >= 0x38800000u)
        {
            // Normal: rebias the exponent, keep 10 mantissa bits, round the 13 dropped ones to nearest even
            // (a carry out of the mantissa correctly bumps the exponent).
            uint h = (abs - 0x38000000u) >> 13;
            uint rest = abs & 0x1FFFu;
            if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0)) h++;
            return sign | h;
        }
        int exponent = (int)(abs >> 23);
        if (exponent < 102) return sign;                                                   // below half the smallest subnormal
        // Subnormal: value = mantissa * 2^-24.
        uint mantissa = (abs & 0x7FFFFFu) | 0x800000u;
        int shift = 126 - exponent;
        uint sub = mantissa >> shift;
        uint dropped = mantissa & ((1u << shift) - 1u);
        uint halfway = 1u << (shift - 1);
        if (dropped > halfway || (dropped == halfway && (sub & 1u) != 0)) sub++;
        return sign | sub;
    }
}

/// <summary>f32 cache: 8 elements are two 16-byte chunks.</summary>
public struct F32Codec : IKvCodec
{
    public Float8 Load8(ArrayView<Chunk16> cache, long element)
    {
        long i = element >> 2;
        return new Float8(AsFloat4(cache[i]), AsFloat4(cache[i + 1]));
    }

    public void Store8(ArrayView<Chunk16> cache, long element, Float8 v)
    {
        long i = element >> 2;
        cache[i] = AsChunk(v.Lo);
        cache[i + 1] = AsChunk(v.Hi);
    }

    public float Load1(ArrayView<Chunk16> cache, long element) => cache.Cast<float>()[element];

    public void Store1(ArrayView<Chunk16> cache, long element, float value) => cache.Cast<float>()[element] = value;

    public RawChunk8 LoadRaw8(ArrayView<Chunk16> cache, long element)
    {
        long i = element >> 2;
        RawChunk8 raw;
        raw.A = cache[i];
        raw.B = cache[i + 1];
        return raw;
    }

    public Float8 Decode8(RawChunk8 raw) => new(AsFloat4(raw.A), AsFloat4(raw.B));

    private static Float4 AsFloat4(Chunk16 c)
        => new(Interop.IntAsFloat(c.X), Interop.IntAsFloat(c.Y), Interop.IntAsFloat(c.Z), Interop.IntAsFloat(c.W));

    private static Chunk16 AsChunk(Float4 f)
    {
        Chunk16 c;
        c.X = Interop.FloatAsInt(f.X);
        c.Y = Interop.FloatAsInt(f.Y);
        c.Z = Interop.FloatAsInt(f.Z);
        c.W = Interop.FloatAsInt(f.W);
        return c;
    }
}

/// <summary>Small math shared by every attention kernel.</summary>
public static class AttentionMath
{
    /// <summary>exp(x) that is exactly 0 for x = -inf (a masked score), whatever the device's exp does there.</summary>
    public static float ExpOrZero(float x) => x == float.NegativeInfinity ? 0f : XMath.Exp(x);
}
