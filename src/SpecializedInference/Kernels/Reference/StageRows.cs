namespace SpecializedInference.Kernels.Reference;

/// <summary>
/// The groups' rows of one clocked launch (<see cref="StageRow"/>: ns at entry and exit, then each mark's SM clock), as
/// the summaries read them: the groups that recorded an entry and an exit, and the cycles' rate in ns. Each SM's clock
/// counts from its own origin, so a row's marks compare with each other and not across groups; the ns timer does.
/// </summary>
internal sealed class StageRows
{
    private StageRows(List<long[]> rows, double cyclesPerNs) => (Rows, CyclesPerNs) = (rows, cyclesPerNs);

    /// <summary>Groups with an entry and an exit mark and a positive span in both counters.</summary>
    public IReadOnlyList<long[]> Rows { get; }

    /// <summary>SM cycles per ns: Σ cycles ÷ Σ ns from entry to exit over the rows.</summary>
    public double CyclesPerNs { get; }

    /// <summary>The rows of <paramref name="times"/> ([groups, StageRow.SlotsPerGroup]), or null when none recorded.</summary>
    /// <exception cref="ArgumentException"><paramref name="times"/> is not whole rows.</exception>
    public static StageRows? From(long[] times)
    {
        const int S = StageRow.SlotsPerGroup;
        if (times.Length % S != 0) throw new ArgumentException($"stage times: {times.Length} longs are not whole rows of {S}", nameof(times));
        var rows = Enumerable.Range(0, times.Length / S).Select(g => times.AsSpan(g * S, S).ToArray())
            .Where(r => r[0] != 0 && r[1] > r[0] && Clock(r, StageRow.Entry) != 0 && Clock(r, StageRow.Exit) > Clock(r, StageRow.Entry))
            .ToList();
        if (rows.Count == 0) return null;
        double cyclesPerNs = rows.Sum(r => (double)(Clock(r, StageRow.Exit) - Clock(r, StageRow.Entry))) / rows.Sum(r => (double)(r[1] - r[0]));
        return new StageRows(rows, cyclesPerNs);
    }

    public static long Clock(long[] row, int stage) => row[StageRow.ClockSlot(stage)];

    /// <summary>Mark <paramref name="stage"/>'s clock if this launch made it: between the group's entry and exit marks
    /// (a mark outside them is an earlier launch's, which <see cref="SmStageClock"/> clears at entry), else 0.</summary>
    public static long Marked(long[] row, int stage)
    {
        long at = Clock(row, stage);
        return at >= Clock(row, StageRow.Entry) && at <= Clock(row, StageRow.Exit) ? at : 0;
    }

    /// <summary>Cycles from mark <paramref name="from"/> to <paramref name="to"/> of <paramref name="row"/> in ns.</summary>
    public double Ns(long[] row, int from, int to) => (Marked(row, to) - Marked(row, from)) / CyclesPerNs;

    /// <summary>From the first group's entry to the last group's (ns).</summary>
    public double StartSpreadNs => Rows.Max(r => r[0]) - Rows.Min(r => r[0]);

    /// <summary>From the first group's entry to the last group's exit (ns).</summary>
    public double SpanNs => Rows.Max(r => r[1]) - Rows.Min(r => r[0]);
}
