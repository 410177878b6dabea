using Microsoft.CodeAnalysis;

namespace SpecializedInference.Generators.Tests;

/// <summary>Each bad config is a build error with its stable id at the exact JSON line and column.</summary>
public class DiagnosticTests
{
    private const string GoodModel =
        "\"hidden_size\": 128, \"num_attention_heads\": 8, \"num_key_value_heads\": 2, \"num_hidden_layers\": 2, \"intermediate_size\": 256, \"vocab_size\": 512";

    private static string GoodModelWithout(string field)
        => string.Join(", ", GoodModel.Split(", ").Where(part => !part.StartsWith($"\"{field}\"", StringComparison.Ordinal)));

    /// <summary>
    /// Runs one config whose expected diagnostic position is marked with <c>$$</c>, asserts there is exactly
    /// one diagnostic and that it starts at the mark, and returns it as "ID file(line,col): message".
    /// </summary>
    private static string Single(string markedJson, string path = "/repo/configs/bad.json")
    {
        int mark = markedJson.IndexOf("$$", StringComparison.Ordinal);
        Assert.True(mark >= 0, "the test JSON needs a $$ mark where the diagnostic is expected");
        string json = markedJson.Remove(mark, 2);
        var diagnostics = GeneratorHarness.Diagnostics((path, json));
        Assert.True(diagnostics.Length == 1, "expected one diagnostic, got:\n" + string.Join("\n", diagnostics.Select(GeneratorHarness.Format)));
        var d = diagnostics[0];
        Assert.Equal(DiagnosticSeverity.Error, d.Severity);
        var expected = Microsoft.CodeAnalysis.Text.SourceText.From(json).Lines.GetLinePosition(mark);
        Assert.Equal(expected, d.Location.GetLineSpan().StartLinePosition);
        Assert.Equal(path, d.Location.GetLineSpan().Path);
        return GeneratorHarness.Format(d);
    }

    [Fact]
    public void MalformedJson()
        => Assert.Equal("SI0001 bad.json(2,22): Config 'bad.json' is not valid JSON: expected ',' or '}' in object",
            Single("{\n  \"hidden_size\": 128 $$\"num_attention_heads\": 8\n}"));

    [Fact]
    public void TruncatedJson()
        => Assert.StartsWith("SI0001 bad.json(1,17): Config 'bad.json' is not valid JSON: unexpected end of file",
            Single("{\"hidden_size\": $$"));

    [Fact]
    public void MissingField()
        => Assert.Equal("SI0002 bad.json(1,1): Config 'bad.json': required field 'vocab_size' is missing",
            Single("$${\"hidden_size\": 128, \"num_attention_heads\": 8, \"num_hidden_layers\": 2, \"intermediate_size\": 256}"));

    [Fact]
    public void WrongType()
        => Assert.Equal("SI0003 bad.json(2,18): Config 'bad.json': field 'hidden_size' must be a positive integer, found a string",
            Single("{\n  \"hidden_size\": $$\"128\", \"num_attention_heads\": 8, \"num_hidden_layers\": 2, \"intermediate_size\": 256, \"vocab_size\": 512\n}"));

    [Fact]
    public void FractionalSize()
        => Assert.EndsWith("Config 'bad.json': field 'intermediate_size' must be a positive integer, found the number 256.5",
            Single("{\"hidden_size\": 128, \"num_attention_heads\": 8, \"num_hidden_layers\": 2, \"intermediate_size\": $$256.5, \"vocab_size\": 512}"));

    [Fact]
    public void HeadsNotMultipleOfKvHeads()
        => Assert.Equal("SI0004 bad.json(3,26): Config 'bad.json': num_attention_heads (8) must be a multiple of num_key_value_heads (3)",
            Single("{\n  \"hidden_size\": 128, \"num_attention_heads\": 8,\n  \"num_key_value_heads\": $$3,\n  \"num_hidden_layers\": 2, \"intermediate_size\": 256, \"vocab_size\": 512\n}"));

    [Fact]
    public void NonPositiveSize()
        => Assert.StartsWith("SI0005", Single("{" + GoodModelWithout("vocab_size") + ", \"vocab_size\": $$0}"));

    [Fact]
    public void NegativeSize()
        => Assert.EndsWith("field 'num_hidden_layers' must be a positive integer, found -2", Single("{" + GoodModelWithout("num_hidden_layers") + ", \"num_hidden_layers\": $$-2}"));

    [Fact]
    public void HeadDimNotSpecializable()
        => Assert.EndsWith("head_dim 12 cannot be specialized: it must be a multiple of 8 (kernels move K/V in 16-byte chunks of 8 halves)",
            Single("{" + GoodModel + ", \"head_dim\": $$12}"));

    [Fact]
    public void TilesOverSharedMemoryBudget()
    {
        string json = "{\"name\": \"Big\", \"model\": {\"hidden_size\": 2048, \"num_attention_heads\": 8, \"num_key_value_heads\": 8, \"head_dim\": 256,"
            + " \"num_hidden_layers\": 2, \"intermediate_size\": 256, \"vocab_size\": 512},\n \"engine\": {\"prefill_tile_kv\": $$32}}";
        Assert.StartsWith("SI0007 bad.json(2,32): Config 'bad.json': prefill K/V tiles of 32 keys at head_dim 256 need 71184 bytes of shared memory", Single(json));
    }

    [Fact]
    public void DefaultTileShrinksToFitSharedMemory()
    {
        string json = "{\"name\": \"Big\", \"model\": {\"hidden_size\": 2048, \"num_attention_heads\": 8, \"num_key_value_heads\": 8, \"head_dim\": 256,"
            + " \"num_hidden_layers\": 2, \"intermediate_size\": 256, \"vocab_size\": 512}}";
        var result = GeneratorHarness.Run(("/repo/configs/big.json", json));
        Assert.Empty(result.Diagnostics);
        Assert.Contains("public const int PrefillTileKv = 8;", result.GeneratedSources.Single(s => s.HintName == "Big.Constants.g.cs").SourceText.ToString());
    }

    [Fact]
    public void BlockSizeNotPowerOfTwo()
        => Assert.Contains("kv_block_size 24 must be a power of two",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"kv_dtype\": \"f16\", \"kv_block_size\": $$24 }}"));

    [Fact]
    public void DecodeWarpsNotAllowed()
        => Assert.EndsWith("decode_warps 3 must be 1, 2, 4 or 8",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"decode_warps\": $$3 }}"));

    [Fact]
    public void DecodeWarpsThatCannotShareKeysEvenly()
        // head_dim 16 is 2 units of 8 dims; 256 threads over partitions of 64 keys would put 4 threads on each key.
        => Assert.Contains("decode_warps 8 gives 256 threads for partitions of 64 keys: the threads sharing a key must split its 2 8-dim units evenly",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"decode_partition_size\": 64, \"decode_warps\": $$8 }}"));

    [Fact]
    public void LargeBatchDecodeNeedsBothFields()
        => Assert.EndsWith("large_batch_decode_partition_size needs large_batch_decode_warps too: the large-batch decode takes both or neither",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"large_batch_decode_partition_size\": $$256 }}"));

    [Fact]
    public void LargeBatchDecodeInWholeTensorCoreTiles()
        => Assert.EndsWith("large_batch_decode_partition_size 96 must be a multiple of 64 (16-key tensor-core tiles for each of the 4 warps)",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"large_batch_decode_partition_size\": $$96, \"large_batch_decode_warps\": 4 }}"));

    [Fact]
    public void LargeBatchDecodeNeedsATensorCoreShape()
        // head_dim 16: the tensor-core decode needs a multiple of 64.
        => Assert.Contains("the large-batch decode runs on tensor cores, which need 2 to 8 query heads per K/V head (this model has 4), head_dim a multiple of 64 (it is 16)",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"large_batch_decode_partition_size\": $$256, \"large_batch_decode_warps\": 4 }}"));

    [Fact]
    public void NameNotAnIdentifier()
        => Assert.Equal("SI0008 bad.json(1,10): Config 'bad.json': name \"llama-3\" is not a C# identifier (letters, digits and '_', not starting with a digit)",
            Single("{\"name\": $$\"llama-3\", \"model\": {" + GoodModel + "}}"));

    [Fact]
    public void DuplicateName()
    {
        var diagnostics = GeneratorHarness.Diagnostics(
            ("/repo/configs/a.json", "{\"name\": \"Same\", \"model\": {" + GoodModel + "}}"),
            ("/repo/configs/b.json", "{\n  \"name\": \"Same\", \"model\": {" + GoodModel + "}}"));
        var d = Assert.Single(diagnostics);
        Assert.Equal("SI0009 b.json(2,11): Config 'b.json': engine name \"Same\" is already used by config 'a.json'", GeneratorHarness.Format(d));
    }

    [Fact]
    public void UnknownKvDtype()
        => Assert.EndsWith("field 'kv_dtype' must be one of f16|f32, found \"bf16\"",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { \"kv_dtype\": $$\"bf16\" }}"));

    [Fact]
    public void MisspelledEngineSetting()
        => Assert.StartsWith("SI0011 bad.json(2,15): Config 'bad.json': unknown engine setting 'kv_blocksize'",
            Single("{\"name\": \"A\", \"model\": {" + GoodModel + "},\n  \"engine\": { $$\"kv_blocksize\": 16 }}"));

    [Fact]
    public void UnsupportedArchitecture()
        => Assert.StartsWith("SI0013 bad.json(1,19): Config 'bad.json': architectures must include one of LlamaForCausalLM",
            Single("{\"architectures\": $$[\"GPT2LMHeadModel\"], " + GoodModel + "}"));

    [Fact]
    public void BadConfigDoesNotStopOtherConfigs()
    {
        var result = GeneratorHarness.Run(
            ("/repo/configs/bad.json", "{ nope"),
            ("/repo/configs/gqa-tiny.json", File.ReadAllText(Path.Combine(Repository.Configs, "gqa-tiny.json"))));
        Assert.Single(result.Diagnostics);
        Assert.Contains(result.GeneratedSources, s => s.HintName == "gqa_tiny.Constants.g.cs");
        Assert.Null(result.Exception);
    }

    [Fact]
    public void HuggingFaceConfigAcceptsBothRopeThetaForms()
    {
        string nested = "{" + GoodModel + ", \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"default\"}}";
        string flat = "{" + GoodModel + ", \"rope_theta\": 500000.0}";
        foreach (var json in new[] { nested, flat })
        {
            var result = GeneratorHarness.Run(("/repo/configs/my-model.json", json));
            Assert.Empty(result.Diagnostics);
            Assert.Contains("public const double RopeTheta = 500000.0d;", result.GeneratedSources.Single(s => s.HintName == "my_model.Constants.g.cs").SourceText.ToString());
        }
    }

    [Fact]
    public void DiagnosticsOfBadConfigsSnapshot()
    {
        var cases = new (string Name, string Json)[]
        {
            ("empty", ""),
            ("array-root", "[1, 2]"),
            ("everything-wrong", "{\"name\": \"X\", \"model\": {\"hidden_size\": -4, \"num_attention_heads\": true, \"num_hidden_layers\": 2, \"intermediate_size\": 256},"
                + " \"engine\": {\"kv_dtype\": 16, \"use_gqa\": \"yes\", \"attention_warps\": 3}}"),
        };
        var lines = cases.SelectMany(c => GeneratorHarness.Diagnostics(($"/repo/configs/{c.Name}.json", c.Json)).Select(GeneratorHarness.Format));
        Snapshot.Verify(string.Join("\n", lines) + "\n", nameof(DiagnosticTests), "bad-configs", "txt");
    }
}
