namespace SpecializedInference.Generators.Emission;

/// <summary>
/// The stage marks of a decode kernel (the runtime's <c>DecodeStage</c>): the tensor-core decodes take a clock type
/// parameter (<c>TClock : IStageClock</c>) and call it after each step's barrier; the CUDA-core decodes have none.
/// </summary>
internal sealed class StageMarks
{
    /// <summary>No marks: the kernel has no clock parameter.</summary>
    public static readonly StageMarks None = new(clocked: false);

    /// <summary>Marks through the kernel's <c>TClock</c>: nothing in the engine's instantiation
    /// (<c>NoStageClock</c>), the SM's clock in the benchmark's (<c>SmStageClock</c>).</summary>
    public static readonly StageMarks Clock = new(clocked: true);

    private readonly bool _clocked;

    private StageMarks(bool clocked) => _clocked = clocked;

    /// <summary>Writes the mark of stage <paramref name="stage"/> (a <c>DecodeStage</c> constant's name).</summary>
    public void At(SourceWriter w, string stage)
    {
        if (_clocked) w.Line($"default(TClock).Mark(m.StageTimes, DecodeStage.{stage});");
    }
}
