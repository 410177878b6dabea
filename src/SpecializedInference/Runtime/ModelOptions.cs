using SpecializedInference.Accelerators;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;

namespace SpecializedInference.Runtime;

/// <summary>How a model is loaded and run.</summary>
/// <param name="WeightDtype">Dtype the weights are converted to on upload (f16 halves the bytes each decode step reads).</param>
/// <param name="KvDtype">Dtype of the paged KV cache.</param>
/// <param name="Device">Which device to create when the caller does not pass an accelerator.</param>
/// <param name="NumKvBlocks">KV blocks per layer; 0 sizes the cache for one sequence of <see cref="MaxSeqLen"/> tokens.</param>
/// <param name="KvBlockSize">Slots per KV block; null takes the matching kernel set's block size, else 16.</param>
/// <param name="MaxBatchTokens">Tokens per step the scratch buffers are first sized for (they grow when a step needs more).</param>
/// <param name="MaxSeqLen">Longest sequence (positions the rotary table covers); null: the config's
/// max_position_embeddings, capped at 8192.</param>
/// <param name="ForceGenericKernels">Use the generic attention kernels even when a generated set matches.</param>
/// <param name="Algorithm">Flash or materialized attention (the use_flash_attention toggle).</param>
/// <param name="HeadMapping">Grouped or expanded K/V heads (the use_gqa toggle).</param>
/// <param name="DenseSchedule">Schedule of the projection and norm kernels (Auto: serial on the CPU accelerator).</param>
/// <param name="MatvecDepth">Weight chunks per lane per step of the warp schedule's decode matvecs (null: <see cref="Kernels.Dense.MatvecDepth.Default"/>).</param>
/// <param name="GreedySampling">Where a greedy request's next token is picked (<see cref="IModelRunner.Run"/>): on the
/// device, which copies one key per slice of the logits row back instead of the row, or on the host from the row.
/// Auto: on the device, except on ILGPU's CPU accelerator, where the row is already in host memory.</param>
/// <param name="TensorCores">Run the f16 projections of 9 tokens or more (batched decode, prefill) on tensor cores
/// (<c>mma.sync.m16n8k16</c>, <see cref="Kernels.Dense.TensorCoreBodies"/>), the activations rounded to f16 for the
/// multiply and the sums kept in f32. On by default since the H200 run of 2026-11-27 measured it: the Llama-3-8B shape's
/// decode went from 861 to 4711 tok/s at batch 64 and from 634 to 1554 at batch 16, its 128-token prefill from 1352 to
/// 5351 tok/s; TinyLlama's decode from 5993 to 19606 tok/s at batch 64 and from 4577 to 6252 at batch 16 (batch 1 runs
/// the matvec, unchanged). It applies only on the warp schedule (CUDA) to f16 weights, in steps of
/// <see cref="Kernels.Dense.DenseKernels.TensorCoreMinTokens"/> tokens or more, to matrices whose column count is a
/// multiple of 32; everywhere else (the serial schedule of the CPU accelerator, f32 weights, fewer tokens, other column
/// counts) the CUDA-core kernels run. False: the CUDA-core kernels everywhere (<c>si generate|serve|loadtest --cuda-cores</c>).</param>
/// <param name="DecodeCores">Where the flash decode's products run (<see cref="AttentionOptions.DecodeCores"/>); null: on
/// tensor cores on a CUDA device, where the generated kernel set has a <c>DecodeMma</c> and the cache is f16 (on the
/// H200, 2026-11-27: Llama-3-8B's decode at L=4096 1.47× faster at batch 32 and 1.07× at batch 1 with its partitions on
/// 4 warps), and on CUDA cores on ILGPU's CPU accelerator, which has no tensor cores to use. On tensor cores a set whose
/// config names a large-batch decode runs it for steps that fill the GPU (<see cref="LargeBatchDecodePolicy.Auto"/>).</param>
/// <param name="WeightPrefetch">What each decode matvec (few tokens, CUDA) pulls into L2 ahead of its loads
/// (<see cref="Kernels.Dense.L2Prefetch"/>): bytes of the next projection's weights, at the end or the start of its grid
/// (qkv pulls o_proj across the attention launch, o_proj gate|up, gate|up down_proj, down_proj the next layer's qkv or
/// the LM head), and/or each warp's own rows past its first load step (one HBM round trip per row instead of one per
/// step). Null (the default): none; each measured slower at batch 1 on the H200 (run 23: TinyLlama 1.36–1.40 ms a step
/// against 1.30–1.33, Llama-3-8B 5.61–6.15 against 5.60; <c>report --sections copy,e2e --prefetch-weights rows,8,start:8</c>).</param>
/// <param name="FusedMatvecLaunch">Warps per group and register cap of the fused decode matvec (qkv, gate|up, LM head at
/// few tokens; <see cref="Kernels.Dense.FusedMatvecLaunch"/>); null: groups of 4 warps, the compiler's registers. Run 23
/// (H200, the qkv pair then at depth 2): 2:88 gave Llama-3-8B 5.44 ms a step against 5.60, TinyLlama 1.35 against 1.33;
/// at the default qkv depth of 4 a cap of 88 spills the qkv matvec (<c>report --sections copy,e2e --fused-matvec-launch 2:88</c>).</param>
/// <param name="DecodeLaunches">Whether a decode step (few tokens, warp schedule) launches each layer's o_proj, gate|up, down_proj
/// and the next layer's qkv one by one (<see cref="Kernels.Dense.DecodeLaunches.PerStage"/>, the default) or as one launch
/// whose groups meet at grid barriers between them (<see cref="Kernels.Dense.DecodeLaunches.GridSyncedTails"/>,
/// <see cref="Kernels.Dense.LayerTailBodies"/>): two launches per layer instead of five; or the layer's decode attention
/// in that launch too (<see cref="Kernels.Dense.DecodeLaunches.GridSyncedLayers"/>, where the generated kernel set hands its
/// decode over): one per layer. Measured on the H200 (runs 23–25, <c>report --sections copy,e2e --decode-launches
/// grid-synced-tails,grid-synced-layers</c>): tails tie with the qkv stage at 2 chunks (TinyLlama 1.31–1.32 ms a step),
/// which they now keep whatever <see cref="MatvecDepth"/>.Qkv says (at 4 the whole kernel took 168 registers and lost:
/// 1.50–1.53 ms); whole layers lose (1.70 ms). Not yet measured on a GPU: <see cref="Kernels.Dense.DecodeLaunches.GridSyncedTailsPreloaded"/>,
/// the tail with each warp's first rows of a stage loaded before its barrier, and <see cref="Kernels.Dense.DecodeLaunches.PerStageProgrammatic"/>,
/// the per-stage launches with the warp matvecs and a generated set's decode attention launched by programmatic
/// dependent launch (CUDA sm_90, <see cref="Accelerators.ProgrammaticLauncher"/>, <see cref="Kernels.DecodeLaunch.Programmatic"/>).</param>
/// <param name="MatvecLoads">How the warp schedule's per-stage decode matvecs (o_proj, down_proj, the fused qkv, gate|up and LM head) bring their weights in:
/// into registers a step at a time (the default), or through shared memory by asynchronous copies that keep 8 chunks per
/// lane in flight without holding registers (<see cref="Kernels.Dense.AsyncCopyBodies"/>, CUDA sm_80+). Not yet measured on
/// a GPU: <c>report --sections copy,e2e --matvec-loads async-copy</c> compares it at batch 1. With
/// <see cref="Kernels.Dense.DecodeLaunches.PerStageProgrammatic"/> the copies are launched programmatically too: each ring
/// fills with its first weights before the wait for the kernel before.</param>
/// <param name="CudaGraphs">Capture decode steps (one token per sequence, per-stage launches) as CUDA graphs and replay
/// them (<see cref="DecodeStepGraphs"/>): a step whose launch arguments repeat the step before is captured once, then
/// replayed with one <c>cuGraphLaunch</c> for as long as they stay the same. Meant for batch 1, where each of a step's
/// ~5 launches a layer costs the host ~4 µs to enqueue and the device a gap (H200 runs 22–25: TinyLlama's step enqueues
/// for 440–504 µs of its 1.28–1.33 ms). Needs a CUDA device and the non-blocking stream (<see cref="Accelerators.DeviceStream.NonBlocking"/>:
/// the legacy NULL stream cannot be captured); elsewhere the runner says why (<see cref="LlamaModelRunner.CudaGraphsNotice"/>)
/// and launches each kernel. Not yet measured on a GPU: <c>report --sections copy,e2e --cuda-graphs</c>.</param>
/// <param name="RopeFrequencies">Precision of the rotary frequencies: float32 (Hugging Face at load), or bfloat16 to
/// reproduce a Hugging Face model cast in memory with <c>model.to(torch.bfloat16)</c>.</param>
public sealed record ModelOptions(
    WeightDtype WeightDtype = WeightDtype.F16,
    KvDtype KvDtype = KvDtype.F16,
    DeviceKind Device = DeviceKind.Auto,
    int NumKvBlocks = 0,
    int? KvBlockSize = null,
    int MaxBatchTokens = 512,
    int? MaxSeqLen = null,
    bool ForceGenericKernels = false,
    AttentionAlgorithm Algorithm = AttentionAlgorithm.Flash,
    HeadMapping HeadMapping = HeadMapping.Grouped,
    DenseSchedule DenseSchedule = DenseSchedule.Auto,
    RopeFrequencyPrecision RopeFrequencies = RopeFrequencyPrecision.Float32,
    MatvecDepth? MatvecDepth = null,
    GreedySampling GreedySampling = GreedySampling.Auto,
    bool TensorCores = true,
    DecodeCores? DecodeCores = null,
    WeightPrefetch? WeightPrefetch = null,
    FusedMatvecLaunch? FusedMatvecLaunch = null,
    DecodeLaunches DecodeLaunches = DecodeLaunches.PerStage,
    MatvecLoads MatvecLoads = MatvecLoads.Registers,
    bool CudaGraphs = false)
{
    public static ModelOptions Default { get; } = new();

    /// <summary>These options with tensor cores off: the projections and the decode attention on CUDA cores only (what
    /// <c>--cuda-cores</c> asks for).</summary>
    public ModelOptions OnCudaCoresOnly() => this with { TensorCores = false, DecodeCores = Kernels.DecodeCores.Cuda };

    /// <summary>f32 weights and f32 KV cache: what the float64 reference comparisons use.</summary>
    public static ModelOptions Float32 { get; } = new(WeightDtype.F32, KvDtype.F32);

    /// <summary>Longest context when <see cref="MaxSeqLen"/> is not set and the config allows more.</summary>
    public const int DefaultMaxSeqLenCap = 8192;
}

/// <summary>Where the model runner picks a greedy request's token; see <see cref="ModelOptions.GreedySampling"/>.</summary>
public enum GreedySampling
{
    Auto,
    Device,
    Host,
}
