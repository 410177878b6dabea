return await SpecializedInference.Cli.CliApp.RunAsync(args);
