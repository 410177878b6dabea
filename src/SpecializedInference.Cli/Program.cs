using SpecializedInference.Cli.Commands;
using Spectre.Console.Cli;

var app = new CommandApp();
app.Configure(config =>
{
    config.SetApplicationName("si");
    config.AddCommand<EnginesCommand>("engines")
        .WithDescription("List the kernel sets generated from configs/*.json at build time.")
        .WithExample("engines")
        .WithExample("engines", "--json");
    config.AddCommand<SelftestCommand>("selftest")
        .WithDescription("Run every kernel set's KV write, prefill and decode against the float64 reference on the device.")
        .WithExample("selftest")
        .WithExample("selftest", "--device", "cpu");
    config.AddCommand<AttentionBenchCommand>("attention-bench")
        .WithDescription("Time decode and prefill attention (device time), generated vs generic kernels.")
        .WithExample("attention-bench", "--device", "cuda", "--context", "4096");
});
return await app.RunAsync(args);
