using SpecializedInference.Kernels;

namespace SpecializedInference.Tests.Kernels;

/// <summary>The register caps' text form (<c>si attention-bench --max-registers</c>) and defaults.</summary>
public class RegisterLimitsTests
{
    [Theory]
    [InlineData("decode=168,prefill=128", 168, 128)]
    [InlineData("prefill=96", 0, 96)]
    [InlineData(" decode = 0 , prefill = 0 ", 0, 0)]
    [InlineData("", 0, 0)]
    public void ParsesEitherKernelInAnyOrder(string text, int decode, int prefill)
        => Assert.Equal(new RegisterLimits(decode, prefill), RegisterLimits.Parse(text));

    [Theory]
    [InlineData("decode=8", "16..255")]
    [InlineData("decode=300", "16..255")]
    [InlineData("prefil=128", "unknown kernel 'prefil'")]
    [InlineData("decode", "expected decode=N")]
    public void RejectsWhatPtxCannotTakeNamingThePart(string text, string expected)
        => Assert.Contains(expected, Assert.Throws<FormatException>(() => RegisterLimits.Parse(text)).Message);

    [Fact]
    public void RoundTripsThroughItsText()
    {
        var limits = new RegisterLimits(Decode: 168, Prefill: 128);
        Assert.Equal(limits, RegisterLimits.Parse(limits.ToString()));
    }

    [Fact]
    public void OptionsDefaultToTheGeneratedSetsLimits()
    {
        Assert.Null(new AttentionOptions().MaxRegisters);
        Assert.Equal(RegisterLimits.None, RegisterLimits.Generated); // measured: the caps tried spilled (see Generated)
    }
}
