using System.Collections.Generic;
using System.Linq;
using SpecializedInference.Generators.Models;
using static SpecializedInference.Generators.Emission.SourceWriter;

namespace SpecializedInference.Generators.Emission;

/// <summary>
/// Emits <c>DecodeMma</c>: the grouped split-K flash decode of <see cref="DecodeEmitter"/> with its two products on
/// tensor cores (<c>mma.m16n8k16</c>, f16 × f16 → f32, through <c>TensorCores.Mma16816</c>). The CUDA-core decode
/// spends 2 × heads_per_group FMAs per K/V element, which at four grouped heads bounds it below the copy bandwidth
/// (the MHA shape, with one head, streams at 94% of it). Here each warp takes 16-key tiles of the partition:
/// <list type="bullet">
/// <item><b>Scores</b> Sᵀ[key, head] = K · Qᵀ: A = 16 keys × 16 dims of K straight from the lane's 16-byte loads
/// (lane (g, t) loads dims 8t..8t+7 of each 32 of keys g and g + 8; the dims are renumbered inside a k-step the same
/// way for K and Q, which the dot product does not see), B = Qᵀ, heads as columns.</item>
/// <item><b>P·V</b> Oᵀ[dim, head] = Vᵀ · Pᵀ: lane (g, t) loads 8 dims of keys 2t, 2t+1, 2t+8 and 2t+9, so pairing
/// the halves of two keys' registers (a byte permute, no shuffle) gives the A fragment of Vᵀ; B = Pᵀ.</item>
/// </list>
/// Q and P are f32: each goes in as f16 hi + lo (two products), so the result keeps f32 precision; K and V are f16 in
/// the cache, exact as operands. The work item, softmax, partials, ticket and combine are the CUDA-core kernel's.
/// </summary>
internal static class DecodeMmaEmitter
{
    /// <summary>Keys per mma tile (the m dimension of the scores' product, the k dimension of P·V's).</summary>
    private const int TileKeys = 16;

    /// <summary>Whether a kernel set gets the tensor-core decode (<see cref="SharedMemoryBudget.FitsDecodeMma"/>, grouped heads).</summary>
    public static bool Supports(AttentionLayout L)
        => !L.Expanded && SharedMemoryBudget.FitsDecodeMma(L.HeadDim, L.HeadsPerGroup, L.Warps, L.Partition, L.BlockSize);

    public static void Emit(SourceWriter w, AttentionLayout L, string name = "DecodeMma")
    {
        int T = L.Threads, D4 = L.D4, HG = L.HeadsPerGroup, P = L.Partition, D = L.HeadDim, W = L.Warps;
        int TPW = P / (TileKeys * W);          // 16-key tiles per warp
        int KJ = D / 32;                       // K chunks per key row per lane (k-step pairs)
        int VQ = D / 64;                       // V chunks per key per lane
        w.Line("/// <summary>");
        w.Line($"/// Split-K flash decode on tensor cores: thread group = (decode, partition of {P} keys) x ({HG} query heads sharing each K/V");
        w.Line($"/// load), {T} threads; warp w takes keys {TileKeys * TPW}w .. {TileKeys * TPW}w + {TileKeys * TPW - 1} as {TPW} tile(s) of {TileKeys}. Scores Sᵀ = K·Qᵀ and");
        w.Line("/// Oᵀ = Vᵀ·Pᵀ are mma.m16n8k16 products (Q and P as f16 hi + lo, f32 accumulators), K and V loaded once, in");
        w.Line("/// 16-byte chunks, in one round trip; softmax, partials, ticket and combine as in Decode. f16 cache only.");
        w.Line("/// </summary>");
        w.Line("/// <param name=\"queries\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <param name=\"keyCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim] f16</param>");
        w.Line("/// <param name=\"valueCache\">[num_blocks, NumKeyValueHeads, KvBlockSize, HeadDim] f16</param>");
        w.Line("/// <param name=\"output\">[num_tokens, NumAttentionHeads, HeadDim] f32</param>");
        w.Line("/// <typeparam name=\"TClock\">What happens at each DecodeStage: nothing (NoStageClock), or the SM's clock (SmStageClock).</typeparam>");
        w.Line("/// <typeparam name=\"TDependency\">How it follows the kernel before it: stream-ordered, or a programmatic launch.</typeparam>");
        w.Line($"public static void {name}<TClock, TDependency>(AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TClock : struct, IStageClock");
        w.Line("    where TDependency : struct, ILaunchDependency");
        w.Line($"    => {name}Group<TClock, TDependency>(Grid.IdxX, m, queries, keyCache, valueCache, output);");
        w.Line();
        DecodeEmitter.EmitGroupSummary(w, name);
        w.Line($"public static void {name}Group<TClock, TDependency>(int group, AttentionMeta m, ArrayView<float> queries, ArrayView<Chunk16> keyCache, ArrayView<Chunk16> valueCache, ArrayView<float> output)");
        w.Line("    where TClock : struct, IStageClock");
        w.Line("    where TDependency : struct, ILaunchDependency");
        using (w.Scope())
        {
            var marks = StageMarks.Clock;
            marks.At(w, "Entry");
            DecodeEmitter.EmitPreamble(w, L, W, 1);
            marks.At(w, "Blocks");
            w.Line("// Lane (g, tq) of warp wk: g = lane / 4 picks rows of the mma fragments, tq = lane % 4 columns.");
            w.Line("int wk = Warp.WarpIdx;");
            w.Line("int g = Warp.LaneIdx >> 2;");
            w.Line("int tq = Warp.LaneIdx & 3;");
            w.Line();

            // Tiles whose K and V fit the load registers at once (64 per tile at head_dim 128): all of them, in one round
            // trip, when the warp's tiles fit; otherwise K in batches, then V: in one go after the scores when it fits
            // (in flight through the softmax's barriers), else in batches after the softmax.
            int perTile = 4 * (2 * KJ + 4 * VQ);
            bool together = TPW * perTile <= DecodeEmitter.LoadRegisterBudget;
            int batch = System.Math.Max(1, DecodeEmitter.LoadRegisterBudget / (perTile / 2));
            // When K comes in batches, V still fits the load registers in one go after the scores (half of a tile's).
            bool valuesEarly = !together && TPW * (perTile / 2) <= DecodeEmitter.LoadRegisterBudget;
            for (int i = 0; i < TPW; i++)
            {
                string tile = TPW == 1 ? "wk" : $"(wk * {Int(TPW)} + {Int(i)})";
                w.Line($"int jK{i} = {tile} * {Int(TileKeys)} + g;          // partition key of this lane's K rows (and + 8), tile {i}");
                w.Line($"int jV{i} = {tile} * {Int(TileKeys)} + 2 * tq;     // partition key of this lane's first V row, tile {i}");
            }
            if (together)
            {
                w.Line("// Round trip 2, K and V of the warp's tiles together. K: keys g and g + 8 of a tile, dims 32j + 8tq .. + 7 of");
                w.Line("// each 32 (the A fragments of Sᵀ = K·Qᵀ as loaded). V: keys 2tq, 2tq + 1, 2tq + 8, 2tq + 9 of a tile, dims");
                w.Line("// 8(g + 8q) .. + 7 (paired per dim below into the A fragments of Oᵀ = Vᵀ·Pᵀ). Keys past the context read rows of");
                w.Line("// valid blocks (the plan repeats the last one): their scores become -inf and their V chunks 0.");
                var chunks = Enumerable.Range(0, TPW).SelectMany(i => EmitKeyLoads(w, L, i)).ToList();
                chunks.AddRange(Enumerable.Range(0, TPW).SelectMany(i => EmitValueLoads(w, L, i)));
                w.Line(StepBoundary.Chunk16s("sQ", HG * D4, chunks));
                DecodeEmitter.EmitQueries(w, L);
                w.Line();
                EmitScoresHeader(w, HG, D4);
                for (int i = 0; i < TPW; i++) EmitScores(w, L, i);
            }
            else
            {
                w.Line($"// K in batches of {batch} tile(s), each batch's loads together (keys g and g + 8 of a tile, dims 32j + 8tq .. + 7");
                w.Line("// of each 32: the A fragments of Sᵀ = K·Qᵀ as loaded). Keys past the context read rows of valid blocks (the");
                w.Line("// plan repeats the last one) and score -inf.");
                for (int b0 = 0; b0 < TPW; b0 += batch)
                {
                    var tiles = Enumerable.Range(b0, System.Math.Min(batch, TPW - b0)).ToList();
                    w.Line(StepBoundary.Chunk16s("sQ", HG * D4, tiles.SelectMany(i => EmitKeyLoads(w, L, i)).ToList()));
                    if (b0 == 0)
                    {
                        DecodeEmitter.EmitQueries(w, L);
                        w.Line();
                        EmitScoresHeader(w, HG, D4);
                    }
                    foreach (int i in tiles) EmitScores(w, L, i);
                }
                if (valuesEarly)
                {
                    w.Line("// V of every tile, loaded now that the K registers are free: in flight while the softmax waits on the group.");
                    w.Line(StepBoundary.Chunk16s("sQ", HG * D4, Enumerable.Range(0, TPW).SelectMany(i => EmitValueLoads(w, L, i)).ToList()));
                }
            }
            w.Line("Group.Barrier();");
            marks.At(w, "Scores");
            w.Line();

            DecodeEmitter.EmitSoftmax(w, L);
            marks.At(w, "Softmax");
            w.Line();

            w.Line("// P·V, tile by tile: A = Vᵀ (rows: dims 8c + 2e and 8c + 2e + 1 of c = g + 8q; columns: the tile's keys), built by");
            w.Line("// pairing two keys' halves of one register; B = Pᵀ of heads g (hi + lo). Keys past the context: V chunk 0, p 0.");
            for (int q = 0; q < VQ; q++)
                for (int e = 0; e < 4; e++)
                    w.Line($"var o{q}_{e} = default(MmaTile);   // [dims 8(g + {8 * q}) + {2 * e}, + {2 * e + 1}] x [head 2tq, 2tq + 1]");
            w.Line($"var sPg = sP.SubView((g < {Int(HG)} ? g : 0) * {Int(P)});   // head g's probabilities");
            bool loaded = together || valuesEarly;
            for (int b0 = 0; b0 < TPW; b0 += loaded ? TPW : batch)
            {
                var tiles = Enumerable.Range(b0, loaded ? TPW : System.Math.Min(batch, TPW - b0)).ToList();
                if (!loaded)
                {
                    w.Line($"// V of tile(s) {string.Join(", ", tiles)}: keys 2tq, 2tq + 1, 2tq + 8, 2tq + 9, dims 8(g + 8q) .. + 7, loaded together.");
                    w.Line(StepBoundary.Chunk16s("sQ", HG * D4, tiles.SelectMany(i => EmitValueLoads(w, L, i)).ToList()));
                }
                foreach (int i in tiles) EmitValueProducts(w, L, i);
            }

            w.Line("// This warp's partial P·V rows: head 2tq (C0, C2) and 2tq + 1 (C1, C3), dims 8c .. 8c + 7 as two Float4.");
            foreach (var (head, even, odd) in new[] { ("2 * tq", "C0", "C2"), ("2 * tq + 1", "C1", "C3") })
            {
                bool guard = HG < 8;
                if (guard) w.Open($"if ({head} < {Int(HG)})");
                for (int q = 0; q < VQ; q++)
                {
                    string at = $"(wk * {Int(HG)} + {head}) * {Int(D4)} + 2 * g + {Int(16 * q)}";
                    w.Line($"sRed[{at}] = new Float4(o{q}_0.{even}, o{q}_0.{odd}, o{q}_1.{even}, o{q}_1.{odd});");
                    w.Line($"sRed[{at} + 1] = new Float4(o{q}_2.{even}, o{q}_2.{odd}, o{q}_3.{even}, o{q}_3.{odd});");
                }
                if (guard) w.Close();
            }
            w.Line("Group.Barrier();");
            marks.At(w, "Values");
            w.Line();
            DecodeEmitter.EmitReduceAndWrite(w, L, W, 1, marks);
        }
    }

    /// <summary>Whether each 16-key tile lies in one KV block: blocks of a multiple of 16 keys that tile the partitions.
    /// Then a tile's six row addresses (K rows g, g + 8; V rows 2tq, 2tq + 1, 2tq + 8, 2tq + 9) are one block lookup and
    /// one 64-bit product plus lane and constant offsets, instead of a lookup and a product each.</summary>
    private static bool TilesInOneBlock(AttentionLayout L) => L.BlockSize % TileKeys == 0 && L.Partition % L.BlockSize == 0;

    /// <summary>Declares <c>kRow{i}</c>: the 16-byte chunk of tile <paramref name="i"/>'s first key row, dim 0 (one block
    /// id from shared memory; <see cref="TilesInOneBlock"/>), which its K loads and, later, its V loads add to.</summary>
    private static void EmitTileRow(SourceWriter w, AttentionLayout L, int i)
    {
        string firstKey = $"(jK{i} - g)";   // the tile's first key in the partition
        string slot = L.BlockSize == TileKeys ? "" : $" + {Mod(firstKey, L.BlockSize)} * {Int(L.HeadDim / 8)}";
        w.Line($"long kRow{i} = ((long)sBlock[{Div(firstKey, L.BlockSize)}] * {Int(L.KvHeads)} + kvHead) * {Int(L.BlockSize * L.HeadDim / 8)}{slot};   // [block, kv_head, tile's first slot, 0] in chunks");
    }

    /// <summary>Loads tile <paramref name="i"/>'s K chunks (keys g and g + 8, dims 32j + 8tq .. + 7); returns their names.</summary>
    private static IEnumerable<string> EmitKeyLoads(SourceWriter w, AttentionLayout L, int i)
    {
        if (TilesInOneBlock(L))
        {
            EmitTileRow(w, L, i);
            w.Line($"long kA{i} = kRow{i} + g * {Int(L.HeadDim / 8)} + tq;");
            w.Line($"long kB{i} = kA{i} + {Int(8 * L.HeadDim / 8)};");
        }
        else
        {
            w.Line($"long kA{i} = ({DecodeEmitter.Row(L, $"(k0 + jK{i})")}) / 8 + tq;");
            w.Line($"long kB{i} = ({DecodeEmitter.Row(L, $"(k0 + jK{i} + 8)")}) / 8 + tq;");
        }
        var names = new List<string>();
        for (int j = 0; j < L.HeadDim / 32; j++)
        {
            w.Line($"var ka{i}_{j} = keyCache[kA{i} + {Int(4 * j)}];   // [key g, dims {32 * j} + 8tq ..]");
            w.Line($"var kb{i}_{j} = keyCache[kB{i} + {Int(4 * j)}];   // [key g + 8, dims {32 * j} + 8tq ..]");
            names.Add($"ka{i}_{j}");
            names.Add($"kb{i}_{j}");
        }
        return names;
    }

    /// <summary>Loads tile <paramref name="i"/>'s V chunks (keys 2tq, 2tq + 1, 2tq + 8, 2tq + 9, dims 8(g + 8q) .. + 7);
    /// returns their names.</summary>
    private static IEnumerable<string> EmitValueLoads(SourceWriter w, AttentionLayout L, int i)
    {
        var names = new List<string>();
        if (TilesInOneBlock(L))
        {
            w.Line($"long v0R{i} = kRow{i} + 2 * tq * {Int(L.HeadDim / 8)} + g;");
            foreach (int off in new[] { 1, 8, 9 })
                w.Line($"long v{off}R{i} = v0R{i} + {Int(off * L.HeadDim / 8)};");
        }
        else
        {
            foreach (int off in new[] { 0, 1, 8, 9 })
                w.Line($"long v{off}R{i} = ({DecodeEmitter.Row(L, $"(k0 + jV{i} + {Int(off)})")}) / 8 + g;");
        }
        for (int q = 0; q < L.HeadDim / 64; q++)
            foreach (int off in new[] { 0, 1, 8, 9 })
            {
                w.Line($"var v{off}_{i}_{q} = valueCache[v{off}R{i} + {Int(8 * q)}];   // [key 2tq + {off}, dims 8(g + {8 * q}) ..]");
                names.Add($"v{off}_{i}_{q}");
            }
        return names;
    }

    private static void EmitScoresHeader(SourceWriter w, int HG, int D4)
    {
        w.Line($"// Scores, tile by tile: A = K rows (16 keys x 16 dims per k-step), B = Qᵀ of heads g < {HG} (the other columns 0).");
        w.Line("// k-step (j, s) covers dims 32j + 8tq + 4s .. + 3 in lane (g, tq): its K registers and Q Float4 hold exactly");
        w.Line("// those, so the renumbering within a k-step is the same on both sides.");
        w.Line($"var sQg = sQ.SubView((g < {Int(HG)} ? g : 0) * {Int(D4)} + 2 * tq);   // this lane's query dims of head g, indexed with constants");
        w.Line($"bool headG = g < {Int(HG)};");
    }

    /// <summary>Tile <paramref name="i"/>'s scores: 2 × head_dim / 16 mma (Q hi and lo), then its keys' scores into sP.</summary>
    private static void EmitScores(SourceWriter w, AttentionLayout L, int i)
    {
        int HG = L.HeadsPerGroup, D4 = L.D4, P = L.Partition;
        w.Line($"var sc{i} = default(MmaTile);   // [key g, g + 8] x [head 2tq, 2tq + 1] of tile {i}");
        for (int j = 0; j < L.HeadDim / 32; j++)
            for (int s = 0; s < 2; s++)
            {
                string lo = s == 0 ? "X" : "Z", hi = s == 0 ? "Y" : "W";
                w.Line($"var q{i}_{j}_{s} = headG ? sQg[{Int(8 * j + s)}] : default(Float4);");
                w.Line($"var qb0_{i}_{j}_{s} = TensorCores.Split(q{i}_{j}_{s}.X, q{i}_{j}_{s}.Y);   // b0: dims + 0, + 1");
                w.Line($"var qb1_{i}_{j}_{s} = TensorCores.Split(q{i}_{j}_{s}.Z, q{i}_{j}_{s}.W);   // b1: dims + 2, + 3");
                w.Line($"TensorCores.Mma16816(ref sc{i}, ka{i}_{j}.{lo}, kb{i}_{j}.{lo}, ka{i}_{j}.{hi}, kb{i}_{j}.{hi}, qb0_{i}_{j}_{s}.Hi, qb1_{i}_{j}_{s}.Hi);");
                w.Line($"TensorCores.Mma16816(ref sc{i}, ka{i}_{j}.{lo}, kb{i}_{j}.{lo}, ka{i}_{j}.{hi}, kb{i}_{j}.{hi}, qb0_{i}_{j}_{s}.Lo, qb1_{i}_{j}_{s}.Lo);");
            }
        w.Line(StepBoundary.Floats("sQ", HG * D4, new[] { $"sc{i}.C0", $"sc{i}.C1", $"sc{i}.C2", $"sc{i}.C3" }));
        // C0/C2: head 2tq, keys g and g + 8; C1/C3: head 2tq + 1.
        foreach (var (head, rowG, rowG8) in new[] { ("2 * tq", "C0", "C2"), ("2 * tq + 1", "C1", "C3") })
        {
            bool guard = HG < 8;
            if (guard) w.Open($"if ({head} < {Int(HG)})");
            w.Line($"sP[({head}) * {Int(P)} + jK{i}] = jK{i} < numKeys ? sc{i}.{rowG} : float.NegativeInfinity;");
            w.Line($"sP[({head}) * {Int(P)} + jK{i} + 8] = jK{i} + 8 < numKeys ? sc{i}.{rowG8} : float.NegativeInfinity;");
            if (guard) w.Close();
        }
    }

    /// <summary>Tile <paramref name="i"/>'s share of Oᵀ = Vᵀ·Pᵀ: its V chunks paired per dim into A fragments, 2 × head_dim / 16
    /// mma (P hi and lo) into the warp's accumulators.</summary>
    private static void EmitValueProducts(SourceWriter w, AttentionLayout L, int i)
    {
        string[] regs = { "X", "Y", "Z", "W" };
        w.Line($"float p0_{i} = headG ? sPg[jV{i}] : 0f, p1_{i} = headG ? sPg[jV{i} + 1] : 0f;");
        w.Line($"float p8_{i} = headG ? sPg[jV{i} + 8] : 0f, p9_{i} = headG ? sPg[jV{i} + 9] : 0f;");
        w.Line($"var pLow{i} = TensorCores.Split(p0_{i}, p1_{i});    // b0: keys 2tq, 2tq + 1");
        w.Line($"var pHigh{i} = TensorCores.Split(p8_{i}, p9_{i});   // b1: keys 2tq + 8, 2tq + 9");
        int VQ = L.HeadDim / 64;
        for (int q = 0; q < VQ; q++)
        {
            foreach (int off in new[] { 0, 1, 8, 9 })
                w.Line($"var vm{off}_{i}_{q} = jV{i} + {Int(off)} < numKeys ? v{off}_{i}_{q} : default(Chunk16);");
            for (int e = 0; e < 4; e++)
            {
                string r = regs[e];
                w.Line($"uint a0_{i}_{q}_{e} = TensorCores.LowHalves(vm0_{i}_{q}.{r}, vm1_{i}_{q}.{r});    // dim 8c + {2 * e}, keys 2tq, 2tq + 1");
                w.Line($"uint a1_{i}_{q}_{e} = TensorCores.HighHalves(vm0_{i}_{q}.{r}, vm1_{i}_{q}.{r});   // dim 8c + {2 * e + 1}");
                w.Line($"uint a2_{i}_{q}_{e} = TensorCores.LowHalves(vm8_{i}_{q}.{r}, vm9_{i}_{q}.{r});    // dim 8c + {2 * e}, keys 2tq + 8, 2tq + 9");
                w.Line($"uint a3_{i}_{q}_{e} = TensorCores.HighHalves(vm8_{i}_{q}.{r}, vm9_{i}_{q}.{r});   // dim 8c + {2 * e + 1}");
                w.Line($"TensorCores.Mma16816(ref o{q}_{e}, a0_{i}_{q}_{e}, a1_{i}_{q}_{e}, a2_{i}_{q}_{e}, a3_{i}_{q}_{e}, pLow{i}.Hi, pHigh{i}.Hi);");
                w.Line($"TensorCores.Mma16816(ref o{q}_{e}, a0_{i}_{q}_{e}, a1_{i}_{q}_{e}, a2_{i}_{q}_{e}, a3_{i}_{q}_{e}, pLow{i}.Lo, pHigh{i}.Lo);");
            }
        }
        w.Line(StepBoundary.Floats("sQ", L.HeadsPerGroup * L.D4, Enumerable.Range(0, VQ).SelectMany(q => Enumerable.Range(0, 4).SelectMany(e => new[] { $"o{q}_{e}.C0", $"o{q}_{e}.C1", $"o{q}_{e}.C2", $"o{q}_{e}.C3" }))));
    }
}
