using System.Net.Http.Json;
using System.Text.Json;
using SpecializedInference.Engine;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Server;
using SpecializedInference.Tests.Model;
using SpecializedInference.Text;

namespace SpecializedInference.Tests.Server;

/// <summary>
/// The real stack once: the docstrings-bf16 checkpoint on the CPU accelerator, its SentencePiece tokenizer,
/// the engine and the HTTP server. A text prompt must produce Hugging Face's greedy tokens (reference.json)
/// and their text. A handful of tokens only: the CPU accelerator is slow.
/// </summary>
public sealed class RealModelServerTests(AcceleratorFixture fixture) : IClassFixture<AcceleratorFixture>
{
    [Fact]
    public async Task TextPromptGivesTheReferenceGreedyTokensAndText()
    {
        string dir = TestPaths.Docstrings;
        var reference = ReferenceData.Load(dir)[0];
        Assert.Equal("Return the", reference.PromptText);
        const int tokens = 6;

        var tokenizer = CheckpointTextTokenizer.TryLoad(dir)!;
        Assert.Equal(reference.Prompt, tokenizer.Encode(reference.PromptText!, tokenizer.AddBos));
        IReadOnlyList<int> eos;
        LlamaModelRunner runner;
        using (var checkpoint = LlamaCheckpoint.Open(dir))
        {
            eos = checkpoint.EosTokenIds;
            runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, ModelOptions.Float32 with { MaxSeqLen = 32, NumKvBlocks = 4 });
        }
        using var engine = new InferenceEngine(runner, new EngineOptions { MaxBatchSize = 2, MaxNumBatchedTokens = 32 }, EngineSamplers.Factory);
        await using var server = InferenceServer.Create(engine, new ServerOptions { Port = 0, ModelName = "docstrings", EosTokenIds = eos }, tokenizer);
        await server.StartAsync();
        using var http = new HttpClient { BaseAddress = server.BaseAddress, Timeout = TimeSpan.FromMinutes(5) };

        using var response = await http.PostAsJsonAsync("v1/completions", new { model = "docstrings", prompt = reference.PromptText, max_tokens = tokens });
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        var root = JsonDocument.Parse(body).RootElement;
        var choice = root.GetProperty("choices")[0];
        Assert.Equal(reference.Greedy[..tokens], ServerHarness.TokensOf(choice));
        string text = choice.GetProperty("text").GetString()!;
        // What the tokens add to the prompt's text: the reference's greedy text (decoded alone) with the space before
        // its first word, which a decoder drops at the start of a text.
        Assert.Equal(tokenizer.Decode([.. reference.Prompt, .. reference.Greedy[..tokens]])[tokenizer.Decode(reference.Prompt).Length..], text);
        Assert.Equal(" " + tokenizer.Decode(reference.Greedy[..tokens]), text);
        Assert.StartsWith(text[1..], reference.GreedyText);
        Assert.Equal(reference.Prompt.Length, root.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
        Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
    }
}
