using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Reference;

namespace SpecializedInference.Tests.Kernels;

/// <summary>The arithmetic of the benchmarks' <c>layer-tail</c> clock on hand-made rows (the clocks exist only on CUDA;
/// PtxCompilationTests checks that the clocked tail reads them, and <c>si selftest --set dense</c> that it marks every stage).
/// Rows as <see cref="DecodeStageSummaryTests.Row"/> makes them, the clocks at each <see cref="TailStage"/> mark.</summary>
public sealed class TailStageSummaryTests
{
    [Fact]
    public void StagesSplitIntoEachGroupsWorkAndItsWaitAtTheBarrierAfter()
    {
        // Two groups at 2 cycles per ns, their clocks from different origins. A arrives early at each barrier and waits;
        // B arrives last and waits only the barrier's own latency (20 cycles = 10 ns).
        //                 entry   o arr   o rel   gu arr  gu rel  dn arr  dn rel  exit
        var a = DecodeStageSummaryTests.Row(1000, 1000 + 600, 10_000, 10_100, 10_300, 10_600, 10_900, 11_000, 11_100, 11_200);
        var b = DecodeStageSummaryTests.Row(1010, 1010 + 590, 50_000, 50_260, 50_280, 50_860, 50_880, 50_960, 50_980, 51_180);
        var summary = TailStageSummary.From([.. a, .. b], [1000.0, 2000, 3000, 4000])!;

        Assert.Equal(2, summary.Groups);
        Assert.Equal((1200 + 1180) / 1190.0, summary.CyclesPerNs, 12);
        Assert.Equal(new[] { "o_proj", "gate|up", "down_proj", "next qkv" }, summary.Stages.Select(s => s.Stage));
        double ns(double cycles) => cycles / summary.CyclesPerNs;
        var o = summary.Stages[0];
        Assert.Equal((ns(100) + ns(260)) / 2, o.MeanWorkNs, 9);
        Assert.Equal(ns(260), o.MaxWorkNs, 9);
        Assert.Equal((2, (ns(200) + ns(20)) / 2, ns(20)), (o.WaitGroups, o.MeanWaitNs, o.MinWaitNs));
        Assert.Equal((ns(300) + ns(280)) / 2, o.EndSinceEntryNs, 9);
        var gateUp = summary.Stages[1];
        Assert.Equal((ns(300) + ns(580)) / 2, gateUp.MeanWorkNs, 9);
        Assert.Equal(ns(20), gateUp.MinWaitNs, 9);
        var qkv = summary.Stages[3];
        Assert.Equal((0, (ns(100) + ns(200)) / 2, ns(200)), (qkv.WaitGroups, qkv.MeanWorkNs, qkv.MaxWorkNs));
        Assert.Equal((ns(1200) + ns(1180)) / 2, qkv.EndSinceEntryNs, 9);
        Assert.Equal(4000 / (qkv.EndSinceEntryNs - summary.Stages[2].EndSinceEntryNs), qkv.GBps(summary.Stages[2].EndSinceEntryNs), 9);
        Assert.Contains("gate|up", summary.ToString());
    }

    /// <summary>After the last layer the tail has no barrier after down_proj and no next qkv: down_proj ends at the exit.</summary>
    [Fact]
    public void TheLastLayersTailEndsWithDownProj()
    {
        var last = DecodeStageSummaryTests.Row(1000, 1000 + 500, 10_000, 10_100, 10_200, 10_500, 10_600, 0, 0, 11_000);
        var summary = TailStageSummary.From(last)!;
        Assert.Equal(new[] { "o_proj", "gate|up", "down_proj" }, summary.Stages.Select(s => s.Stage));
        var down = summary.Stages[2];
        Assert.Equal((0, 400 / summary.CyclesPerNs), (down.WaitGroups, down.MeanWorkNs));
        Assert.Equal(0, down.GBps(summary.Stages[1].EndSinceEntryNs));   // no bytes given
    }

    [Fact]
    public void GroupsWithoutClocksAreLeftOut()
    {
        Assert.Null(TailStageSummary.From(new long[2 * StageRow.SlotsPerGroup]));
        Assert.Throws<ArgumentException>(() => TailStageSummary.From(new long[StageRow.SlotsPerGroup - 1]));
    }
}
