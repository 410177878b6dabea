using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace SpecializedInference.Tests.Server;

internal sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

internal sealed class PrometheusFamily(string name, string type)
{
    public string Name { get; } = name;

    public string Type { get; } = type;

    public string? Help { get; set; }

    public List<PrometheusSample> Samples { get; } = new();
}

/// <summary>
/// A strict parser of the Prometheus text exposition format 0.0.4, for tests: anything a scraper would
/// reject, or that breaks the format's rules (a sample before its family's TYPE, families interleaved,
/// duplicate series, bad escapes, non-cumulative histogram buckets, a missing +Inf bucket or _count that
/// differs from it, negative counters), throws <see cref="FormatException"/> with the line number.
/// </summary>
internal sealed partial class PrometheusTextParser
{
    [GeneratedRegex("^[a-zA-Z_:][a-zA-Z0-9_:]*$")]
    private static partial Regex MetricName();

    [GeneratedRegex("^[a-zA-Z_][a-zA-Z0-9_]*$")]
    private static partial Regex LabelName();

    private static readonly string[] Types = ["counter", "gauge", "histogram", "summary", "untyped"];

    private PrometheusTextParser(Dictionary<string, PrometheusFamily> families) => Families = families;

    public IReadOnlyDictionary<string, PrometheusFamily> Families { get; }

    /// <summary>The value of the one sample named <paramref name="name"/> with these labels (others ignored).</summary>
    public double Value(string name, params (string Label, string Value)[] labels)
    {
        var matches = Families.Values.SelectMany(f => f.Samples)
            .Where(s => s.Name == name && labels.All(l => s.Labels.TryGetValue(l.Label, out var v) && v == l.Value)).ToList();
        if (matches.Count != 1)
            throw new InvalidOperationException($"{matches.Count} samples match {name}{{{string.Join(",", labels.Select(l => $"{l.Label}={l.Value}"))}}}.");
        return matches[0].Value;
    }

    public static PrometheusTextParser Parse(string text)
    {
        if (text.Length == 0 || text[^1] != '\n')
            throw new FormatException("The exposition must end with a line feed.");
        var families = new Dictionary<string, PrometheusFamily>();
        var series = new HashSet<string>();
        PrometheusFamily? current = null;
        var lines = text[..^1].Split('\n');
        for (int n = 0; n < lines.Length; n++)
        {
            string line = lines[n];
            string where = $"line {n + 1} '{line}'";
            if (line.Length == 0)
                continue;
            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4);
                if (parts.Length < 3 || parts[0] != "#" || parts[1] is not ("HELP" or "TYPE"))
                    continue; // a plain comment
                string name = parts[2];
                if (!MetricName().IsMatch(name))
                    throw new FormatException($"{where}: bad metric name.");
                if (parts[1] == "TYPE")
                {
                    if (parts.Length != 4 || !Types.Contains(parts[3]))
                        throw new FormatException($"{where}: TYPE must be one of {string.Join(", ", Types)}.");
                    if (families.TryGetValue(name, out var existing) && (existing.Type != "untyped" || existing.Samples.Count > 0))
                        throw new FormatException($"{where}: second TYPE for {name}.");
                    var family = new PrometheusFamily(name, parts[3]) { Help = existing?.Help };
                    families[name] = family;
                    current = family;
                }
                else
                {
                    if (families.TryGetValue(name, out var family))
                    {
                        if (family.Help is not null)
                            throw new FormatException($"{where}: second HELP for {name}.");
                        if (family.Samples.Count > 0)
                            throw new FormatException($"{where}: HELP after samples of {name}.");
                    }
                    else
                    {
                        family = new PrometheusFamily(name, "untyped");
                        families[name] = family;
                        current = family;
                    }
                    family.Help = parts.Length == 4 ? Unescape(parts[3], allowQuote: false, where) : "";
                }
                continue;
            }

            var sample = ParseSample(line, where);
            if (current is null || !BelongsTo(sample.Name, current))
                throw new FormatException($"{where}: sample {sample.Name} is not in the family declared just before it (families must be contiguous and typed first).");
            string key = sample.Name + "{" + string.Join(",", sample.Labels.OrderBy(l => l.Key).Select(l => $"{l.Key}={l.Value}")) + "}";
            if (!series.Add(key))
                throw new FormatException($"{where}: duplicate series {key}.");
            if (current.Type == "counter" && !(sample.Value >= 0))
                throw new FormatException($"{where}: counter value {sample.Value} is not a non-negative number.");
            current.Samples.Add(sample);
        }
        foreach (var family in families.Values.Where(f => f.Type == "histogram"))
            CheckHistogram(family);
        return new PrometheusTextParser(families);
    }

    private static bool BelongsTo(string sample, PrometheusFamily family) => family.Type switch
    {
        "histogram" => sample == family.Name + "_bucket" || sample == family.Name + "_sum" || sample == family.Name + "_count",
        "summary" => sample == family.Name || sample == family.Name + "_sum" || sample == family.Name + "_count",
        _ => sample == family.Name,
    };

    private static void CheckHistogram(PrometheusFamily family)
    {
        var groups = family.Samples.GroupBy(s => string.Join(",", s.Labels.Where(l => l.Key != "le").OrderBy(l => l.Key).Select(l => $"{l.Key}={l.Value}")));
        foreach (var group in groups)
        {
            var buckets = group.Where(s => s.Name.EndsWith("_bucket")).ToList();
            if (buckets.Count == 0)
                throw new FormatException($"{family.Name}{{{group.Key}}} has no buckets.");
            double previousLe = double.NegativeInfinity, previousCount = 0;
            foreach (var b in buckets)
            {
                if (!b.Labels.TryGetValue("le", out var leText))
                    throw new FormatException($"{family.Name}: a bucket without le.");
                double le = ParseValue(leText, family.Name);
                if (!(le > previousLe))
                    throw new FormatException($"{family.Name}: bucket le={leText} is not above the previous one.");
                if (b.Value < previousCount)
                    throw new FormatException($"{family.Name}: bucket le={leText} count {b.Value} is below the previous {previousCount} (buckets are cumulative).");
                previousLe = le;
                previousCount = b.Value;
            }
            if (!double.IsPositiveInfinity(previousLe))
                throw new FormatException($"{family.Name}: the last bucket must be le=\"+Inf\".");
            var count = group.SingleOrDefault(s => s.Name.EndsWith("_count")) ?? throw new FormatException($"{family.Name}: no _count.");
            _ = group.SingleOrDefault(s => s.Name.EndsWith("_sum")) ?? throw new FormatException($"{family.Name}: no _sum.");
            if (count.Value != previousCount)
                throw new FormatException($"{family.Name}: _count {count.Value} differs from the +Inf bucket {previousCount}.");
        }
    }

    private static PrometheusSample ParseSample(string line, string where)
    {
        int i = 0;
        while (i < line.Length && line[i] is not ('{' or ' '))
            i++;
        string name = line[..i];
        if (!MetricName().IsMatch(name))
            throw new FormatException($"{where}: bad metric name '{name}'.");
        var labels = new Dictionary<string, string>();
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (true)
            {
                if (i < line.Length && line[i] == '}')
                {
                    i++;
                    break;
                }
                int eq = line.IndexOf('=', i);
                if (eq < 0)
                    throw new FormatException($"{where}: label without '='.");
                string label = line[i..eq];
                if (!LabelName().IsMatch(label) || label.StartsWith("__"))
                    throw new FormatException($"{where}: bad label name '{label}'.");
                i = eq + 1;
                if (i >= line.Length || line[i] != '"')
                    throw new FormatException($"{where}: label value must be quoted.");
                i++;
                var value = new StringBuilder();
                while (true)
                {
                    if (i >= line.Length)
                        throw new FormatException($"{where}: unterminated label value.");
                    char c = line[i++];
                    if (c == '"')
                        break;
                    if (c == '\\')
                    {
                        if (i >= line.Length)
                            throw new FormatException($"{where}: dangling escape.");
                        char e = line[i++];
                        value.Append(e switch
                        {
                            '\\' => '\\',
                            '"' => '"',
                            'n' => '\n',
                            _ => throw new FormatException($"{where}: bad escape '\\{e}' in a label value."),
                        });
                    }
                    else
                    {
                        value.Append(c);
                    }
                }
                if (!labels.TryAdd(label, value.ToString()))
                    throw new FormatException($"{where}: label {label} twice.");
                if (i < line.Length && line[i] == ',')
                    i++;
                else if (i >= line.Length || line[i] != '}')
                    throw new FormatException($"{where}: expected ',' or '}}' after a label.");
            }
        }
        if (i >= line.Length || line[i] != ' ')
            throw new FormatException($"{where}: expected one space before the value.");
        var rest = line[(i + 1)..].Split(' ');
        if (rest.Length is < 1 or > 2 || rest[0].Length == 0)
            throw new FormatException($"{where}: expected a value and an optional timestamp.");
        double v = ParseValue(rest[0], where);
        if (rest.Length == 2 && !long.TryParse(rest[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
            throw new FormatException($"{where}: bad timestamp '{rest[1]}'.");
        return new PrometheusSample(name, labels, v);
    }

    private static double ParseValue(string text, string where) => text switch
    {
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        "NaN" => double.NaN,
        _ when double.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
            CultureInfo.InvariantCulture, out double d) => d,
        _ => throw new FormatException($"{where}: bad value '{text}'."),
    };

    private static string Unescape(string text, bool allowQuote, string where)
    {
        var result = new StringBuilder();
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != '\\')
            {
                result.Append(text[i]);
                continue;
            }
            if (++i >= text.Length)
                throw new FormatException($"{where}: dangling escape.");
            result.Append(text[i] switch
            {
                '\\' => '\\',
                'n' => '\n',
                '"' when allowQuote => '"',
                _ => throw new FormatException($"{where}: bad escape '\\{text[i]}' in HELP."),
            });
        }
        return result.ToString();
    }
}
