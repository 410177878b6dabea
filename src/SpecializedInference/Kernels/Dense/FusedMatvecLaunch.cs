namespace SpecializedInference.Kernels.Dense;

/// <summary>
/// How the fused decode matvec (<see cref="FusedKernelBodies.NormLinearWarp{TW, TO, TD, TP}"/>: qkv, gate|up, the LM head)
/// is launched: warps per thread group and a cap on registers per thread (CUDA).
/// <para>Why it matters: a warp takes one row pair, and its grid is a whole number of waves only by chance. At 96
/// registers an H200 SM holds 5 groups of 4 warps, 20 warps: TinyLlama's gate|up (5632 warps) is 2.13 waves, so its last
/// wave runs 13% full for as long as a full one; Llama-3-8B's is 5.43. Capped at 88 registers (no spills, ptxas sm_90)
/// in groups of 2 warps, an SM holds 11 groups, 22 warps: 1.94 and 4.94 waves, one fewer each. Groups of 4 at 88 would
/// still be 5 per SM.</para>
/// </summary>
/// <param name="WarpsPerGroup">Warps per thread group: 1, 2, 4 or 8 (the warps share nothing but L1).</param>
/// <param name="MaxRegisters">Registers per thread on CUDA, 0 for the compiler's choice (96 at the default depth). It applies
/// to every fused projection whatever its <see cref="MatvecDepth"/>: 88 suits depth 2 only (ptxas sm_90 gives 165 registers
/// at depth 4, 251 at 8, so a cap of 88 spills those).</param>
public sealed record FusedMatvecLaunch(int WarpsPerGroup = 4, int MaxRegisters = 0)
{
    /// <summary>What runs 9–22 measured: groups of 4 warps, the compiler's registers.</summary>
    public static FusedMatvecLaunch Default { get; } = new();

    /// <summary>Parses <c>warps:registers</c> (e.g. <c>2:88</c>, <c>4:0</c>), as the benchmark options give it.</summary>
    public static FusedMatvecLaunch Parse(string text)
    {
        var parts = text.Split(':');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int warps) || !int.TryParse(parts[1], out int registers))
            throw new ArgumentException($"fused matvec launch '{text}': expected <warps per group>:<max registers>, e.g. 2:88 (0 registers: the compiler's choice)");
        return new FusedMatvecLaunch(warps, registers).Validated();
    }

    /// <summary>This launch, or a clear error when a field is out of range.</summary>
    public FusedMatvecLaunch Validated()
    {
        if (WarpsPerGroup is not (1 or 2 or 4 or 8))
            throw new ArgumentOutOfRangeException(nameof(WarpsPerGroup), WarpsPerGroup, "fused matvec launch: WarpsPerGroup must be 1, 2, 4 or 8");
        if (MaxRegisters != 0 && MaxRegisters is < 16 or > 255)
            throw new ArgumentOutOfRangeException(nameof(MaxRegisters), MaxRegisters, "fused matvec launch: MaxRegisters must be 0 (the compiler's choice) or 16..255");
        return this;
    }

    public override string ToString() => $"{WarpsPerGroup}:{MaxRegisters}";
}
