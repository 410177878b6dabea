#!/bin/bash
# Unpacks what benchmarks/gpu/pack.sh packed, on the GPU machine, from the repository root: the .NET runtime to
# /tmp/dn (with the ASP.NET Core framework when packed) and the published programs to .gpu/app and .gpu/si. Does
# nothing that is already done. run.sh, profile.sh and profile-step.sh call it first.
#
#   bash benchmarks/gpu/unpack.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
if [ -f .gpu/apps.tar.xz ] && [ ! -f .gpu/app/SpecializedInference.Benchmarks.dll ]; then
  tar xJf .gpu/apps.tar.xz -C .gpu || { echo "error: could not unpack .gpu/apps.tar.xz" >&2; exit 2; }
fi
if [ ! -f .gpu/dotnet.tar.xz ] || [ ! -f .gpu/app/SpecializedInference.Benchmarks.dll ]; then
  echo "error: .gpu/ is missing or incomplete; on the dev machine run benchmarks/gpu/pack.sh (needs .gpu/dotnet.tar.xz and .gpu/app/)" >&2
  exit 2
fi
if [ ! -x /tmp/dn/dotnet ]; then
  mkdir -p /tmp/dn && tar xJf .gpu/dotnet.tar.xz -C /tmp/dn || { echo "error: could not unpack .gpu/dotnet.tar.xz" >&2; exit 2; }
fi
if [ -f .gpu/aspnet.tar.xz ] && [ ! -d /tmp/dn/shared/Microsoft.AspNetCore.App ]; then
  tar xJf .gpu/aspnet.tar.xz -C /tmp/dn || { echo "error: could not unpack .gpu/aspnet.tar.xz" >&2; exit 2; }
fi
exit 0
