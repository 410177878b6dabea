namespace SpecializedInference.Kernels.Reference;

/// <summary>
/// A paged KV cache on the host, in float64, for checking the kernels: the same
/// <c>[num_blocks, num_kv_heads, block_size, head_dim]</c> layout, written through a slot mapping and read
/// through block tables. Values are rounded to the cache dtype when written, as the device cache stores them.
/// </summary>
public sealed class ReferencePagedCache
{
    public ReferencePagedCache(int numBlocks, int numKvHeads, int blockSize, int headDim, KvDtype dtype)
    {
        NumBlocks = numBlocks;
        NumKvHeads = numKvHeads;
        BlockSize = blockSize;
        HeadDim = headDim;
        Dtype = dtype;
        Keys = new double[(long)numBlocks * numKvHeads * blockSize * headDim];
        Values = new double[Keys.LongLength];
    }

    public int NumBlocks { get; }
    public int NumKvHeads { get; }
    public int BlockSize { get; }
    public int HeadDim { get; }
    public KvDtype Dtype { get; }

    /// <summary>[num_blocks, num_kv_heads, block_size, head_dim]</summary>
    public double[] Keys { get; }

    /// <summary>[num_blocks, num_kv_heads, block_size, head_dim]</summary>
    public double[] Values { get; }

    /// <summary>Offset of element 0 of (block, head, slot) in <see cref="Keys"/> / <see cref="Values"/>.</summary>
    public long Offset(int block, int kvHead, int slot) => (((long)block * NumKvHeads + kvHead) * BlockSize + slot) * HeadDim;

    /// <summary>What the cache holds after storing <paramref name="x"/>.</summary>
    public double Round(float x) => Dtype == KvDtype.F16 ? (double)(float)(System.Half)x : x;

    /// <summary>Appends new rows: token t's K/V go to slot <c>slotMapping[t]</c> (skipped when negative).</summary>
    /// <param name="keys">[num_tokens, num_kv_heads, head_dim]</param>
    /// <param name="values">[num_tokens, num_kv_heads, head_dim]</param>
    public void Write(int[] slotMapping, float[] keys, float[] values)
    {
        for (int t = 0; t < slotMapping.Length; t++)
        {
            int slot = slotMapping[t];
            if (slot < 0) continue;
            for (int h = 0; h < NumKvHeads; h++)
            {
                long dst = Offset(slot / BlockSize, h, slot % BlockSize);
                long src = ((long)t * NumKvHeads + h) * HeadDim;
                for (int d = 0; d < HeadDim; d++)
                {
                    Keys[dst + d] = Round(keys[src + d]);
                    Values[dst + d] = Round(values[src + d]);
                }
            }
        }
    }

    /// <summary>Fills every slot with random values in [-1, 1) (already rounded to the dtype).</summary>
    public void FillRandom(Random rng)
    {
        for (long i = 0; i < Keys.LongLength; i++)
        {
            Keys[i] = Round((float)(rng.NextDouble() * 2 - 1));
            Values[i] = Round((float)(rng.NextDouble() * 2 - 1));
        }
    }

    /// <summary>The keys as the device stores them (f32 or f16 bytes).</summary>
    public byte[] KeyBytes() => ToBytes(Keys);

    /// <summary>The values as the device stores them (f32 or f16 bytes).</summary>
    public byte[] ValueBytes() => ToBytes(Values);

    /// <summary>Reads a device buffer of this layout back as float64.</summary>
    public double[] FromBytes(byte[] bytes)
    {
        var result = new double[Keys.LongLength];
        for (long i = 0; i < result.LongLength; i++)
            result[i] = Dtype == KvDtype.F16
                ? (double)BitConverter.ToHalf(bytes, (int)(i * 2))
                : BitConverter.ToSingle(bytes, (int)(i * 4));
        return result;
    }

    private byte[] ToBytes(double[] data)
    {
        int size = Dtype == KvDtype.F16 ? 2 : 4;
        var bytes = new byte[data.LongLength * size];
        for (long i = 0; i < data.LongLength; i++)
        {
            if (Dtype == KvDtype.F16) BitConverter.TryWriteBytes(bytes.AsSpan((int)(i * 2)), (System.Half)data[i]);
            else BitConverter.TryWriteBytes(bytes.AsSpan((int)(i * 4)), (float)data[i]);
        }
        return bytes;
    }
}

/// <summary>
/// Causal attention with grouped K/V heads over a paged cache, in float64 with plain loops: the independent
/// reference the kernels are checked against (tests and <c>si selftest</c>). It shares no code with the kernels.
/// </summary>
public static class AttentionReference
{
    /// <summary>
    /// For each sequence s and each of its new tokens i (absolute position p = context_s - query_len_s + i),
    /// each query head h attends to keys 0..p of K/V head h / (num_heads / num_kv_heads), read from the cache
    /// through the sequence's block table: out = softmax(q·kᵀ / sqrt(head_dim)) · v.
    /// </summary>
    /// <param name="queries">[num_tokens, num_heads, head_dim]</param>
    /// <returns>[num_tokens, num_heads, head_dim]</returns>
    public static double[] Attend(AttentionBatch batch, float[] queries, int numHeads, ReferencePagedCache cache)
    {
        int headDim = cache.HeadDim;
        int groupSize = numHeads / cache.NumKvHeads;
        double scale = 1.0 / Math.Sqrt(headDim);
        var output = new double[(long)batch.NumTokens * numHeads * headDim];
        int token = 0;
        for (int s = 0; s < batch.NumSeqs; s++)
        {
            int queryLen = batch.QueryLens[s];
            int context = batch.ContextLens[s];
            for (int i = 0; i < queryLen; i++, token++)
            {
                int position = context - queryLen + i;
                for (int h = 0; h < numHeads; h++)
                {
                    int kvHead = h / groupSize;
                    long q = ((long)token * numHeads + h) * headDim;

                    // scores over keys 0..position
                    var scores = new double[position + 1];
                    double max = double.NegativeInfinity;
                    for (int key = 0; key <= position; key++)
                    {
                        long k = cache.Offset(batch.BlockTables[s][key / cache.BlockSize], kvHead, key % cache.BlockSize);
                        double dot = 0;
                        for (int d = 0; d < headDim; d++) dot += queries[q + d] * cache.Keys[k + d];
                        scores[key] = dot * scale;
                        max = Math.Max(max, scores[key]);
                    }

                    // softmax
                    double sum = 0;
                    for (int key = 0; key <= position; key++)
                    {
                        scores[key] = Math.Exp(scores[key] - max);
                        sum += scores[key];
                    }

                    // weighted sum of values
                    for (int key = 0; key <= position; key++)
                    {
                        long v = cache.Offset(batch.BlockTables[s][key / cache.BlockSize], kvHead, key % cache.BlockSize);
                        double p = scores[key] / sum;
                        for (int d = 0; d < headDim; d++) output[q + d] += p * cache.Values[v + d];
                    }
                }
            }
        }
        return output;
    }

    /// <summary>
    /// Compares kernel output with the reference row by row (a row is one token's head, <paramref name="rowLength"/>
    /// values): the largest |actual - expected| in a row, relative to that row's L2 norm. A NaN anywhere (a
    /// poisoned element the kernel never wrote) makes the error NaN.
    /// </summary>
    public static Comparison Compare(float[] actual, double[] expected, int rowLength)
    {
        if (actual.Length != expected.Length) throw new ArgumentException($"compare: {actual.Length} values vs {expected.Length} expected.");
        double maxAbs = 0, worstRelative = 0;
        long worstRow = -1;
        for (long row = 0; row * rowLength < expected.LongLength; row++)
        {
            double norm = 0, rowMax = 0;
            for (long i = row * rowLength; i < (row + 1) * rowLength; i++)
            {
                norm += expected[i] * expected[i];
                double e = Math.Abs(actual[i] - expected[i]);
                rowMax = double.IsNaN(e) || double.IsNaN(rowMax) ? double.NaN : Math.Max(rowMax, e);
            }
            double relative = rowMax / Math.Max(Math.Sqrt(norm), 1e-30);
            if (double.IsNaN(relative) || relative > worstRelative)
            {
                maxAbs = rowMax;
                worstRelative = relative;
                worstRow = row;
                if (double.IsNaN(relative)) break;
            }
        }
        return new Comparison(maxAbs, worstRelative, worstRow);
    }
}

/// <summary>The worst row of a comparison: its max absolute error, that error over the row's reference L2 norm, and the row.</summary>
public readonly record struct Comparison(double MaxAbsError, double RelativeError, long WorstRow)
{
    public bool Within(double relativeTolerance) => !double.IsNaN(RelativeError) && RelativeError <= relativeTolerance;

    public override string ToString() => $"max abs error {MaxAbsError:E2} = {RelativeError:E2} x row norm (row {WorstRow})";
}
