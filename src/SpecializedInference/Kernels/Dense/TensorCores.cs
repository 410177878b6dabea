using ILGPU;
using ILGPU.Runtime.Cuda;

namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// One warp's 16 × 8 f32 accumulator tile of <c>mma.m16n8k16</c>: lane (g = lane / 4, t = lane % 4) holds rows g and
/// g + 8, columns 2t and 2t + 1 (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type").
/// </summary>
public struct MmaTile
{
    public float C0; // row g,     column 2t
    public float C1; // row g,     column 2t + 1
    public float C2; // row g + 8, column 2t
    public float C3; // row g + 8, column 2t + 1
}

/// <summary>
/// The tensor-core instruction <c>mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32</c> (D = A · B + D, A 16 × 16
/// and B 16 × 8 in f16, D in f32) through ILGPU's inline PTX on CUDA, and the same product computed from the same
/// fragments through warp shuffles elsewhere (ILGPU's CPU accelerator), so the kernels that use it run in the tests.
/// Fragments, per lane (g = lane / 4, t = lane % 4), each register two f16, the lower column in the low half:
/// <list type="bullet">
/// <item>A: <c>a0</c> = row g, columns 2t, 2t+1; <c>a1</c> = row g+8, same columns; <c>a2</c> = row g, columns
/// 2t+8, 2t+9; <c>a3</c> = row g+8, columns 2t+8, 2t+9.</item>
/// <item>B: <c>b0</c> = rows 2t, 2t+1 of column g; <c>b1</c> = rows 2t+8, 2t+9 of column g.</item>
/// <item>D: <see cref="MmaTile"/>.</item>
/// </list>
/// </summary>
public static class TensorCores
{
    /// <summary>d += A · B for one warp's fragments (every lane of the warp must call it).</summary>
    public static void Mma16816(ref MmaTile d, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1)
    {
        if (CudaAsm.IsSupported)
        {
            Ref<float> c0 = d.C0, c1 = d.C1, c2 = d.C2, c3 = d.C3;
            Input<uint> ia0 = a0, ia1 = a1, ia2 = a2, ia3 = a3, ib0 = b0, ib1 = b1;
            CudaAsm.EmitRef(
                "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};",
                ref c0, ref c1, ref c2, ref c3, ref ia0, ref ia1, ref ia2, ref ia3, ref ib0, ref ib1);
            d.C0 = c0.Value;
            d.C1 = c1.Value;
            d.C2 = c2.Value;
            d.C3 = c3.Value;
            return;
        }

        // Without tensor cores: each lane gathers the A rows and B columns of its four outputs from the lanes that
        // hold them, k two at a time (lane 4g + t' holds k = 2t', 2t'+1 in its low registers and k + 8 in its high ones).
        // A lane's fragments move as one value per source lane (12 shuffles, not 32): on ILGPU's CPU accelerator a
        // shuffle of any size costs the same warp barriers, and they are most of what this emulation costs.
        int lane = Warp.LaneIdx;
        int g = lane >> 2, t = lane & 3;
        var a = new AFragment(a0, a1, a2, a3);
        var b = new BFragment(b0, b1);
        for (int source = 0; source < 4; source++)
        {
            var rows = Warp.Shuffle(a, 4 * g + source);              // rows g, g+8; k = 2s, 2s+1 (a0, a1) and k + 8 (a2, a3)
            var col0 = Warp.Shuffle(b, 4 * (2 * t) + source);        // column 2t
            var col1 = Warp.Shuffle(b, 4 * (2 * t + 1) + source);    // column 2t+1
            d.C0 += Dot2(rows.A0, col0.B0) + Dot2(rows.A2, col0.B1);
            d.C1 += Dot2(rows.A0, col1.B0) + Dot2(rows.A2, col1.B1);
            d.C2 += Dot2(rows.A1, col0.B0) + Dot2(rows.A3, col0.B1);
            d.C3 += Dot2(rows.A1, col1.B0) + Dot2(rows.A3, col1.B1);
        }
    }

    /// <summary>A lane's four A registers, shuffled as one value.</summary>
    private readonly struct AFragment(uint a0, uint a1, uint a2, uint a3)
    {
        public readonly uint A0 = a0, A1 = a1, A2 = a2, A3 = a3;
    }

    /// <summary>A lane's two B registers, shuffled as one value.</summary>
    private readonly struct BFragment(uint b0, uint b1)
    {
        public readonly uint B0 = b0, B1 = b1;
    }

    /// <summary>Two f32 rounded to f16 and packed into one register, <paramref name="lo"/> in the low half (what an
    /// A or B fragment register holds): one <c>cvt.rn.f16x2.f32</c> on CUDA.</summary>
    public static uint PackHalf2(float lo, float hi)
    {
        if (CudaAsm.IsSupported)
        {
            Output<uint> packed = default;
            Input<float> upper = hi, lower = lo;
            CudaAsm.EmitRef("cvt.rn.f16x2.f32 %0, %1, %2;", ref packed, ref upper, ref lower);
            return packed.Value;
        }

        return HalfBits.FromFloat(lo) | (HalfBits.FromFloat(hi) << 16);
    }

    /// <summary>
    /// Two f32 as two packed f16 pairs whose sum is within ~2⁻²² of each: <see cref="HalfSplit.Hi"/> the values rounded
    /// to f16, <see cref="HalfSplit.Lo"/> what rounding left out, rounded again. Two products, A·hi + A·lo, give an
    /// f16 operand A (a K or V row of an f16 cache, exact) times an f32 operand at f32 precision.
    /// </summary>
    public static HalfSplit Split(float lo, float hi)
    {
        uint upper = PackHalf2(lo, hi);
        float restLo = lo - (float)Interop.IntAsFloat((ushort)(upper & 0xFFFF));
        float restHi = hi - (float)Interop.IntAsFloat((ushort)(upper >> 16));
        return new HalfSplit(upper, PackHalf2(restLo, restHi));
    }

    /// <summary>The low halves of two registers as one: (a.lo, b.lo), a's in the low half.</summary>
    public static uint LowHalves(uint a, uint b) => (a & 0xFFFFu) | (b << 16);

    /// <summary>The high halves of two registers as one: (a.hi, b.hi), a's in the low half.</summary>
    public static uint HighHalves(uint a, uint b) => (a >> 16) | (b & 0xFFFF0000u);

    /// <summary>The two f16 products of two packed registers, summed in f32.</summary>
    private static float Dot2(uint x, uint y) =>
        (float)Interop.IntAsFloat((ushort)(x & 0xFFFF)) * Interop.IntAsFloat((ushort)(y & 0xFFFF))
        + (float)Interop.IntAsFloat((ushort)(x >> 16)) * Interop.IntAsFloat((ushort)(y >> 16));
}

/// <summary>An f32 pair as f16 pairs, <see cref="Hi"/> + <see cref="Lo"/> (see <see cref="TensorCores.Split"/>).</summary>
public readonly struct HalfSplit
{
    public readonly uint Hi;
    public readonly uint Lo;

    public HalfSplit(uint hi, uint lo)
    {
        Hi = hi;
        Lo = lo;
    }
}
