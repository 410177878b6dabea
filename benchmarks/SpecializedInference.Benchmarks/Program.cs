using SpecializedInference.Benchmarks.Infrastructure;
using SpecializedInference.Benchmarks.Kernels;

using var device = BenchDevice.Create(BenchDevice.Parse(args.Length > 0 ? args[0] : "cpu"));
Console.WriteLine(device.Description);
foreach (long mb in new long[] { 1, 4, 16, 64 })
{
    var r = CopyBandwidth.Measure(device.Accelerator, mb << 20, TimingOptions.Quick);
    Console.WriteLine($"{mb} MB: {r.GBps:F2} GB/s median {r.Timing.MedianSeconds * 1e3:F2} ms first {r.Timing.FirstCallSeconds * 1e3:F1} ms");
}
