using System.Buffers.Binary;
using System.Text;
using SpecializedInference.Model;
using SpecializedInference.Model.Safetensors;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// Safetensors parsing and checkpoint validation: good files load; truncated, hostile and mismatched files are
/// rejected with a message naming the file, the tensor and what was expected. Corrupt files are built in a
/// temp folder from a valid tiny checkpoint.
/// </summary>
public sealed class CheckpointTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("si-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A valid tiny config: 1 layer, hidden 16, 2 heads of 8, 1 kv head, vocab 12.</summary>
    private static LlamaConfig Tiny(bool tie = false) => new(16, 2, 1, 8, 1, 24, 12, 1e-5, 64, 10000, RopeScaling.Default.Instance, tie, 1, new[] { 2 });

    private string WriteValid(SafetensorsDtype dtype = SafetensorsDtype.F32, bool tie = false)
    {
        RandomCheckpoint.Write(_dir, Tiny(tie), dtype, seed: 3);
        return Path.Combine(_dir, SafetensorsCheckpoint.SingleFileName);
    }

    private static byte[] RawFile(string headerJson, int dataBytes)
    {
        var header = Encoding.UTF8.GetBytes(headerJson);
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    private CheckpointException OpenFails(byte[] contents)
    {
        var path = Path.Combine(_dir, "bad.safetensors");
        File.WriteAllBytes(path, contents);
        var e = Assert.Throws<CheckpointException>(() => SafetensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        return e;
    }

    [Theory]
    [InlineData(SafetensorsDtype.F32)]
    [InlineData(SafetensorsDtype.F16)]
    [InlineData(SafetensorsDtype.BF16)]
    public void RandomCheckpointRoundTripsAndValidates(SafetensorsDtype dtype)
    {
        WriteValid(dtype);
        using var checkpoint = LlamaCheckpoint.Open(_dir);
        Assert.Equal(Tiny().HiddenSize, checkpoint.Config.HiddenSize);
        Assert.Equal(new[] { 2 }, checkpoint.EosTokenIds);
        var t = checkpoint.Tensor("model.norm.weight");
        Assert.Equal(dtype, t.Dtype);
        var values = new float[16];
        checkpoint.Weights.ReadFloat32(t, 0, values);
        Assert.All(values, v => Assert.InRange(v, 0.89f, 1.11f)); // norms are 1 ± 0.1
    }

    /// <summary>generation_config.json's EOS ids win over config.json's (as transformers' generate takes them); without it,
    /// or when it names none, config.json's.</summary>
    [Fact]
    public void GenerationConfigEosIdsOverrideTheConfigs()
    {
        WriteValid();
        var generation = Path.Combine(_dir, "generation_config.json");
        File.WriteAllText(generation, """{ "eos_token_id": [5, 7] }""");
        using (var checkpoint = LlamaCheckpoint.Open(_dir))
        {
            Assert.Equal(new[] { 2 }, checkpoint.Config.EosTokenIds);
            Assert.Equal(new[] { 5, 7 }, checkpoint.EosTokenIds);
        }
        File.WriteAllText(generation, """{ "do_sample": false }""");
        using (var checkpoint = LlamaCheckpoint.Open(_dir))
            Assert.Equal(new[] { 2 }, checkpoint.EosTokenIds);
        File.Delete(generation);
        using (var checkpoint = LlamaCheckpoint.Open(_dir))
            Assert.Equal(new[] { 2 }, checkpoint.EosTokenIds);
    }

    [Fact]
    public void ReadsAllThreeFloatDtypesExactly()
    {
        var path = Path.Combine(_dir, "dtypes.safetensors");
        float[] values = { 1f, -2.5f, 0.333251953125f, 65504f, 1.5e-5f, 0f };
        SafetensorsWriter.WriteFile(path, new[]
        {
            ("f32", SafetensorsDtype.F32, new long[] { 6 }, values),
            ("f16", SafetensorsDtype.F16, new long[] { 6 }, values),
            ("bf16", SafetensorsDtype.BF16, new long[] { 2, 3 }, values),
        });
        using var c = SafetensorsCheckpoint.OpenFile(path);
        foreach (var (name, expected) in new[]
                 {
                     ("f32", values),
                     ("f16", values.Select(v => (float)(Half)v).ToArray()),
                     ("bf16", values.Select(v => BitConverter.UInt32BitsToSingle((uint)SafetensorsWriter.ToBFloat16(v) << 16)).ToArray()),
                 })
        {
            Assert.True(c.TryGet(name, out var t));
            var f32 = new float[6];
            c.ReadFloat32(t, 0, f32);
            Assert.Equal(expected, f32);
            var f16 = new Half[6];
            c.ReadFloat16(t, 0, f16);
            Assert.Equal(expected.Select(v => (Half)v), f16);
        }
    }

    [Fact]
    public void TruncatedFileIsRejected()
    {
        var path = WriteValid();
        var bytes = File.ReadAllBytes(path);
        var e = OpenFails(bytes[..(bytes.Length - 100)]);
        Assert.Contains("run past the end of the data", e.Message);
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void HeaderLengthPastTheEndIsRejected()
    {
        var bytes = RawFile("{}", 0);
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, ulong.MaxValue - 3);
        var e = OpenFails(bytes);
        Assert.Contains("header length", e.Message);
        Assert.Contains("runs past the end of the file", e.Message);
    }

    [Fact]
    public void FileShorterThanTheLengthPrefixIsRejected()
    {
        var e = OpenFails(new byte[] { 1, 2, 3 });
        Assert.Contains("3 bytes", e.Message);
    }

    [Fact]
    public void OverlappingOffsetsAreRejected()
    {
        var e = OpenFails(RawFile(
            """{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}""", 24));
        Assert.Contains("'a'", e.Message);
        Assert.Contains("'b'", e.Message);
        Assert.Contains("overlap", e.Message);
    }

    [Fact]
    public void UnknownDtypeIsRejected()
    {
        var e = OpenFails(RawFile("""{"w":{"dtype":"Q4_K","shape":[4],"data_offsets":[0,16]}}""", 16));
        Assert.Contains("tensor 'w'", e.Message);
        Assert.Contains("unknown dtype 'Q4_K'", e.Message);
    }

    [Fact]
    public void DataSizeNotMatchingTheShapeIsRejected()
    {
        var e = OpenFails(RawFile("""{"w":{"dtype":"F16","shape":[3,4],"data_offsets":[0,16]}}""", 16));
        Assert.Contains("tensor 'w'", e.Message);
        Assert.Contains("hold 16 bytes, but shape [3, 4] of F16 needs 24", e.Message);
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("[1, 2, 3]")]
    [InlineData("""{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}""")]
    [InlineData("""{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}""")]
    [InlineData("""{"w":{"dtype":"F32","shape":[1]}}""")]
    public void HostileHeadersAreRejected(string header)
    {
        OpenFails(RawFile(header, 8));
    }

    [Fact]
    public void WrongShapeIsRejectedWithExpectedAndFound()
    {
        WriteValid();
        // Claim a larger intermediate size than the weights have.
        var configPath = Path.Combine(_dir, "config.json");
        File.WriteAllText(configPath, File.ReadAllText(configPath).Replace("\"intermediate_size\": 24", "\"intermediate_size\": 32"));
        var e = Assert.Throws<CheckpointException>(() => LlamaCheckpoint.Open(_dir));
        Assert.Contains("model.safetensors", e.Message);
        Assert.Contains("tensor 'model.layers.0.mlp.gate_proj.weight' has shape [24, 16]", e.Message);
        Assert.Contains("implies [32, 16] (intermediate_size, hidden_size)", e.Message);
    }

    [Fact]
    public void MissingTensorIsRejected()
    {
        WriteValid();
        var path = Path.Combine(_dir, SafetensorsCheckpoint.SingleFileName);
        // Rewrite the file without one tensor.
        using (var c = SafetensorsCheckpoint.OpenFile(path))
        {
            var kept = c.Tensors.Where(t => t.Name != "model.layers.0.self_attn.v_proj.weight").ToList();
            var data = kept.Select(t =>
            {
                var v = new float[t.ElementCount];
                c.ReadFloat32(t, 0, v);
                return (t.Name, t.Dtype, t.Shape, v);
            }).ToList();
            c.Dispose();
            SafetensorsWriter.WriteFile(path + ".new", data);
        }

        File.Move(path + ".new", path, overwrite: true);
        var e = Assert.Throws<CheckpointException>(() => LlamaCheckpoint.Open(_dir));
        Assert.Contains("tensor 'model.layers.0.self_attn.v_proj.weight' is missing", e.Message);
        Assert.Contains("implies shape [8, 16]", e.Message);
    }

    [Fact]
    public void NonFloatWeightIsRejected()
    {
        var c = Tiny();
        var tensors = LlamaCheckpoint.ExpectedTensors(c).Select(t =>
            (t.Name, t.Name == "model.norm.weight" ? SafetensorsDtype.I32 : SafetensorsDtype.F32, t.Shape, new float[t.Shape.Aggregate(1L, (a, b) => a * b)])).ToList();
        File.WriteAllText(Path.Combine(_dir, "config.json"), RandomCheckpoint.ToHuggingFaceJson(c));
        var path = Path.Combine(_dir, SafetensorsCheckpoint.SingleFileName);
        using (var w = new SafetensorsWriter(path, tensors.Select(t => new SafetensorsWriter.Declaration(t.Name, t.Item2, t.Shape)).ToList()))
            foreach (var t in tensors)
                w.WriteData(new byte[t.Item4.Length * t.Item2.SizeInBytes()]);
        var e = Assert.Throws<CheckpointException>(() => LlamaCheckpoint.Open(_dir));
        Assert.Contains("tensor 'model.norm.weight' has dtype I32; expected F32, F16 or BF16", e.Message);
    }

    [Fact]
    public void TiedEmbeddingsNeedNoLmHead()
    {
        WriteValid(tie: true);
        using var checkpoint = LlamaCheckpoint.Open(_dir);
        Assert.False(checkpoint.Weights.TryGet("lm_head.weight", out _));
        Assert.Equal("model.embed_tokens.weight", checkpoint.Tensor("lm_head.weight").Name);
    }

    [Fact]
    public void ShardedCheckpointLoadsThroughItsIndex()
    {
        var single = WriteValid();
        List<(string Name, SafetensorsDtype Dtype, long[] Shape, float[] Values)> all;
        using (var c = SafetensorsCheckpoint.OpenFile(single))
        {
            all = c.Tensors.Select(t =>
            {
                var v = new float[t.ElementCount];
                c.ReadFloat32(t, 0, v);
                return (t.Name, t.Dtype, t.Shape, v);
            }).ToList();
            var first = all.Where((_, i) => i % 2 == 0).ToList();
            var second = all.Where((_, i) => i % 2 == 1).ToList();
            SafetensorsWriter.WriteFile(Path.Combine(_dir, "model-00001-of-00002.safetensors"), first);
            SafetensorsWriter.WriteFile(Path.Combine(_dir, "model-00002-of-00002.safetensors"), second);
            var map = string.Join(",", first.Select(t => $"\"{t.Name}\": \"model-00001-of-00002.safetensors\"")
                .Concat(second.Select(t => $"\"{t.Name}\": \"model-00002-of-00002.safetensors\"")));
            File.WriteAllText(Path.Combine(_dir, SafetensorsCheckpoint.IndexFileName), $"{{\"metadata\": {{}}, \"weight_map\": {{{map}}}}}");
        }

        File.Delete(single);
        using (var checkpoint = LlamaCheckpoint.Open(_dir))
        {
            Assert.Equal(2, checkpoint.Weights.Files.Count);
            // Every tensor comes from the shard the index names, with the values the single file held.
            foreach (var (name, _, _, expected) in all)
            {
                var t = checkpoint.Tensor(name);
                Assert.Equal(all.FindIndex(a => a.Name == name) % 2 == 0 ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors",
                    Path.GetFileName(t.File));
                var values = new float[t.ElementCount];
                checkpoint.Weights.ReadFloat32(t, 0, values);
                Assert.Equal(expected, values);
            }
        }

        // An index that sends a tensor to the wrong shard, or outside the folder, is rejected.
        var indexPath = Path.Combine(_dir, SafetensorsCheckpoint.IndexFileName);
        var index = File.ReadAllText(indexPath);
        const string inFirst = "\"model.norm.weight\": \"model-00001-of-00002.safetensors\"";
        const string inSecond = "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"";
        File.WriteAllText(indexPath, index.Contains(inFirst) ? index.Replace(inFirst, inSecond) : index.Replace(inSecond, inFirst));
        var wrong = Assert.Throws<CheckpointException>(() => LlamaCheckpoint.Open(_dir));
        Assert.Contains("model.norm.weight", wrong.Message);
        File.WriteAllText(indexPath, index.Replace("model-00002-of-00002.safetensors", "../escape.safetensors"));
        var escape = Assert.Throws<CheckpointException>(() => LlamaCheckpoint.Open(_dir));
        Assert.Contains("is not a file name in the checkpoint folder", escape.Message);
    }

    [Fact]
    public void FolderWithoutWeightsIsRejected()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), RandomCheckpoint.ToHuggingFaceJson(Tiny()));
        var e = Assert.Throws<CheckpointException>(() => LlamaCheckpoint.Open(_dir));
        Assert.Contains("no model.safetensors or model.safetensors.index.json", e.Message);
    }
}
