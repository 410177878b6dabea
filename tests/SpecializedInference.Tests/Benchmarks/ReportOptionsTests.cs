using SpecializedInference.Accelerators;
using SpecializedInference.Benchmarks.Report;
using SpecializedInference.Kernels.Dense;

namespace SpecializedInference.Tests.Benchmarks;

/// <summary>The report's command line: what the pending GPU run and the next one rely on (no device needed).</summary>
public sealed class ReportOptionsTests
{
    /// <summary>The programmatic-launch options parse as the pending run gives them, and --stream picks the CUDA stream
    /// every run goes to; the legacy stream unless asked.</summary>
    [Fact]
    public void ProgrammaticLaunchOptionsAndTheStreamParse()
    {
        var options = ReportOptions.Parse(["--device", "cuda", "--sections", "copy,e2e", "--matvec-loads", "async-copy",
            "--decode-launches", "per-stage-pdl,grid-synced-tails", "--stream", "non-blocking"]);
        Assert.Equal([MatvecLoads.AsyncCopy], options.MatvecLoads);
        Assert.Equal([DecodeLaunches.PerStageProgrammatic, DecodeLaunches.GridSyncedTails], options.DecodeLaunches);
        Assert.Equal(DeviceStream.NonBlocking, options.Stream);
        Assert.Equal(DeviceStream.Legacy, ReportOptions.Parse(["--device", "cuda"]).Stream);
    }

    /// <summary>--cuda-graphs adds the graph rows and puts every run on the non-blocking stream, which graphs need, unless
    /// --stream says otherwise.</summary>
    [Fact]
    public void CudaGraphsImplyTheNonBlockingStream()
    {
        var options = ReportOptions.Parse(["--device", "cuda", "--cuda-graphs"]);
        Assert.True(options.CudaGraphs);
        Assert.Equal(DeviceStream.NonBlocking, options.Stream);
        Assert.Equal(DeviceStream.Legacy, ReportOptions.Parse(["--cuda-graphs", "--stream", "legacy"]).Stream);
        Assert.False(ReportOptions.Parse(["--device", "cuda"]).CudaGraphs);
        Assert.Equal([1, 16], ReportOptions.Parse(["--batches", "1,16"]).Batches);
        Assert.Equal("--batches '1,0': expected positive batch sizes, comma-separated.",
            Assert.Throws<ArgumentException>(() => ReportOptions.Parse(["--batches", "1,0"])).Message);
    }

    [Fact]
    public void AnUnknownStreamIsAUsageError()
    {
        var e = Assert.Throws<ArgumentException>(() => ReportOptions.Parse(["--stream", "own"]));
        Assert.Equal("--stream 'own': expected legacy or non-blocking", e.Message);
    }
}
