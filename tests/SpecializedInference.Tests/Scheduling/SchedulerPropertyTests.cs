using CsCheck;
using SpecializedInference.KvCache;
using SpecializedInference.Scheduling;
using Xunit.Abstractions;

namespace SpecializedInference.Tests.Scheduling;

/// <summary>
/// Random workloads over the scheduler and block pool alone (fake runner, greedy argmax). CsCheck prints
/// the seed and the shrunk workload of a failure; rerun with <c>seed:</c> to reproduce it.
/// </summary>
public sealed class SchedulerPropertyTests(ITestOutputHelper output)
{
    private const int Vocab = 24;

    private static readonly int[][] BasePrompts =
    [
        [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4],
        [2, 7, 1, 8, 2, 8, 1, 8, 2, 8, 4, 5, 9, 0, 4, 5, 2, 3, 5, 3],
        [1, 4, 1, 4, 2, 1, 3, 5, 6, 2, 3, 7, 3, 0, 9, 5, 0, 4, 8, 8],
    ];

    // Prompts share prefixes (taken from a few base prompts) so the prefix cache gets hits.
    private static readonly Gen<WorkloadRequest> GenRequest =
        from basePrompt in Gen.Int[0, 2]
        from prefixLength in Gen.Int[0, 20]
        from suffix in Gen.Int[0, Vocab - 1].Array[0, 6]
        from maxNew in Gen.Int[1, 10]
        from arrival in Gen.Int[0, 12]
        from cancelRoll in Gen.Int[0, 4]
        from cancelAt in Gen.Int[0, 40]
        let cancel = cancelRoll == 0 ? cancelAt : (int?)null
        select new WorkloadRequest(
            BasePrompts[basePrompt].Take(prefixLength).Concat(suffix).DefaultIfEmpty(basePrompt + 1).ToArray(),
            maxNew, arrival, cancel);

    private static Gen<Workload> GenWorkload(bool recompute, bool cancellations) =>
        from blockSize in Gen.Int[1, 6]
        from maxBatch in Gen.Int[1, 5]
        from budgetExtra in Gen.Int[0, 24]
        from requests in GenRequest.Array[1, 8]
        from slack in Gen.Int[0, 12]
        from eos in Gen.Int[-1, Vocab - 1]
        let needed = requests.Max(r => (r.Prompt.Length + r.MaxNewTokens - 1 + blockSize - 1) / blockSize)
        select new Workload(needed + slack, blockSize, maxBatch, maxBatch + budgetExtra, recompute, Vocab, eos,
            cancellations ? requests : requests.Select(r => r with { CancelAtStep = null }).ToArray());

    [Fact]
    public void Random_workloads_keep_the_block_invariants_finish_every_request_once_and_match_the_reference()
    {
        GenWorkload(recompute: false, cancellations: true).Sample(w =>
        {
            var result = SchedulerHarness.Run(w);
            AssertMatchesReference(w, result);
        }, iter: 400, print: w => w.ToString());
    }

    [Fact]
    public void Random_workloads_without_kv_cache_match_the_reference()
    {
        GenWorkload(recompute: true, cancellations: true).Sample(w =>
        {
            var result = SchedulerHarness.Run(w);
            AssertMatchesReference(w, result);
            Assert.Equal(0, result.PrefixHitTokens);
        }, iter: 150, print: w => w.ToString());
    }

    [Fact]
    public void Workloads_that_force_preemption_and_chunking_still_reproduce_every_request_alone()
    {
        // Tight pools (exactly the largest request) and small budgets: preemption and chunked prefill happen.
        long preemptions = 0, partial = 0, copies = 0;
        GenWorkload(recompute: false, cancellations: false)
            .Select(w => w with { NumBlocks = w.Requests.Max(r => (r.Prompt.Length + r.MaxNewTokens - 1 + w.BlockSize - 1) / w.BlockSize), MaxNumBatchedTokens = w.MaxBatchSize + 2 })
            .Sample(w =>
            {
                var result = SchedulerHarness.Run(w);
                AssertMatchesReference(w, result);
                Interlocked.Add(ref preemptions, result.Preemptions);
                if (result.SawPartialPrefill) Interlocked.Increment(ref partial);
                if (result.SawBlockCopy) Interlocked.Increment(ref copies);
            }, iter: 300, print: w => w.ToString());
        output.WriteLine($"preemptions {preemptions}, workloads with chunked prefill {partial}, with copy-on-write {copies}");
        Assert.True(preemptions > 0, "The tight pools never forced a preemption: the test does not exercise it.");
        Assert.True(partial > 0, "The small budgets never chunked a prefill.");
        Assert.True(copies > 0, "No workload exercised copy-on-write of a fully cached prompt.");
    }

    [Fact]
    public void Block_pool_matches_a_model_under_random_operations()
    {
        // Operations: 0 allocate, 1 release a reference, 2 retain a used/cached block, 3 register a used block.
        Gen.Select(Gen.Int[1, 12], Gen.Select(Gen.Int[0, 3], Gen.Int[0, 1000]).Array[1, 200]).Sample(t =>
        {
            var (numBlocks, ops) = t;
            var pool = new BlockPool(numBlocks, blockSize: 2);
            var refs = new int[numBlocks];
            var hashed = new bool[numBlocks];
            var lru = new List<int>(); // unreferenced hashed blocks, least recently released first
            int nextToken = 0;
            long evictions = 0;
            foreach (var (op, pick) in ops)
            {
                var used = Enumerable.Range(0, numBlocks).Where(b => refs[b] > 0).ToList();
                switch (op)
                {
                    case 0 when pool.AvailableBlocks > 0:
                        bool anyFree = Enumerable.Range(0, numBlocks).Any(b => refs[b] == 0 && !hashed[b]);
                        int block = pool.Allocate();
                        Assert.Equal(0, refs[block]);
                        if (!anyFree)
                        {
                            // No free block: the least recently released cached block is evicted.
                            Assert.Equal(lru[0], block);
                            lru.RemoveAt(0);
                            hashed[block] = false;
                            evictions++;
                        }
                        else
                        {
                            Assert.False(hashed[block]);
                        }
                        refs[block] = 1;
                        break;
                    case 0:
                        Assert.Throws<InvalidOperationException>(() => pool.Allocate());
                        break;
                    case 1 when used.Count > 0:
                        int r = used[pick % used.Count];
                        pool.Release(r);
                        if (--refs[r] == 0 && hashed[r]) lru.Add(r);
                        break;
                    case 2:
                        var shareable = Enumerable.Range(0, numBlocks).Where(b => refs[b] > 0 || hashed[b]).ToList();
                        if (shareable.Count == 0) break;
                        int s = shareable[pick % shareable.Count];
                        pool.Retain(s);
                        if (refs[s]++ == 0) lru.Remove(s);
                        break;
                    case 3 when used.Count > 0:
                        int g = used[pick % used.Count];
                        if (hashed[g]) break;
                        int[] tokens = [nextToken++, pick];
                        var hash = BlockHash.Compute(null, tokens);
                        Assert.True(pool.TryRegister(g, hash, null, tokens));
                        hashed[g] = true;
                        Assert.True(pool.TryGetCached(hash, null, tokens, out int found));
                        Assert.Equal(g, found);
                        Assert.False(pool.TryGetCached(hash, null, [tokens[0], tokens[1] + 1], out _));
                        break;
                }
                pool.AssertConsistent();
                Assert.Equal(Enumerable.Range(0, numBlocks).Count(b => refs[b] > 0), pool.UsedBlocks);
                Assert.Equal(lru.Count, pool.CachedBlocks);
                Assert.Equal(numBlocks, pool.UsedBlocks + pool.CachedBlocks + pool.FreeBlocks);
                Assert.Equal(evictions, pool.Evictions);
                for (int b = 0; b < numBlocks; b++)
                {
                    Assert.Equal(refs[b], pool.RefCount(b));
                    Assert.Equal(hashed[b], pool.IsHashed(b));
                }
            }
        }, iter: 300);
    }

    private static void AssertMatchesReference(Workload w, WorkloadResult result)
    {
        var stop = w.EosToken >= 0 ? new[] { w.EosToken } : null;
        for (int i = 0; i < w.Requests.Length; i++)
        {
            var r = w.Requests[i];
            var expected = FakeModelRunner.GreedyReference(r.Prompt, r.MaxNewTokens, w.VocabSize, stop);
            var actual = result.Outputs[i];
            if (result.Cancelled.Contains(i))
                Assert.Equal(expected.Take(actual.Count), actual);
            else
                Assert.Equal(expected, actual);
        }
    }
}
