using SpecializedInference.Accelerators;
using SpecializedInference.Engine;
using SpecializedInference.Kernels;
using SpecializedInference.Kernels.Dense;
using SpecializedInference.Model;
using SpecializedInference.Runtime;
using SpecializedInference.Sampling;
using SpecializedInference.Text;
using SpecializedInference.Text.Jinja;

namespace SpecializedInference.Cli;

/// <summary>What <c>si serve</c> serves: an engine, the text side, and what clients should call it.</summary>
/// <param name="ChatTemplateError">Why the checkpoint's chat template is not used, when it has one that failed to load.</param>
internal sealed record LoadedModel(
    InferenceEngine Engine,
    ITextTokenizer? Tokenizer,
    IChatTemplate? ChatTemplate,
    string Name,
    IReadOnlyList<int> EosTokenIds,
    bool AddBos,
    string Description,
    IReadOnlyList<string> Notes,
    string? ChatTemplateError = null);

/// <summary>Which model to load and how (from the command line).</summary>
/// <param name="MaxNumBatchedTokens">Token budget of one step; null: max(512, max batch size).</param>
/// <param name="WeightDtype">Weights on the device; null: <see cref="ModelOptions.Default"/>'s.</param>
/// <param name="KvDtype">KV cache dtype; null: <see cref="ModelOptions.Default"/>'s.</param>
/// <param name="TensorCores">f16 projections of 9 tokens or more and the decode attention on tensor cores where the device
/// has them (<see cref="ModelOptions.TensorCores"/>, <see cref="ModelOptions.DecodeCores"/>: the default); false
/// (<c>--cuda-cores</c>): both on CUDA cores only.</param>
internal sealed record ModelRequest(string? CheckpointDirectory, bool Synthetic, string? Name, int MaxBatchSize, int? KvBlocks, DeviceKind Device,
    int SyntheticVocabSize, int SyntheticMaxSeqLen, TimeSpan SyntheticStepDelay,
    int? MaxNumBatchedTokens = null, WeightDtype? WeightDtype = null, KvDtype? KvDtype = null, bool TensorCores = true,
    Kernels.Dense.WeightPrefetch? WeightPrefetch = null, Kernels.Dense.FusedMatvecLaunch? FusedMatvecLaunch = null,
    Kernels.Dense.DecodeLaunches DecodeLaunches = Kernels.Dense.DecodeLaunches.PerStage, DeviceStream Stream = DeviceStream.Legacy,
    bool CudaGraphs = false);

/// <summary>Loads what <c>si serve</c> and <c>si loadtest</c> serve, reporting progress per stage.</summary>
internal static class ModelLoading
{
    private const int MaxNumBatchedTokens = 512;

    public static LoadedModel Load(ModelRequest request, IProgress<ModelLoadProgress> progress)
    {
        var notes = new List<string>();
        LlamaCheckpoint? checkpoint = null;
        try
        {
            CheckpointTextTokenizer? tokenizer = null;
            JinjaChatTemplate? chatTemplate = null;
            string? chatTemplateError = null;
            if (request.CheckpointDirectory is { } dir)
            {
                string folder = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir)));
                progress.Report(new ModelLoadProgress("Opening checkpoint", 0, 1, folder));
                checkpoint = BadInput(() => LlamaCheckpoint.Open(dir));
                progress.Report(new ModelLoadProgress("Opening checkpoint", 1, 1, folder));

                progress.Report(new ModelLoadProgress("Loading tokenizer", 0, 1));
                tokenizer = BadInput(() => CheckpointTextTokenizer.TryLoad(dir));
                if (tokenizer is null)
                    notes.Add("The checkpoint has no tokenizer (tokenizer.model or tokenizer.json): prompts must be token ids.");
                // A chat template that cannot be used costs the chat endpoint only: completions are still served.
                try
                {
                    chatTemplate = JinjaChatTemplate.TryLoad(dir);
                }
                catch (Exception e) when (e is JinjaSyntaxException or InvalidDataException)
                {
                    chatTemplateError = e.Message;
                    notes.Add($"The chat template cannot be used, so /v1/chat/completions answers 400: {e.Message}");
                }
                progress.Report(new ModelLoadProgress("Loading tokenizer", 1, 1));
            }

            // The runner is built by the engine's factory path, which runs it on the engine thread (where the
            // runner is then used: a CUDA context stays on the thread that made it) and waits for it.
            string description = "";
            var engineOptions = new EngineOptions
            {
                MaxBatchSize = request.MaxBatchSize,
                MaxNumBatchedTokens = request.MaxNumBatchedTokens ?? Math.Max(MaxNumBatchedTokens, request.MaxBatchSize),
            };
            var engine = InferenceEngine.Create(_ =>
            {
                if (!request.Synthetic)
                    return LoadRunner(checkpoint!, request, progress, out description);
                int vocab = checkpoint?.Config.VocabSize ?? request.SyntheticVocabSize;
                int maxSeqLen = checkpoint is null ? request.SyntheticMaxSeqLen : Math.Min(checkpoint.Config.MaxPositionEmbeddings, ModelOptions.DefaultMaxSeqLenCap);
                const int blockSize = 16;
                int blocks = request.KvBlocks ?? DefaultKvBlocks(request.MaxBatchSize, maxSeqLen, blockSize);
                progress.Report(new ModelLoadProgress("Creating synthetic model runner", 0, 1));
                var synthetic = new SyntheticModelRunner(vocab, maxSeqLen, blocks, blockSize, request.SyntheticStepDelay);
                progress.Report(new ModelLoadProgress("Creating synthetic model runner", 1, 1));
                description = $"synthetic model runner (no weights: logits hash the token history), vocabulary {vocab}, max_seq_len {maxSeqLen}, {blocks} KV blocks of {blockSize}";
                return synthetic;
            }, engineOptions, EngineSamplers.Factory);
            string name = request.Name
                ?? (request.CheckpointDirectory is { } d ? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(d))) : "synthetic");
            return new LoadedModel(engine, tokenizer, chatTemplate, name, checkpoint?.EosTokenIds ?? Array.Empty<int>(), tokenizer?.AddBos ?? true,
                description, notes, chatTemplateError);
        }
        finally
        {
            checkpoint?.Dispose(); // the runner has uploaded what it needs
        }
    }

    /// <summary>
    /// The checkpoint's <see cref="LlamaModelRunner"/> on the accelerator <paramref name="request"/> names, with
    /// its kernels compiled by a warm-up step so the first request does not pay for it.
    /// </summary>
    private static IModelRunner LoadRunner(LlamaCheckpoint checkpoint, ModelRequest request, IProgress<ModelLoadProgress> progress, out string description)
    {
        progress.Report(new ModelLoadProgress("Creating accelerator", 0, 1));
        var accelerator = AcceleratorFactory.Create(new AcceleratorOptions(request.Device, Stream: request.Stream));
        progress.Report(new ModelLoadProgress("Creating accelerator", 1, 1, accelerator.Description));
        try
        {
            int maxSeqLen = Math.Min(checkpoint.Config.MaxPositionEmbeddings, ModelOptions.DefaultMaxSeqLenCap);
            var options = ModelOptions.Default with
            {
                MaxSeqLen = maxSeqLen,
                NumKvBlocks = request.KvBlocks ?? DefaultKvBlocks(request.MaxBatchSize, maxSeqLen, 16),
                MaxBatchTokens = request.MaxNumBatchedTokens ?? Math.Max(MaxNumBatchedTokens, request.MaxBatchSize),
                WeightDtype = request.WeightDtype ?? ModelOptions.Default.WeightDtype,
                KvDtype = request.KvDtype ?? ModelOptions.Default.KvDtype,
                WeightPrefetch = request.WeightPrefetch,
                FusedMatvecLaunch = request.FusedMatvecLaunch,
                DecodeLaunches = request.DecodeLaunches,
                CudaGraphs = request.CudaGraphs,
            };
            if (!request.TensorCores) options = options.OnCudaCoresOnly();
            long bytes = checkpoint.Weights.Tensors.Sum(t => t.ByteLength);
            progress.Report(new ModelLoadProgress("Uploading weights", 0, 0, $"{bytes / (1024.0 * 1024.0):F1} MiB"));
            var runner = new LlamaModelRunner(accelerator.Accelerator, checkpoint, options);
            progress.Report(new ModelLoadProgress("Uploading weights", 1, 1));
            try
            {
                WarmUp(runner, progress);
            }
            catch
            {
                runner.Dispose();
                throw;
            }
            description = $"{checkpoint.Directory} on {accelerator.Description}, {runner.NumBlocks} KV blocks of {runner.BlockSize}"
                + (accelerator.Notice is { } streamNotice ? $"; {streamNotice}" : "")
                + (runner.KernelNotice is { } notice ? $"; {notice}" : "")
                + (TensorCoreNotice(request.TensorCores, runner.DenseSchedule, options.WeightDtype) is { } projections ? $"; {projections}" : "")
                + (runner.DecodeOnTensorCores ? "; decode attention on tensor cores" : "")
                + (runner.DecodeAttentionLaunchNotice is { } launch ? $"; {launch}" : "")
                + (runner.CudaGraphsNotice is { } graphs ? $"; --cuda-graphs: {graphs}" : runner.CapturesCudaGraphs ? "; decode steps replayed as CUDA graphs" : "")
                + string.Concat(MatvecOptionNotices(options, runner.DenseSchedule, accelerator.Accelerator).Select(n => $"; {n}"));
            return new OwningModelRunner(runner, accelerator);
        }
        catch
        {
            accelerator.Dispose();
            throw;
        }
    }

    /// <summary>
    /// What the model description says about the tensor-core projections (<see cref="ModelOptions.TensorCores"/>): that
    /// they run (the default, where there is a tensor-core path), that --cuda-cores turned them off, or that --cuda-cores
    /// has no effect because there is no tensor-core path to turn off (the serial schedule of the CPU accelerator, f32
    /// weights); null where there is nothing to say (the default without a tensor-core path).
    /// </summary>
    internal static string? TensorCoreNotice(bool tensorCores, DenseSchedule schedule, WeightDtype weights) =>
        (tensorCores, NoTensorCorePath(schedule, weights)) switch
        {
            (true, null) => "f16 projections of 9+ tokens on tensor cores",
            (true, _) => null,
            (false, null) => "f16 projections on CUDA cores only (--cuda-cores)",
            (false, var why) => $"--cuda-cores has no effect: {why}",
        };

    /// <summary>What the decode matvec options asked for (<see cref="ModelOptions.WeightPrefetch"/>,
    /// <see cref="ModelOptions.FusedMatvecLaunch"/>, <see cref="ModelOptions.DecodeLaunches"/>, <see cref="ModelOptions.MatvecLoads"/>) come to on this accelerator and schedule: said either way, never dropped silently.</summary>
    internal static IEnumerable<string> MatvecOptionNotices(ModelOptions options, DenseSchedule schedule, ILGPU.Runtime.Accelerator accelerator)
    {
        bool cuda = accelerator.AcceleratorType == ILGPU.Runtime.AcceleratorType.Cuda;
        if (options.WeightPrefetch is { } prefetch)
            yield return cuda && schedule == DenseSchedule.Warp ? $"decode matvecs pull weights into L2 ahead of their loads ({prefetch})"
                : "--prefetch-weights has no effect: the L2 prefetch is a CUDA instruction of the warp schedule's matvecs";
        if (options.FusedMatvecLaunch is { } launch)
            yield return schedule == DenseSchedule.Warp ? $"fused decode matvec in groups of {launch.WarpsPerGroup} warps" + (launch.MaxRegisters > 0 && cuda ? $", at most {launch.MaxRegisters} registers" : "")
                : $"--fused-matvec-launch has no effect: the {schedule.ToString().ToLowerInvariant()} dense schedule has no fused warp matvec";
        if (options.DecodeLaunches != Kernels.Dense.DecodeLaunches.PerStage)
            yield return schedule != DenseSchedule.Warp
                ? $"--decode-launches {Kernels.Dense.DecodeLaunchNames.Name(options.DecodeLaunches)} has no effect: the {schedule.ToString().ToLowerInvariant()} dense schedule has no warp matvecs to sync"
                : options.DecodeLaunches switch
                {
                    Kernels.Dense.DecodeLaunches.GridSyncedLayers =>
                        "decode steps of up to 4 tokens launch each layer (its attention, o_proj, MLP and the next layer's qkv) as one grid-synced kernel",
                    Kernels.Dense.DecodeLaunches.PerStageProgrammatic => Accelerators.ProgrammaticLauncher.For(accelerator, out var whyNot) is null && cuda
                        ? $"--decode-launches per-stage-pdl: {whyNot}; the per-stage launches run instead"
                        : "the decode matvecs load their first weights, and the decode attention its K/V rows, then wait for the kernel before them (programmatic dependent launch" +
                          (cuda ? ")" : ": on the CPU accelerator the stream orders them anyway)"),
                    Kernels.Dense.DecodeLaunches.GridSyncedTailsPreloaded =>
                        "decode steps of up to 4 tokens launch each layer's o_proj, MLP and the next layer's qkv as one grid-synced kernel, each stage's first weights loaded before its barrier",
                    _ => "decode steps of up to 4 tokens launch each layer's o_proj, MLP and the next layer's qkv as one grid-synced kernel",
                };
        if (options.MatvecLoads != Kernels.Dense.MatvecLoads.Registers)
            yield return schedule != DenseSchedule.Warp
                ? $"--matvec-loads {Kernels.Dense.MatvecLoadNames.Name(options.MatvecLoads)} has no effect: the {schedule.ToString().ToLowerInvariant()} dense schedule has no warp matvecs"
                : cuda ? "the per-stage decode matvecs stream their weights through shared memory by asynchronous copies"
                : "the per-stage decode matvecs stream their weights through shared memory (stored by each lane: the CPU accelerator has no asynchronous copies)";
    }

    /// <summary>Why a runner on <paramref name="schedule"/> with <paramref name="weights"/> has no tensor-core path to turn
    /// off; null where it has one (the warp schedule, f16 weights).</summary>
    internal static string? NoTensorCorePath(DenseSchedule schedule, WeightDtype weights) =>
        schedule != DenseSchedule.Warp ? $"the {schedule.ToString().ToLowerInvariant()} dense schedule has no tensor-core path"
        : weights != WeightDtype.F16 ? $"the tensor-core path takes f16 weights, not {weights.ToString().ToLowerInvariant()}"
        : null;

    // ILGPU compiles a kernel at its first launch: a two-token prefill and a decode step launch them all.
    private static void WarmUp(IModelRunner runner, IProgress<ModelLoadProgress> progress)
    {
        progress.Report(new ModelLoadProgress("Compiling kernels", 0, 2, "prefill"));
        int blocks = Math.Min(runner.NumBlocks, (3 + runner.BlockSize - 1) / runner.BlockSize);
        if (blocks * runner.BlockSize < 3 || runner.MaxSeqLen < 3)
            return;
        var table = Enumerable.Range(0, blocks).ToArray();
        runner.Execute(StepBatch.Of(new SequenceChunk(-1, [0, 0], 0, table, WantLogits: true)));
        progress.Report(new ModelLoadProgress("Compiling kernels", 1, 2, "decode"));
        runner.Execute(StepBatch.Of(new SequenceChunk(-1, [0], 2, table, WantLogits: true)));
        progress.Report(new ModelLoadProgress("Compiling kernels", 2, 2));
    }

    // Room for max-batch-size sequences of max_seq_len tokens (pass --kv-blocks to size it for a big model).
    private static int DefaultKvBlocks(int maxBatchSize, int maxSeqLen, int blockSize) =>
        Math.Max(64, maxBatchSize * ((maxSeqLen + blockSize - 1) / blockSize));

    // A checkpoint or tokenizer that cannot be read is bad input (exit code 2), not a crash.
    private static T BadInput<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (e is CheckpointException or InvalidDataException or NotSupportedException)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>A runner that also owns the accelerator it runs on.</summary>
    private sealed class OwningModelRunner(IModelRunner inner, IDisposable owned) : IModelRunner
    {
        public int BlockSize => inner.BlockSize;

        public int NumBlocks => inner.NumBlocks;

        public int VocabSize => inner.VocabSize;

        public int MaxSeqLen => inner.MaxSeqLen;

        public float[]?[] Execute(StepBatch batch) => inner.Execute(batch);

        public StepResult Run(StepBatch batch) => inner.Run(batch);

        public bool ReturnsAllLogits => inner.ReturnsAllLogits;

        public void Dispose()
        {
            inner.Dispose();
            owned.Dispose();
        }
    }
}
