#!/bin/bash
# Packs what the GPU machine (no .NET there) needs to run the benchmarks and the `si` CLI:
#   .gpu/dotnet.tar.xz   the .NET runtime of this machine (gpu-pack.sh makes it once, ~26 MB)
#   .gpu/app/            `dotnet publish` of benchmarks/SpecializedInference.Benchmarks
#   .gpu/si/             `dotnet publish` of src/SpecializedInference.Cli (for `si selftest --device cuda`)
#   .gpu/aspnet.tar.xz   the ASP.NET Core shared framework (si hosts the HTTP server)
# app/ and si/ travel compressed as .gpu/apps.tar.xz; run.sh unpacks everything.
# and checks the folder stays under the device transfer limit (60 MB here; the limit is 64 MiB).
#
#   benchmarks/gpu/pack.sh [out-dir=.gpu]        # from anywhere inside the repository
#
# gpu-pack.sh lives in the lead's ../shared/tools/; set GPU_PACK to point elsewhere.
set -euo pipefail
root=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
cd "$root"
out=${1:-.gpu}
pack=${GPU_PACK:-}
if [ -z "$pack" ]; then
  for candidate in ../shared/tools/gpu-pack.sh /work/shared/tools/gpu-pack.sh; do
    if [ -x "$candidate" ]; then pack=$candidate; break; fi
  done
fi
[ -n "$pack" ] && [ -x "$pack" ] || { echo "gpu-pack.sh not found (looked in ../shared/tools and /work/shared/tools); set GPU_PACK=/path/to/gpu-pack.sh" >&2; exit 2; }

"$pack" benchmarks/SpecializedInference.Benchmarks/SpecializedInference.Benchmarks.csproj "$out"

rm -rf "$out/si"
# English resources only: Spectre.Console's satellite assemblies are not needed on the GPU machine.
dotnet publish src/SpecializedInference.Cli/SpecializedInference.Cli.csproj -c Release -o "$out/si" --nologo -v q \
  -p:SatelliteResourceLanguages=en
du -sh "$out/si"

# si hosts the HTTP server, so it needs the ASP.NET Core shared framework, which gpu-pack.sh does not pack.
dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
(cd "$dotnet_root" && tar cJf - shared/Microsoft.AspNetCore.App) > "$out/aspnet.tar.xz"

# The transfer limit counts bytes: ship the published programs compressed (run.sh unpacks them).
tar cJf "$out/apps.tar.xz" -C "$out" app si && rm -rf "$out/app" "$out/si"
ls -la "$out"

limit=$((60 * 1000 * 1000))
total=$(du -sb "$out" | cut -f1)
echo "packed $out: $((total / 1000 / 1000)) MB (limit 60 MB)"
if [ "$total" -gt "$limit" ]; then
  echo "error: $out is $total bytes, over the 60 MB the device transfer allows" >&2
  exit 1
fi
