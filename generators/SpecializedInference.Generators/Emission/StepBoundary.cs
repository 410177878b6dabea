using System.Collections.Generic;
using System.Linq;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Keeps the steps of an unrolled loop in the order they are written. ILGPU 1.5.3 places pure arithmetic in the
/// block of its first use and emits a block's values depth first from their uses, so a register-tiled loop
/// written out in full (S = Q·Kᵀ over head_dim, say) came out as one accumulator's whole chain after another, with
/// every shared operand live to the end: ptxas gave the decode and prefill 255 registers and still spilled
/// 0.7–1.6 KB per thread. A step boundary is a branch that never runs (the kernel's thread index <c>t</c> is
/// never negative) around shared stores of the step's accumulators: it ends the block, and the stores are uses of
/// the accumulators, so each step's loads and multiply-adds are emitted before the next step's. ptxas makes it one
/// uniform branch or a few predicated stores that never write.
/// </summary>
internal static class StepBoundary
{
    /// <summary>A boundary that keeps the float accumulators <paramref name="floats"/>, stored four at a time into
    /// the Float4 shared view <paramref name="scratch"/> of <paramref name="capacity"/> elements.</summary>
    public static string Floats(string scratch, int capacity, IEnumerable<string> floats)
    {
        var all = floats.ToList();
        var packs = new List<string>();
        for (int i = 0; i < all.Count; i += 4)
        {
            var pack = all.Skip(i).Take(4).ToList();
            while (pack.Count < 4) pack.Add("0f");
            packs.Add($"new Float4({string.Join(", ", pack)})");
        }
        return Float4s(scratch, capacity, packs);
    }

    /// <summary>A boundary right after loads are issued, keeping the raw chunks <paramref name="raws"/> (RawChunk8):
    /// without it ILGPU would place each load in the step that first uses it, one memory round trip per step.
    /// <paramref name="scratch"/> is a Float4 shared view of <paramref name="capacity"/> elements, written through
    /// as Chunk16.</summary>
    public static string Chunks(string scratch, int capacity, IEnumerable<string> raws)
        => $"if (t < 0) {{ var keep = {scratch}.Cast<Chunk16>(); {string.Join(" ", raws.SelectMany((r, i) => new[] { $"keep[{Int(2 * i % capacity)}] = {r}.A;", $"keep[{Int((2 * i + 1) % capacity)}] = {r}.B;" }))} }} // step boundary (never taken): the loads above stay in flight together";

    /// <summary>A boundary right after loads are issued, keeping the 16-byte chunks <paramref name="chunks"/> (Chunk16), as
    /// <see cref="Chunks"/> does for RawChunk8.</summary>
    public static string Chunk16s(string scratch, int capacity, IEnumerable<string> chunks)
        => $"if (t < 0) {{ var keep = {scratch}.Cast<Chunk16>(); {string.Join(" ", chunks.Select((c, i) => $"keep[{Int(i % capacity)}] = {c};"))} }} // step boundary (never taken): the loads above stay in flight together";

    /// <summary>A boundary that keeps the Float4 accumulators <paramref name="values"/>; the stores stay inside the
    /// <paramref name="capacity"/> elements of <paramref name="scratch"/> even though they never run.</summary>
    public static string Float4s(string scratch, int capacity, IEnumerable<string> values)
        => $"if (t < 0) {{ {string.Join(" ", values.Select((v, i) => $"{scratch}[{Int(i % capacity)}] = {v};"))} }} // step boundary (never taken): keeps the steps in order";
}
