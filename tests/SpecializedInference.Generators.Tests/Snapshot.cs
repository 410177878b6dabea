using System.Reflection;
using System.Runtime.CompilerServices;

namespace SpecializedInference.Generators.Tests;

/// <summary>
/// Snapshot assertions following Verify's conventions (Verify itself cannot be restored here): the
/// accepted text lives in <c>Snapshots/{Class}.{Method}#{hint}.verified.cs</c> beside the test; a mismatch
/// writes <c>*.received.cs</c> and fails. Set <c>SI_ACCEPT_SNAPSHOTS=1</c> to accept the received text.
/// </summary>
public static class Snapshot
{
    public const string AcceptVariable = "SI_ACCEPT_SNAPSHOTS";

    public static void Verify(string actual, string className, string hint, string extension = "cs",
        [CallerMemberName] string method = "", [CallerFilePath] string sourceFile = "")
    {
        actual = actual.Replace("\r\n", "\n");
        var dir = Path.Combine(Path.GetDirectoryName(sourceFile)!, "Snapshots");
        Directory.CreateDirectory(dir);
        string stem = $"{className}.{method}#{Sanitize(hint)}";
        string verified = Path.Combine(dir, $"{stem}.verified.{extension}");
        string received = Path.Combine(dir, $"{stem}.received.{extension}");

        if (Environment.GetEnvironmentVariable(AcceptVariable) == "1")
        {
            File.WriteAllText(verified, actual);
            File.Delete(received);
            return;
        }

        string? expected = File.Exists(verified) ? File.ReadAllText(verified).Replace("\r\n", "\n") : null;
        if (expected == actual)
        {
            File.Delete(received);
            return;
        }

        File.WriteAllText(received, actual);
        Assert.Fail(expected is null
            ? $"No accepted snapshot {Path.GetFileName(verified)}; wrote {Path.GetFileName(received)}. Review it, then run with {AcceptVariable}=1 to accept."
            : $"Snapshot {Path.GetFileName(verified)} differs at {FirstDifference(expected, actual)}; wrote {Path.GetFileName(received)}. Run with {AcceptVariable}=1 to accept.");
    }

    private static string Sanitize(string hint) => string.Concat(hint.Select(c => Path.GetInvalidFileNameChars().Contains(c) ? '_' : c));

    private static string FirstDifference(string expected, string actual)
    {
        var e = expected.Split('\n');
        var a = actual.Split('\n');
        for (int i = 0; i < Math.Max(e.Length, a.Length); i++)
        {
            string el = i < e.Length ? e[i] : "<end of file>";
            string al = i < a.Length ? a[i] : "<end of file>";
            if (el != al) return $"line {i + 1}:\n  expected: {el}\n  received: {al}";
        }
        return "(identical lines, different endings)";
    }
}

/// <summary>Where the repository is, recorded at build time, so tests read the real configs.</summary>
public static class Repository
{
    public static string Root { get; } = typeof(Repository).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepositoryRoot").Value!;

    public static string Configs => Path.Combine(Root, "configs");
}
