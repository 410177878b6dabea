using System.Text.Json;
using SpecializedInference.Cli.Commands;
using SpecializedInference.Tests.Model;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Cli;

/// <summary><c>si generate --prompts-file</c>: many requests at once through the engine, JSON lines out.</summary>
[Collection("Console")]
[CiSeconds(10)]
public sealed class BatchGenerationCliTests
{
    private static (int Code, string Out, string Err) Run(params string[] args) => SpecializedInference.Tests.Model.CliTests.Run(args);

    [Fact]
    public void Three_requests_from_a_prompts_file_give_the_reference_greedy_tokens_and_stats()
    {
        var dir = TestPaths.HfCase("gqa-tiny");
        var prompts = ReferenceData.Load(dir);
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(file, prompts.Select((p, i) => JsonSerializer.Serialize(i == 1
                ? new Dictionary<string, object> { ["id"] = "second", ["prompt_ids"] = p.Prompt, ["max_new_tokens"] = 16, ["ignore_eos"] = true, ["greedy"] = true, ["logprobs"] = 2 }
                : new Dictionary<string, object> { ["prompt_ids"] = p.Prompt, ["max_new_tokens"] = 16, ["ignore_eos"] = true })));
            var (code, stdout, stderr) = Run("generate", "--model", dir, "--prompts-file", file, "--json", "--device", "cpu",
                "--weight-dtype", "f32", "--kv-dtype", "f32", "--max-batch-size", "4", "--kv-memory", "400000");
            Assert.True(code == 0, stderr + stdout);
            var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
            Assert.Equal(4, lines.Length);
            for (int i = 0; i < 3; i++)
            {
                Assert.Equal(prompts[i].Greedy, lines[i].GetProperty("tokens").EnumerateArray().Select(e => e.GetInt32()).ToArray());
                Assert.Equal("length", lines[i].GetProperty("finish_reason").GetString());
            }
            // The second line asked for log-probabilities: each token's, against Hugging Face's float64 logits of its step.
            Assert.False(lines[0].TryGetProperty("logprobs", out _));
            var logprobs = lines[1].GetProperty("logprobs").EnumerateArray().ToArray();
            Assert.Equal(16, logprobs.Length);
            for (int k = 0; k < 16; k++)
            {
                var row = prompts[1].StepLogits[k];
                double max = row.Max(), logSum = max + Math.Log(row.Sum(x => Math.Exp(x - max)));
                Assert.Equal(prompts[1].Greedy[k], logprobs[k].GetProperty("token").GetInt32());
                Assert.True(Math.Abs(row[prompts[1].Greedy[k]] - logSum - logprobs[k].GetProperty("logprob").GetDouble()) <= 2e-4 * Math.Max(1, row.Max(Math.Abs)), $"step {k}");
                Assert.Equal(2, logprobs[k].GetProperty("top").GetArrayLength());
            }
            Assert.Equal(1, lines[0].GetProperty("id").GetInt32());
            Assert.Equal("second", lines[1].GetProperty("id").GetString());
            Assert.Equal(3, lines[2].GetProperty("id").GetInt32());
            var stats = lines[3].GetProperty("stats");
            Assert.Equal(48, stats.GetProperty("generated_tokens").GetInt32());
            Assert.True(stats.GetProperty("decode_tokens_per_s").GetDouble() > 0);
            Assert.True(stats.GetProperty("batch_size_histogram").GetProperty("3").GetInt32() > 0);
            // 400000 bytes / (2 layers × 2 (K and V) × 2 kv heads × 16 head_dim × 16 slots × 4 bytes) = 48 blocks.
            Assert.Equal(48, stats.GetProperty("kv_blocks").GetProperty("total").GetInt32());
            Assert.Equal(0, stats.GetProperty("kv_blocks").GetProperty("used").GetInt32());
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("{\"prompt_ids\":[1,2]}\n{\"prompt_ids\":[1,-3]}", ":2: \"prompt_ids\"[1] must be a non-negative integer")]
    [InlineData("{\"prompt_ids\":[1,2]}\nnot json", ":2: not valid JSON")]
    [InlineData("{\"prompt_ids\":[1],\"max_new_tokens\":0}", ":1: \"max_new_tokens\" must be at least 1")]
    [InlineData("{\"prompt_ids\":[1],\"prompt\":\"hi\"}", ":1: give exactly one of")]
    [InlineData("{\"prompt_ids\":[1],\"topk\":3}", ":1: unknown field \"topk\"")]
    [InlineData("\n\n{\"prompt_ids\":[1],\"top_p\":\"x\"}", ":3: \"top_p\" must be a number")]
    [InlineData("{\"prompt_ids\":[1000]}", ":1: token id 1000 is outside the vocabulary")]
    [InlineData("{\"prompt_ids\":[1],\"repetition_penalty\":0}", ":1: \"repetition_penalty\" must be a finite number above 0 (1 = off), got 0")]
    [InlineData("{\"prompt_ids\":[1]}\n{\"prompt_ids\":[1],\"presence_penalty\":3}", ":2: \"presence_penalty\" must be between -2 and 2 (0 = off), got 3")]
    [InlineData("{\"prompt_ids\":[1],\"logprobs\":21}", ":1: \"logprobs\" must be between 0 and 20, got 21")]
    [InlineData("{\"prompt_ids\":[1],\"max_new_tokens\":4,\"min_tokens\":5}", ":1: \"min_tokens\" must be between 0 and max_new_tokens (4), got 5")]
    [InlineData("{\"prompt_ids\":[1],\"min_p\":2}", ":1: \"min_p\" must be in [0, 1], got 2")]
    public void A_malformed_line_rejects_the_file_naming_file_and_line(string content, string expected)
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, content);
            var (code, stdout, stderr) = Run("generate", "--model", TestPaths.HfCase("gqa-tiny"), "--prompts-file", file, "--device", "cpu");
            Assert.Equal(2, code);
            Assert.Contains(file + expected, stderr);
            Assert.Equal("", stdout);
        }
        finally
        {
            File.Delete(file);
        }
    }
    /// <summary>A line may give <c>"messages"</c> instead of a prompt: the checkpoint's chat template (here Llama 2's, beside
    /// the bundled model's files) renders them, its <c>&lt;s&gt;</c> encoded as BOS, as the server's chat endpoint does. A
    /// conversation the template refuses stops the file before anything runs, naming the line and the template's message.</summary>
    [Fact]
    public void Chat_lines_are_rendered_by_the_checkpoints_template()
    {
        using var folder = new SpecializedInference.Tests.Text.ChatCheckpointFolder("llama-2-chat.jinja");
        string dir = folder.Path;
        string file = Path.Combine(dir, "requests.jsonl");
        File.WriteAllLines(file,
        [
            """{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Return the"}], "max_new_tokens": 2, "ignore_eos": true}""",
            """{"prompt": "Return the", "max_new_tokens": 2, "ignore_eos": true}""",
        ]);
        var (code, stdout, stderr) = Run("generate", "--model", dir, "--prompts-file", file, "--json", "--device", "cpu");
        Assert.True(code == 0, stderr + stdout);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToArray();
        var tokenizer = SpecializedInference.Tokenization.TextTokenizer.TryLoad(TestPaths.Docstrings)!;
        int[] chat = [tokenizer.BosId, .. tokenizer.Encode("[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nReturn the [/INST]", addBos: false)];
        Assert.Equal(chat.Length, lines[0].GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(tokenizer.Encode("Return the").Length, lines[1].GetProperty("prompt_tokens").GetInt32());

        File.WriteAllLines(file, ["""{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}"""]);
        (code, _, stderr) = Run("generate", "--model", dir, "--prompts-file", file, "--json", "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains($"{file}:1: the chat template cannot format these messages: Conversation roles must alternate user/assistant/user/assistant/...", stderr);
    }
}
