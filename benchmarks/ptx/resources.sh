#!/usr/bin/env bash
# Registers, spills, shared memory and SASS instructions of every GPU kernel for sm_90, without a GPU: runs
# PtxCompilationTests with SI_PTX_DUMP, which compiles the kernels to PTX with ILGPU, assembles each with ptxas from
# benchmarks/ptx/install-ptxas.sh (tests/.../Kernels/PtxAssembler.cs) and writes a row per kernel. Prints the
# Markdown table, sorted. A 128-thread group needs at most 168 registers per thread for three groups per SM, 128
# for four (64K registers per SM).
#   bash benchmarks/ptx/resources.sh [folder for the PTX, default a temporary one]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/benchmarks/ptx/install-ptxas.sh" >/dev/null
ptx="${1:-$(mktemp -d)}"
mkdir -p "$ptx"
rm -f "$ptx/resources.md"
SI_PTX_DUMP="$ptx" SI_PTXAS="$root/.tools/cuda/bin/ptxas" dotnet test "$root/tests/SpecializedInference.Tests" -c Release \
  --filter "FullyQualifiedName~PtxCompilationTests" >"$ptx/test.log" 2>&1 || { tail -40 "$ptx/test.log"; exit 1; }
echo "| kernel | registers | spill bytes | shared bytes | SASS instructions |"
echo "|---|---:|---:|---:|---:|"
sort "$ptx/resources.md"
