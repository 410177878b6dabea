using System.Text;

namespace SpecializedInference.Benchmarks.Report;

/// <summary>A markdown table: a header row, then rows of cells (pipes in cells are escaped).</summary>
public sealed class MarkdownTable
{
    private readonly string[] _header;
    private readonly List<string[]> _rows = new();

    public MarkdownTable(params string[] header) => _header = header;

    public int Count => _rows.Count;

    public MarkdownTable Row(params string[] cells)
    {
        if (cells.Length != _header.Length)
            throw new ArgumentException($"row has {cells.Length} cells, the table {_header.Length} columns");
        _rows.Add(cells);
        return this;
    }

    public void WriteTo(StringBuilder sb)
    {
        static string Escape(string s) => s.Replace("|", "\\|");
        sb.Append("| ").AppendJoin(" | ", _header.Select(Escape)).AppendLine(" |");
        sb.Append('|').AppendJoin("|", _header.Select(_ => "---")).AppendLine("|");
        foreach (var row in _rows)
            sb.Append("| ").AppendJoin(" | ", row.Select(Escape)).AppendLine(" |");
        sb.AppendLine();
    }
}
