using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Reference;

namespace SpecializedInference.Tests.Kernels;

/// <summary>The arithmetic of <c>si attention-bench --stage-times</c> on hand-made stage rows (the clocks themselves
/// exist only on CUDA; PtxCompilationTests checks that the timed decodes read them).</summary>
public sealed class DecodeStageSummaryTests
{
    /// <summary>A group's row (<see cref="StageRow"/>): ns at entry and exit, then the clock (cycles) at each mark, 0 where
    /// it did not pass (the tail's marks too: <see cref="TailStageSummaryTests"/>).</summary>
    internal static long[] Row(long entryNs, long exitNs, params long[] clocks)
    {
        Assert.Equal(StageRow.MaxStages, clocks.Length);
        return [entryNs, exitNs, .. clocks];
    }

    [Fact]
    public void StagesAreStepsFromThePreviousMarkInNsAtTheGroupsRate()
    {
        // Two groups at 2 cycles per ns. Group A (one partition: no ticket, no combine) enters at 1000 ns; group B at
        // 1500 ns, draws the last ticket and combines. Clock values start anywhere (each SM has its own counter).
        var a = Row(1000, 1000 + 500, 10_000, 10_200, 10_600, 10_700, 10_800, 0, 0, 11_000);
        var b = Row(1500, 1500 + 1000, 50_000, 50_400, 50_800, 50_900, 51_000, 51_400, 51_900, 52_000);
        var summary = DecodeStageSummary.From([.. a, .. b])!;

        Assert.Equal(2, summary.Groups);
        Assert.Equal((1000 + 2000) / 1500.0, summary.CyclesPerNs, 12);   // Σ cycles / Σ ns
        Assert.Equal(500, summary.StartSpreadNs);
        Assert.Equal(1500, summary.SpanNs);                              // first entry 1000, last exit 2500
        Assert.Equal(new[] { 0.0, 500, 500 }, summary.EntryQuartilesNs); // entries 0 and 500 ns after the first
        double ns(long cycles) => cycles / 2.0;
        var blocks = summary.Stages.Single(s => s.Stage == "blocks");
        Assert.Equal(2, blocks.Groups);
        Assert.Equal((ns(200) + ns(400)) / 2, blocks.MeanNs, 9);
        Assert.Equal(ns(400), blocks.MaxNs, 9);
        var ticket = summary.Stages.Single(s => s.Stage == "ticket");
        Assert.Equal(1, ticket.Groups);                                  // only B passed it
        Assert.Equal(ns(400), ticket.MeanNs, 9);
        var combine = summary.Stages.Single(s => s.Stage == "combine");
        Assert.Equal((1, ns(500)), (combine.Groups, combine.MeanNs));
        var exit = summary.Stages.Single(s => s.Stage == "exit");
        Assert.Equal((ns(200) + ns(100)) / 2, exit.MeanNs, 9);          // A from P·V (no ticket), B from its combine
        Assert.Equal((ns(1000) + ns(2000)) / 2, exit.MeanSinceEntryNs, 9);
        Assert.Contains("P·V", summary.ToString());
    }

    /// <summary>A combine mark left from an earlier launch (a group that drew the last ticket then, not now) is outside the
    /// group's entry and exit: not this launch's, so neither a stage of its own nor the start of the exit's step.</summary>
    [Fact]
    public void MarksOutsideTheGroupsEntryAndExitAreAnEarlierLaunchs()
    {
        var stale = Row(1000, 1000 + 500, 10_000, 10_200, 10_600, 10_700, 10_800, 10_850, 9_000, 11_000);
        var summary = DecodeStageSummary.From(stale)!;
        Assert.DoesNotContain(summary.Stages, s => s.Stage == "combine");
        var exit = summary.Stages.Single(s => s.Stage == "exit");
        Assert.Equal(150 / 2.0, exit.MeanNs, 9);                         // from the ticket
        Assert.All(summary.Stages, s => Assert.True(s.MeanNs >= 0, $"{s.Stage}: {s.MeanNs} ns"));
    }

    [Fact]
    public void GroupsWithoutClocksAreLeftOut()
    {
        Assert.Null(DecodeStageSummary.From(new long[3 * DecodeStage.SlotsPerGroup]));
        var one = Row(7, 17, 100, 110, 120, 130, 140, 0, 0, 150);
        var summary = DecodeStageSummary.From([.. new long[DecodeStage.SlotsPerGroup], .. one])!;
        Assert.Equal(1, summary.Groups);
        Assert.Equal(5.0, summary.CyclesPerNs, 12);
        Assert.Throws<ArgumentException>(() => DecodeStageSummary.From(new long[DecodeStage.SlotsPerGroup + 1]));
    }
}
