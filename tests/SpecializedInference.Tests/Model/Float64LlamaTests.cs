using SpecializedInference.Kernels;
using SpecializedInference.Model;
using SpecializedInference.Model.Safetensors;
using SpecializedInference.Runtime;
using Xunit.Abstractions;
using SpecializedInference.Tests.Ordering;

namespace SpecializedInference.Tests.Model;

/// <summary>
/// Configurations the Hugging Face references do not cover (tied embeddings, llama3 rope scaling, rope_theta
/// 500000, group size 2) against an independent float64 Llama forward pass written here from the architecture,
/// on random checkpoints.
/// </summary>
[CiSeconds(5)]
public sealed class Float64LlamaTests(AcceleratorFixture fixture, ITestOutputHelper output) : IClassFixture<AcceleratorFixture>, IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("si-f64-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static LlamaConfig Config() => new(
        HiddenSize: 64, NumAttentionHeads: 4, NumKeyValueHeads: 2, HeadDim: 16, NumHiddenLayers: 2, IntermediateSize: 96,
        VocabSize: 80, RmsNormEps: 1e-5, MaxPositionEmbeddings: 4096, RopeTheta: 500000,
        RopeScaling: new RopeScaling.Llama3(Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 64),
        TieWordEmbeddings: true, BosTokenId: 1, EosTokenIds: new[] { 2 });

    /// <summary>The logits at every position of <paramref name="tokens"/>, in float64.</summary>
    internal static double[][] Reference(LlamaConfig c, SafetensorsCheckpoint w, int[] tokens)
    {
        double[] T(string name)
        {
            Assert.True(w.TryGet(name, out var t), name);
            var f = new float[t.ElementCount];
            w.ReadFloat32(t, 0, f);
            return f.Select(v => (double)v).ToArray();
        }

        double[] MatVec(double[] m, double[] v, int rows) // m [rows, v.Length]
        {
            var y = new double[rows];
            for (int r = 0; r < rows; r++)
                for (int k = 0; k < v.Length; k++) y[r] += m[r * v.Length + k] * v[k];
            return y;
        }

        double[] Norm(double[] v, double[] g)
        {
            double ms = v.Sum(a => a * a) / v.Length;
            return v.Select((a, i) => a / Math.Sqrt(ms + c.RmsNormEps) * g[i]).ToArray();
        }

        // Rotary frequencies, float64; Llama 3's scaling straight from Meta's apply_scaling.
        var inv = new double[c.HeadDim / 2];
        for (int i = 0; i < inv.Length; i++)
        {
            double f = Math.Pow(c.RopeTheta, -2.0 * i / c.HeadDim);
            if (c.RopeScaling is not RopeScaling.Llama3 l3)
            {
                inv[i] = f;
                continue;
            }
            double wavelen = 2 * Math.PI / f;
            double low = l3.OriginalMaxPositionEmbeddings / l3.LowFreqFactor, high = l3.OriginalMaxPositionEmbeddings / l3.HighFreqFactor;
            double smooth = (l3.OriginalMaxPositionEmbeddings / wavelen - l3.LowFreqFactor) / (l3.HighFreqFactor - l3.LowFreqFactor);
            inv[i] = wavelen < high ? f : wavelen > low ? f / l3.Factor : (1 - smooth) * f / l3.Factor + smooth * f;
        }

        double[] Rope(double[] v, int head, int pos)
        {
            int h = c.HeadDim / 2, b = head * c.HeadDim;
            var o = (double[])v.Clone();
            for (int i = 0; i < h; i++)
            {
                double cs = Math.Cos(pos * inv[i]), sn = Math.Sin(pos * inv[i]);
                o[b + i] = v[b + i] * cs - v[b + i + h] * sn;
                o[b + i + h] = v[b + i + h] * cs + v[b + i] * sn;
            }

            return o;
        }

        var embed = T("model.embed_tokens.weight");
        var x = tokens.Select(id => embed.Skip(id * c.HiddenSize).Take(c.HiddenSize).ToArray()).ToArray();
        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            var (wq, wk, wv, wo) = (T(p + "self_attn.q_proj.weight"), T(p + "self_attn.k_proj.weight"), T(p + "self_attn.v_proj.weight"), T(p + "self_attn.o_proj.weight"));
            var (g1, g2) = (T(p + "input_layernorm.weight"), T(p + "post_attention_layernorm.weight"));
            var (wg, wu, wd) = (T(p + "mlp.gate_proj.weight"), T(p + "mlp.up_proj.weight"), T(p + "mlp.down_proj.weight"));
            var q = new double[tokens.Length][];
            var k = new double[tokens.Length][];
            var v = new double[tokens.Length][];
            for (int t = 0; t < tokens.Length; t++)
            {
                var h = Norm(x[t], g1);
                q[t] = MatVec(wq, h, c.QueryDim);
                k[t] = MatVec(wk, h, c.KeyValueDim);
                v[t] = MatVec(wv, h, c.KeyValueDim);
                for (int hd = 0; hd < c.NumAttentionHeads; hd++) q[t] = Rope(q[t], hd, t);
                for (int hd = 0; hd < c.NumKeyValueHeads; hd++) k[t] = Rope(k[t], hd, t);
            }

            for (int t = 0; t < tokens.Length; t++)
            {
                var attn = new double[c.QueryDim];
                for (int hd = 0; hd < c.NumAttentionHeads; hd++)
                {
                    int kv = hd / c.GroupSize;
                    var s = new double[t + 1];
                    for (int j = 0; j <= t; j++)
                    {
                        for (int d = 0; d < c.HeadDim; d++) s[j] += q[t][hd * c.HeadDim + d] * k[j][kv * c.HeadDim + d];
                        s[j] /= Math.Sqrt(c.HeadDim);
                    }

                    double max = s.Max(), sum = s.Sum(a => Math.Exp(a - max));
                    for (int j = 0; j <= t; j++)
                        for (int d = 0; d < c.HeadDim; d++)
                            attn[hd * c.HeadDim + d] += Math.Exp(s[j] - max) / sum * v[j][kv * c.HeadDim + d];
                }

                var o = MatVec(wo, attn, c.HiddenSize);
                for (int i = 0; i < c.HiddenSize; i++) x[t][i] += o[i];
                var h2 = Norm(x[t], g2);
                var gate = MatVec(wg, h2, c.IntermediateSize);
                var up = MatVec(wu, h2, c.IntermediateSize);
                var act = gate.Select((g, i) => g / (1 + Math.Exp(-g)) * up[i]).ToArray();
                var down = MatVec(wd, act, c.HiddenSize);
                for (int i = 0; i < c.HiddenSize; i++) x[t][i] += down[i];
            }
        }

        var gf = T("model.norm.weight");
        var head = c.TieWordEmbeddings ? embed : T("lm_head.weight"); // tied: the LM head is the embedding
        return x.Select(row => MatVec(head, Norm(row, gf), c.VocabSize)).ToArray();
    }

    [Theory]
    [InlineData(WeightDtype.F32, KvDtype.F32, 1e-4)]
    [InlineData(WeightDtype.F16, KvDtype.F16, 3e-2)]
    public void TiedLlama3ScaledModelMatchesFloat64Forward(WeightDtype weights, KvDtype kv, double tolerance)
    {
        var c = Config();
        RandomCheckpoint.Write(_dir, c, SafetensorsDtype.F32, seed: 11, std: 0.25);
        using var checkpoint = LlamaCheckpoint.Open(_dir);
        Assert.False(checkpoint.Weights.TryGet("lm_head.weight", out _));
        // Positions past original_max_position_embeddings (64) exercise the scaled low frequencies.
        var tokens = Enumerable.Range(0, 70).Select(i => (i * 37 + 5) % c.VocabSize).ToArray();
        var expected = Reference(c, checkpoint.Weights, tokens);
        using var runner = new LlamaModelRunner(fixture.Accelerator, checkpoint, new ModelOptions(weights, kv, MaxSeqLen: 128));
        output.WriteLine($"kernels {runner.KernelSetName} (specialized {runner.IsSpecialized})");
        // Prefill 60 tokens, then the rest one decode step at a time.
        var blocks = Enumerable.Range(0, runner.NumBlocks).ToArray();
        int Blocks(int n) => (n + runner.BlockSize - 1) / runner.BlockSize;
        var prefill = runner.ExecuteAllLogits(StepBatch.Of(new SequenceChunk(0, tokens[..60], 0, blocks[..Blocks(60)], true)));
        for (int t = 0; t < 60; t++) ReferenceData.AssertRowClose(expected[t], prefill[t], tolerance, $"position {t}");
        for (int t = 60; t < tokens.Length; t++)
        {
            var logits = runner.Execute(StepBatch.Of(new SequenceChunk(0, new[] { tokens[t] }, t, blocks[..Blocks(t + 1)], true)))[0]!;
            ReferenceData.AssertRowClose(expected[t], logits, tolerance, $"decode position {t}");
        }
    }
}
