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
});
return await app.RunAsync(args);
