using SpecializedInference.Text;

namespace SpecializedInference.Tests.Text;

public sealed class StopStringFilterTests
{
    private static (string Text, bool Stopped, List<string> Pieces) Run(string[] stops, params string[] deltas)
    {
        var filter = new StopStringFilter(stops);
        var pieces = deltas.Select(filter.Push).ToList();
        pieces.Add(filter.Flush());
        return (string.Concat(pieces), filter.Stopped, pieces);
    }

    [Fact]
    public void StopInsideOneDeltaTrimsAtItsStart()
    {
        var (text, stopped, _) = Run(["world"], "hello world and more");
        Assert.True(stopped);
        Assert.Equal("hello ", text);
    }

    [Fact]
    public void StopSpanningDeltasIsNeverShownInPart()
    {
        var (text, stopped, pieces) = Run(["world"], "hello w", "or", "ld!", " ignored");
        Assert.True(stopped);
        Assert.Equal("hello ", text);
        Assert.Equal(["hello ", "", "", "", ""], pieces);
    }

    [Fact]
    public void HeldPrefixIsReleasedWhenItDoesNotBecomeAStop()
    {
        var (text, stopped, pieces) = Run(["world"], "a wo", "rk", " wor");
        Assert.False(stopped);
        Assert.Equal("a work wor", text);
        Assert.Equal(["a ", "work", " ", "wor"], pieces);
    }

    [Fact]
    public void EarliestOfSeveralStopsWins()
    {
        var (text, stopped, _) = Run(["bye", "."], "hi. bye");
        Assert.True(stopped);
        Assert.Equal("hi", text);
    }

    [Fact]
    public void NoStopsPassesEverythingThrough()
    {
        var (text, stopped, pieces) = Run([], "a", "b");
        Assert.False(stopped);
        Assert.Equal("ab", text);
        Assert.Equal(["a", "b", ""], pieces);
    }

    [Fact]
    public void EmptyStopIsRejected() => Assert.Throws<ArgumentException>(() => new StopStringFilter([""]));
}
