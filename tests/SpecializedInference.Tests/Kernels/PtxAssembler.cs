using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;

namespace SpecializedInference.Tests.Kernels;

/// <summary>What ptxas reports for one kernel: registers per thread, spilled bytes and static shared memory; and its
/// SASS instructions, counted by cuobjdump when asked for and it stands beside ptxas (else null).</summary>
public sealed record KernelResources(int Registers, int SpillStoreBytes, int SpillLoadBytes, int SharedBytes, int? SassInstructions);

/// <summary>
/// Assembles ILGPU's PTX for sm_90 (H100/H200) with NVIDIA's ptxas, on a machine without a GPU or driver. ptxas
/// comes from <c>benchmarks/ptx/install-ptxas.sh</c> (<c>.tools/cuda/bin</c>), <c>SI_PTXAS</c> or the PATH. It is
/// CUDA 11.8's, which reads PTX ISA up to 7.8, while ILGPU 1.5.3 writes 8.0 headers for code that uses nothing
/// newer, so the header is rewritten to 7.8; the driver's own ptxas (what runs on the GPU) may allocate a few
/// registers differently.
/// </summary>
public static class PtxAssembler
{
    public static string? Find()
    {
        if (Environment.GetEnvironmentVariable("SI_PTXAS") is { Length: > 0 } explicitPath) return explicitPath;
        var root = typeof(PtxAssembler).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "RepositoryRoot")?.Value;
        if (root is not null && File.Exists(Path.Combine(root, ".tools", "cuda", "bin", "ptxas"))) return Path.Combine(root, ".tools", "cuda", "bin", "ptxas");
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "ptxas"))) return Path.Combine(dir, "ptxas");
        return null;
    }

    /// <param name="countSass">Disassemble the cubin to count its instructions: a quarter of a second a kernel, which
    /// only the resources table (<c>SI_PTX_DUMP</c>) reads, so the test run leaves it out.</param>
    public static KernelResources Assemble(string ptxas, string ptx, string kernel, bool countSass)
    {
        string dir = Directory.CreateTempSubdirectory("si-ptxas-").FullName;
        try
        {
            string input = Path.Combine(dir, "kernel.ptx");
            File.WriteAllText(input, Regex.Replace(ptx, @"^\.version \d+\.\d+", ".version 7.8", RegexOptions.Multiline));
            string cubin = Path.Combine(dir, "kernel.cubin");
            string report = Run(ptxas, ["-v", "--gpu-name", "sm_90", input, "-o", cubin], kernel);
            int Number(string pattern) => Regex.Match(report, pattern) is { Success: true } m ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
            var used = Regex.Match(report, @"Used (\d+) registers");
            if (!used.Success) throw new InvalidOperationException($"ptxas printed no register count for {kernel}:\n{report}");
            return new KernelResources(
                int.Parse(used.Groups[1].Value, CultureInfo.InvariantCulture),
                Number(@"(\d+) bytes spill stores"),
                Number(@"(\d+) bytes spill loads"),
                Number(@"(\d+) bytes smem"),
                countSass ? CountSass(ptxas, cubin, kernel) : null);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static int? CountSass(string ptxas, string cubin, string kernel)
    {
        string cuobjdump = Path.Combine(Path.GetDirectoryName(ptxas)!, "cuobjdump");
        if (!File.Exists(cuobjdump)) return null;
        // One instruction per line that starts with its address comment, e.g. "        /*0070*/  LDC R1, c[0x0][0x28] ;".
        return Regex.Matches(Run(cuobjdump, ["-sass", cubin], kernel), @"^\s+/\*[0-9a-f]{4,}\*/", RegexOptions.Multiline).Count;
    }

    private static string Run(string tool, string[] arguments, string kernel)
    {
        var start = new ProcessStartInfo(tool, arguments) { RedirectStandardError = true, RedirectStandardOutput = true };
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {tool}");
        var stderr = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd() + stderr.Result;
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{Path.GetFileName(tool)} failed on {kernel}:\n{output}");
        return output;
    }
}
