using System.Text.Json;

namespace SpecializedInference.Tests.Model;

/// <summary>One prompt of a reference.json: float64 logits from Hugging Face transformers.</summary>
public sealed record ReferencePrompt(int[] Prompt, double[][]? PromptLogits, int[] Greedy, double[][] StepLogits, string? PromptText, string? GreedyText);

/// <summary>Reads <c>reference.json</c> (tests/reference/hf-llama/*, models/docstrings-bf16).</summary>
public static class ReferenceData
{
    private static readonly Dictionary<string, IReadOnlyList<ReferencePrompt>> Cache = new();

    public static IReadOnlyList<ReferencePrompt> Load(string directory)
    {
        lock (Cache)
        {
            if (Cache.TryGetValue(directory, out var cached)) return cached;
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "reference.json")));
            static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();
            static double[][] Rows(JsonElement e) => e.EnumerateArray().Select(r => r.EnumerateArray().Select(x => x.GetDouble()).ToArray()).ToArray();
            var prompts = doc.RootElement.GetProperty("prompts").EnumerateArray().Select(p => new ReferencePrompt(
                Ints(p.GetProperty("prompt")),
                p.TryGetProperty("prompt_logits", out var pl) ? Rows(pl) : null,
                Ints(p.GetProperty("greedy")),
                Rows(p.GetProperty("step_logits")),
                p.TryGetProperty("prompt_text", out var pt) ? pt.GetString() : null,
                p.TryGetProperty("greedy_text", out var gt) ? gt.GetString() : null)).ToArray();
            Cache[directory] = prompts;
            return prompts;
        }
    }

    /// <summary>
    /// Asserts |expected − actual| ≤ tolerance × max(1, max |expected|) over a logits row, and reports the worst
    /// element otherwise.
    /// </summary>
    public static void AssertRowClose(double[] expected, float[] actual, double tolerance, string what)
    {
        Assert.True(expected.Length == actual.Length, $"{what}: {actual.Length} logits, expected {expected.Length}");
        double scale = Math.Max(1, expected.Max(Math.Abs));
        int worst = 0;
        double worstErr = -1;
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(expected[i] - actual[i]);
            if (!(err <= worstErr)) { worstErr = err; worst = i; }
        }

        Assert.True(worstErr <= tolerance * scale,
            $"{what}: logit {worst} is {actual[worst]}, expected {expected[worst]} (error {worstErr:G3} > {tolerance * scale:G3})");
    }
}
