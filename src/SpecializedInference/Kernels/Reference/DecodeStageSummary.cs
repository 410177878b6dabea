using System.Globalization;
using System.Text;

namespace SpecializedInference.Kernels.Reference;

/// <summary>One <see cref="DecodeStage"/> over a launch's decode groups: how long the step took (from the group's
/// previous mark), in ns, mean and largest, and when it ended after the group's entry, mean.</summary>
public sealed record StageTiming(string Stage, int Groups, double MeanNs, double MaxNs, double MeanSinceEntryNs);

/// <summary>
/// What the decode groups of one launch recorded with <see cref="SmStageClock"/> (<see cref="AttentionPlan.ReadStageTimes"/>):
/// the steps of a group's chain in ns (its SM's cycles, converted at the rate the groups' own <c>%globaltimer</c> spans
/// give), and how the groups spread over the launch. Groups that recorded nothing (ILGPU's CPU accelerator) are left out.
/// </summary>
/// <param name="Groups">Groups with an entry and an exit mark.</param>
/// <param name="CyclesPerNs">SM cycles per ns: Σ cycles ÷ Σ ns from entry to exit over the groups.</param>
/// <param name="StartSpreadNs">From the first group's entry to the last group's.</param>
/// <param name="SpanNs">From the first group's entry to the last group's exit.</param>
/// <param name="EntryQuartilesNs">When the groups start after the first one: the 25th, 50th and 75th percentile (ns). Groups
/// that start in waves (more groups than fit on the SMs at once) show it here: a grid of 2.5 waves puts the median near
/// the second wave's start.</param>
public sealed record DecodeStageSummary(int Groups, double CyclesPerNs, double StartSpreadNs, double SpanNs, IReadOnlyList<double> EntryQuartilesNs,
    IReadOnlyList<StageTiming> Stages)
{
    /// <summary>The summary of <paramref name="times"/> ([groups, DecodeStage.SlotsPerGroup]), or null when no group
    /// recorded an entry and an exit with a positive span.</summary>
    public static DecodeStageSummary? From(long[] times)
    {
        if (StageRows.From(times) is not { } parsed) return null;
        var rows = parsed.Rows;
        double cyclesPerNs = parsed.CyclesPerNs;

        var stages = new List<StageTiming>();
        for (int s = 1; s < DecodeStage.Count; s++)
        {
            var steps = new List<(double Step, double SinceEntry)>();
            foreach (var r in rows)
            {
                if (StageRows.Marked(r, s) == 0) continue;   // not passed (a single-partition decode draws no ticket)
                int before = s - 1;
                while (before > 0 && StageRows.Marked(r, before) == 0) before--;
                steps.Add((parsed.Ns(r, before, s), parsed.Ns(r, DecodeStage.Entry, s)));
            }
            if (steps.Count > 0)
                stages.Add(new StageTiming(DecodeStage.Names[s], steps.Count, steps.Average(x => x.Step), steps.Max(x => x.Step), steps.Average(x => x.SinceEntry)));
        }
        long first = rows.Min(r => r[0]);
        var entries = rows.Select(r => (double)(r[0] - first)).Order().ToArray();
        double Quantile(double q) => entries[(int)Math.Round(q * (entries.Length - 1), MidpointRounding.AwayFromZero)];
        return new DecodeStageSummary(rows.Count, cyclesPerNs, parsed.StartSpreadNs, parsed.SpanNs,
            [Quantile(0.25), Quantile(0.5), Quantile(0.75)], stages);
    }

    public override string ToString()
    {
        var c = CultureInfo.InvariantCulture;
        var sb = new StringBuilder();
        sb.Append(c, $"    stage times: {Groups} groups (thread 0 of each), %clock64 at {CyclesPerNs:F2} cycles/ns; ");
        sb.AppendLine(c, $"groups start over {StartSpreadNs / 1e3:F2} us (quartiles {EntryQuartilesNs[0] / 1e3:F2} / {EntryQuartilesNs[1] / 1e3:F2} / " +
            $"{EntryQuartilesNs[2] / 1e3:F2} us), the last ends {SpanNs / 1e3:F2} us after the first starts");
        sb.AppendLine("    stage      groups   mean us    max us   mean us since entry");
        foreach (var s in Stages)
            sb.AppendLine(c, $"    {s.Stage,-9} {s.Groups,7} {s.MeanNs / 1e3,9:F3} {s.MaxNs / 1e3,9:F3} {s.MeanSinceEntryNs / 1e3,12:F3}");
        return sb.ToString().TrimEnd();
    }
}
