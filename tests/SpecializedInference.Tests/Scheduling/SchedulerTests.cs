using SpecializedInference.KvCache;
using SpecializedInference.Scheduling;

namespace SpecializedInference.Tests.Scheduling;

/// <summary>Targeted scheduler and KV-cache cases (the random workloads cover the general ones).</summary>
public sealed class SchedulerTests
{
    private const int Vocab = 32;

    private static (Scheduler Scheduler, BlockPool Pool, KvCacheManager Kv, FakeModelRunner Runner) Make(
        int blocks, int blockSize, int maxBatch = 4, int budget = 64, bool recompute = false, int maxSeqLen = 4096)
    {
        var pool = new BlockPool(blocks, blockSize);
        var kv = new KvCacheManager(pool, enablePrefixCaching: !recompute);
        var scheduler = new Scheduler(new SchedulerOptions
        {
            MaxBatchSize = maxBatch, MaxNumBatchedTokens = budget, MaxSeqLen = maxSeqLen, RecomputeEveryStep = recompute,
        }, kv);
        return (scheduler, pool, kv, new FakeModelRunner(blocks, blockSize, Vocab));
    }

    /// <summary>Runs one step (greedy, finishing at max tokens) and returns it.</summary>
    private static SchedulerStep Step(Scheduler scheduler, BlockPool pool, FakeModelRunner runner)
    {
        var step = scheduler.Schedule() ?? throw new InvalidOperationException("Nothing was scheduled.");
        SchedulerHarness.CheckInvariants(pool, scheduler, step);
        var logits = runner.Execute(step.Batch);
        scheduler.OnStepExecuted(step);
        for (int i = 0; i < step.Chunks.Count; i++)
        {
            if (logits[i] is not { } l) continue;
            var sequence = step.Chunks[i].Sequence;
            scheduler.AppendToken(sequence, SchedulerHarness.ArgMax(l));
            if (sequence.OutputLength == sequence.MaxNewTokens)
                scheduler.Finish(sequence);
        }
        SchedulerHarness.CheckInvariants(pool, scheduler, null);
        return step;
    }

    private static int[] Prompt(int length, int seed) =>
        Enumerable.Range(0, length).Select(i => (i * 7 + seed * 13 + i * i) % Vocab).ToArray();

    [Fact]
    public void Second_request_with_the_same_40_token_prompt_hits_the_cache_copies_the_last_block_and_leaves_the_first_unchanged()
    {
        // Block size 8: the 40-token prompt is exactly 5 full blocks, so the second request's whole prompt is
        // cached and only its last token must run, inside the (shared) 5th block: copy-on-write.
        var (scheduler, pool, kv, runner) = Make(blocks: 32, blockSize: 8);
        var prompt = Prompt(40, seed: 1);
        var a = new Sequence(0, prompt, maxNewTokens: 12);
        scheduler.Add(a);
        Step(scheduler, pool, runner); // A's prefill
        Step(scheduler, pool, runner); // A decodes: its 6th block now holds position 40
        Assert.Equal(2, a.OutputLength);
        var aBlocks = a.Blocks.BlockTable.ToArray();

        var b = new Sequence(1, prompt, maxNewTokens: 12);
        scheduler.Add(b);
        var admitted = Step(scheduler, pool, runner);

        var copy = Assert.Single(admitted.Batch.BlockCopies);
        Assert.Equal(aBlocks[4], copy.Source);
        Assert.Equal(aBlocks[..4], b.Blocks.BlockTable.Take(4));
        Assert.Equal(copy.Destination, b.Blocks.BlockTable[4]);
        Assert.DoesNotContain(copy.Destination, aBlocks);
        var bChunk = admitted.Chunks.Single(c => c.Sequence == b);
        Assert.Equal(39, bChunk.StartPosition); // only the last prompt token runs
        Assert.Equal(39, b.NumCachedPromptTokens);
        Assert.Equal(39, kv.PrefixHitTokens);
        Assert.Equal(80, kv.PrefixQueryTokens);
        for (int i = 0; i < 4; i++)
            Assert.Equal(2, pool.RefCount(aBlocks[i]));

        while (scheduler.HasWork)
            Step(scheduler, pool, runner);
        var expected = FakeModelRunner.GreedyReference(prompt, 12, Vocab);
        Assert.Equal(expected, a.Tokens.Skip(40));
        Assert.Equal(expected, b.Tokens.Skip(40));
        Assert.Equal(0, pool.UsedBlocks);
    }

    [Fact]
    public void A_prefix_shorter_than_the_prompt_is_shared_without_copies_and_the_rest_is_computed()
    {
        var (scheduler, pool, kv, runner) = Make(blocks: 32, blockSize: 8);
        var shared = Prompt(24, seed: 2);
        var a = new Sequence(0, shared.Concat([1, 2, 3]).ToArray(), maxNewTokens: 5);
        var b = new Sequence(1, shared.Concat([4, 5, 6, 7, 8]).ToArray(), maxNewTokens: 5);
        scheduler.Add(a);
        Step(scheduler, pool, runner);
        scheduler.Add(b);
        var step = Step(scheduler, pool, runner);
        Assert.Empty(step.Batch.BlockCopies);
        Assert.Equal(24, step.Chunks.Single(c => c.Sequence == b).StartPosition);
        Assert.Equal(24, b.NumCachedPromptTokens);
        while (scheduler.HasWork)
            Step(scheduler, pool, runner);
        Assert.Equal(FakeModelRunner.GreedyReference(a.Tokens.Take(27).ToList(), 5, Vocab), a.Tokens.Skip(27));
        Assert.Equal(FakeModelRunner.GreedyReference(b.Tokens.Take(29).ToList(), 5, Vocab), b.Tokens.Skip(29));
    }

    [Fact]
    public void Unreferenced_cached_blocks_stay_reusable_until_the_pool_needs_them_then_the_least_recently_used_go_first()
    {
        var (scheduler, pool, kv, runner) = Make(blocks: 6, blockSize: 4);
        var first = new Sequence(0, Prompt(8, seed: 3), maxNewTokens: 1);  // 2 full blocks, cached when done
        scheduler.Add(first);
        Step(scheduler, pool, runner);
        Assert.Equal(2, pool.CachedBlocks);
        var second = new Sequence(1, Prompt(8, seed: 4), maxNewTokens: 1);
        scheduler.Add(second);
        Step(scheduler, pool, runner);
        Assert.Equal(4, pool.CachedBlocks);
        Assert.Equal(0, pool.Evictions);

        // Needs 4 blocks with 2 free: evicts two cached blocks, the first request's (released earliest).
        var third = new Sequence(2, Prompt(13, seed: 5), maxNewTokens: 1);
        scheduler.Add(third);
        Step(scheduler, pool, runner);
        Assert.Equal(2, pool.Evictions);

        var againSecond = new Sequence(3, Prompt(8, seed: 4).Concat([9]).ToArray(), maxNewTokens: 1);
        scheduler.Add(againSecond);
        Step(scheduler, pool, runner);
        Assert.Equal(8, againSecond.NumCachedPromptTokens); // the second request's blocks survived

        var againFirst = new Sequence(4, Prompt(8, seed: 3).Concat([9]).ToArray(), maxNewTokens: 1);
        scheduler.Add(againFirst);
        Step(scheduler, pool, runner);
        Assert.Equal(0, againFirst.NumCachedPromptTokens); // the first request's were evicted
    }

    [Fact]
    public void Out_of_blocks_preempts_the_most_recently_admitted_which_later_resumes_with_the_same_tokens()
    {
        // 4 blocks of 4: two requests of prompt 6 fit (2 blocks each) until one needs a third block.
        var (scheduler, pool, kv, runner) = Make(blocks: 4, blockSize: 4);
        var old = new Sequence(0, Prompt(6, seed: 6), maxNewTokens: 8);
        var young = new Sequence(1, Prompt(6, seed: 7), maxNewTokens: 8);
        scheduler.Add(old);
        scheduler.Add(young);
        SchedulerStep? preempting = null;
        while (scheduler.HasWork)
        {
            var step = Step(scheduler, pool, runner);
            if (step.Preempted.Count > 0 && preempting is null)
                preempting = step;
        }
        Assert.NotNull(preempting);
        Assert.Equal([young], preempting!.Preempted);
        Assert.Equal(0, old.NumPreemptions);
        Assert.True(young.NumPreemptions >= 1);
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt(6, 6), 8, Vocab), old.Tokens.Skip(6));
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt(6, 7), 8, Vocab), young.Tokens.Skip(6));
    }

    [Fact]
    public void A_long_prompt_is_prefilled_in_chunks_while_running_decodes_keep_going_every_step()
    {
        var (scheduler, pool, kv, runner) = Make(blocks: 64, blockSize: 4, maxBatch: 4, budget: 8);
        var decoding = new Sequence(0, Prompt(3, seed: 8), maxNewTokens: 20);
        scheduler.Add(decoding);
        Step(scheduler, pool, runner);
        var longPrompt = new Sequence(1, Prompt(50, seed: 9), maxNewTokens: 2);
        scheduler.Add(longPrompt);
        int chunks = 0;
        while (longPrompt.OutputLength == 0)
        {
            var step = Step(scheduler, pool, runner);
            Assert.True(step.NumSubmittedTokens <= 8);
            Assert.Same(decoding, step.Chunks[0].Sequence); // the decode goes first, every step
            Assert.False(step.Chunks[0].IsPrefill);
            chunks++;
        }
        Assert.Equal(8, chunks); // 50 tokens at 7 per step (1 of the 8 goes to the decode)
        while (scheduler.HasWork)
            Step(scheduler, pool, runner);
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt(3, 8), 20, Vocab), decoding.Tokens.Skip(3));
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt(50, 9), 2, Vocab), longPrompt.Tokens.Skip(50));
    }

    [Fact]
    public void Waiting_requests_are_admitted_in_arrival_order_up_to_the_batch_size()
    {
        var (scheduler, pool, kv, runner) = Make(blocks: 64, blockSize: 4, maxBatch: 2, budget: 64);
        var sequences = Enumerable.Range(0, 5).Select(i => new Sequence(i, Prompt(5, seed: 10 + i), maxNewTokens: 3)).ToArray();
        foreach (var s in sequences)
            scheduler.Add(s);
        var firstStep = Step(scheduler, pool, runner);
        Assert.Equal([0L, 1L], firstStep.Chunks.Select(c => c.Sequence.Id));
        var order = new List<long>();
        while (scheduler.HasWork)
        {
            var step = Step(scheduler, pool, runner);
            Assert.True(step.Chunks.Count <= 2);
            order.AddRange(step.Chunks.Where(c => c.IsPrefill).Select(c => c.Sequence.Id));
        }
        Assert.Equal([2L, 3L, 4L], order);
    }

    [Fact]
    public void Without_kv_cache_every_step_submits_each_sequence_from_position_0()
    {
        var (scheduler, pool, kv, runner) = Make(blocks: 16, blockSize: 4, recompute: true, budget: 8);
        var a = new Sequence(0, Prompt(5, seed: 20), maxNewTokens: 6);
        var b = new Sequence(1, Prompt(5, seed: 20), maxNewTokens: 6);
        scheduler.Add(a);
        scheduler.Add(b);
        while (scheduler.HasWork)
        {
            var step = Step(scheduler, pool, runner);
            Assert.All(step.Batch.Chunks, c => Assert.Equal(0, c.StartPosition));
            Assert.Empty(step.Batch.BlockCopies);
        }
        Assert.Equal(0, kv.PrefixHitTokens);
        Assert.Equal(FakeModelRunner.GreedyReference(Prompt(5, 20), 6, Vocab), a.Tokens.Skip(5));
        Assert.Equal(a.Tokens, b.Tokens);
    }

    [Theory]
    [InlineData(0, 4, "empty prompt")]
    [InlineData(5, 0, "max_new_tokens = 0")]
    [InlineData(5, -3, "max_new_tokens = -3")]
    [InlineData(60, 5, "65 positions (prompt 60 + max_new_tokens 5) but max_seq_len is 64")]
    public void Requests_that_can_never_run_are_rejected_naming_the_request_and_the_limit(int promptLength, int maxNew, string expected)
    {
        var (scheduler, _, _, _) = Make(blocks: 64, blockSize: 4, maxSeqLen: 64);
        var e = Assert.Throws<RequestRejectedException>(() => scheduler.Add(new Sequence(7, Prompt(promptLength, 1), maxNew, "bad")));
        Assert.Contains("request 'bad' (id 7)", e.Message);
        Assert.Contains(expected, e.Message);
        Assert.Empty(scheduler.Waiting);
    }

    [Fact]
    public void A_request_larger_than_the_whole_pool_is_rejected()
    {
        var (scheduler, _, _, _) = Make(blocks: 3, blockSize: 4);
        scheduler.Add(new Sequence(0, Prompt(10, 1), maxNewTokens: 3)); // 12 cached tokens: exactly 3 blocks
        var e = Assert.Throws<RequestRejectedException>(() => scheduler.Add(new Sequence(1, Prompt(10, 1), maxNewTokens: 4)));
        Assert.Contains("request 1 needs 4 KV blocks (13 tokens at 4 per block) but the whole pool has 3 blocks", e.Message);
    }

    [Fact]
    public void Kv_cache_sizing_counts_keys_and_values_of_every_layer()
    {
        // TinyLlama: 22 layers, 4 KV heads, head dim 64, block 16, f16: 2*22*4*64*16*2 = 360448 bytes a block.
        Assert.Equal(360_448, KvCacheSizing.BytesPerBlock(22, 4, 64, 16, 2));
        Assert.Equal(2, KvCacheSizing.BlocksFor(360_448 * 3 - 1, 22, 4, 64, 16, 2));
        Assert.Equal(3, KvCacheSizing.BlocksFor(360_448 * 3, 22, 4, 64, 16, 2));
        Assert.Equal(0, KvCacheSizing.BlocksFor(0, 22, 4, 64, 16, 2));
        Assert.Equal(5, KvCacheSizing.BlocksForFraction(360_448 * 10, 0.5, 22, 4, 64, 16, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => KvCacheSizing.BlocksFor(-1, 22, 4, 64, 16, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => KvCacheSizing.BlocksFor(100, 22, 0, 64, 16, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => KvCacheSizing.BlocksForFraction(100, 1.5, 22, 4, 64, 16, 2));
    }

    [Fact]
    public void Block_hashes_chain_through_the_parent()
    {
        int[] tokens = [1, 2, 3, 4];
        var root = BlockHash.Compute(null, tokens);
        Assert.Equal(root, BlockHash.Compute(null, tokens));
        Assert.NotEqual(root, BlockHash.Compute(null, [1, 2, 3, 5]));
        Assert.NotEqual(root, BlockHash.Compute(null, [2, 1, 3, 4]));
        var child = BlockHash.Compute(root, tokens);
        Assert.NotEqual(root, child);
        Assert.NotEqual(child, BlockHash.Compute(BlockHash.Compute(null, [9, 9, 9, 9]), tokens));
    }
}
