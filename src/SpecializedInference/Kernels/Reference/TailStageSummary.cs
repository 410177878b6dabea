using System.Globalization;
using System.Text;

namespace SpecializedInference.Kernels.Reference;

/// <summary>
/// One stage of a grid-synced layer tail over its launch's groups (ns): each group's own work (from the previous
/// barrier's release, or its entry, to its arrival at the next barrier, or its exit) and its wait at that barrier (from
/// its arrival to the release). The last group to arrive waits only for the barrier itself, so <see cref="MinWaitNs"/>
/// is the barrier's own latency, and the mean wait beyond it is the other groups' lateness.
/// </summary>
/// <param name="WaitGroups">Groups that waited at a barrier after the stage: 0 after the last stage.</param>
/// <param name="EndSinceEntryNs">When the stage ended for the launch, after the group's entry: the mean over the groups of
/// the release (or the exit, after the last stage).</param>
/// <param name="WeightBytes">What the stage's rows read (0 when not given), for its GB/s over the launch's time in it.</param>
public sealed record TailStageTiming(string Stage, int Groups, double MeanWorkNs, double MaxWorkNs, int WaitGroups, double MeanWaitNs, double MinWaitNs,
    double EndSinceEntryNs, double WeightBytes)
{
    /// <summary>The stage's weight bytes over its share of the launch: from the previous stage's end to its own.</summary>
    public double GBps(double startSinceEntryNs) => WeightBytes > 0 && EndSinceEntryNs > startSinceEntryNs ? WeightBytes / (EndSinceEntryNs - startSinceEntryNs) : 0;
}

/// <summary>
/// What the groups of one grid-synced layer tail recorded with <see cref="SmStageClock"/> (<see cref="TailStage"/>,
/// <see cref="Dense.DenseKernels.ReadTailStageTimes"/>): where a tail's time goes, stage by stage, between the groups'
/// own rows, their lateness to each other at the barriers, and the barriers themselves.
/// </summary>
public sealed record TailStageSummary(int Groups, double CyclesPerNs, double StartSpreadNs, double SpanNs, IReadOnlyList<TailStageTiming> Stages)
{
    /// <summary>The stages' names, in order.</summary>
    public static readonly string[] Names = ["o_proj", "gate|up", "down_proj", "next qkv"];

    /// <summary>
    /// The summary of <paramref name="times"/> ([groups, StageRow.SlotsPerGroup]), or null when no group recorded an
    /// entry and an exit. <paramref name="weightBytes"/>: each stage's weight bytes (<see cref="Names"/>' order; absent,
    /// no GB/s). A tail after the last layer has no barrier after down_proj and no next qkv: its down_proj ends at the exit.
    /// </summary>
    public static TailStageSummary? From(long[] times, IReadOnlyList<double>? weightBytes = null)
    {
        if (StageRows.From(times) is not { } parsed) return null;
        var rows = parsed.Rows;
        var stages = new List<TailStageTiming>();
        for (int s = 0; s < Names.Length; s++)
        {
            var work = new List<double>();
            var waits = new List<double>();
            var ends = new List<double>();
            foreach (var r in rows)
            {
                if (Span(r, s) is not var (start, arrival, release)) continue;
                work.Add(parsed.Ns(r, start, arrival));
                if (release is { } rel)
                {
                    waits.Add(parsed.Ns(r, arrival, rel));
                    ends.Add(parsed.Ns(r, TailStage.Entry, rel));
                }
                else ends.Add(parsed.Ns(r, TailStage.Entry, arrival));
            }
            if (work.Count == 0) continue;
            double bytes = weightBytes is not null && s < weightBytes.Count ? weightBytes[s] : 0;
            stages.Add(new TailStageTiming(Names[s], work.Count, work.Average(), work.Max(), waits.Count, waits.Count > 0 ? waits.Average() : 0,
                waits.Count > 0 ? waits.Min() : 0, ends.Average(), bytes));
        }
        return new TailStageSummary(rows.Count, parsed.CyclesPerNs, parsed.StartSpreadNs, parsed.SpanNs, stages);
    }

    /// <summary>Stage <paramref name="stage"/>'s marks in a group's row: where it starts, where the group's rows of it are
    /// done (its arrival at the next barrier, or its exit), and the barrier's release (none after the last stage); null
    /// when the group did not run it (the next qkv after the last layer).</summary>
    private static (int Start, int Done, int? Release)? Span(long[] row, int stage)
    {
        bool next = StageRows.Marked(row, TailStage.DownArrive) != 0;   // a barrier after down_proj: the next qkv runs
        return stage switch
        {
            0 => (TailStage.Entry, TailStage.OArrive, TailStage.ORelease),
            1 => (TailStage.ORelease, TailStage.GateUpArrive, TailStage.GateUpRelease),
            2 => next ? (TailStage.GateUpRelease, TailStage.DownArrive, TailStage.DownRelease) : (TailStage.GateUpRelease, TailStage.Exit, null),
            _ => next ? (TailStage.DownRelease, TailStage.Exit, null) : null,
        };
    }

    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.AppendLine(c, $"    tail stages: {Groups} groups (thread 0 of each), %clock64 at {CyclesPerNs:F2} cycles/ns; groups start over " +
            $"{StartSpreadNs / 1e3:F2} us, the last ends {SpanNs / 1e3:F2} us after the first starts");
        sb.AppendLine("    stage      groups  work mean us  work max us  barrier wait mean us  min us (the barrier alone)  ends us after entry   GB/s");
        double previous = 0;
        foreach (var s in Stages)
        {
            string wait = s.WaitGroups > 0 ? $"{s.MeanWaitNs / 1e3,20:F3}  {s.MinWaitNs / 1e3,26:F3}" : $"{"—",20}  {"—",26}";
            double gbps = s.GBps(previous);
            sb.AppendLine(c, $"    {s.Stage,-9} {s.Groups,7} {s.MeanWorkNs / 1e3,13:F3} {s.MaxWorkNs / 1e3,12:F3}  {wait}  {s.EndSinceEntryNs / 1e3,19:F3} {(gbps > 0 ? gbps.ToString("F0", c) : "—"),6}");
            previous = s.EndSinceEntryNs;
        }
        return sb.ToString().TrimEnd();
    }
}
