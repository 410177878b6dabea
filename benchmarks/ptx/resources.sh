#!/usr/bin/env bash
# Registers, spills, shared memory and SASS instructions of every GPU kernel for sm_90, without a GPU: compiles the
# kernels to PTX with ILGPU (PtxCompilationTests, SI_PTX_DUMP) and assembles each with ptxas from
# benchmarks/ptx/install-ptxas.sh. Prints a Markdown table. A 128-thread group needs at most 168 registers per
# thread for three groups per SM, 128 for four (64K registers per SM).
#   bash benchmarks/ptx/resources.sh [folder for the PTX, default a temporary one]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bash "$root/benchmarks/ptx/install-ptxas.sh" >/dev/null
bin="$root/.tools/cuda/bin"
ptx="${1:-$(mktemp -d)}"
mkdir -p "$ptx"
SI_PTX_DUMP="$ptx" dotnet test "$root/tests/SpecializedInference.Tests" -c Release \
  --filter "FullyQualifiedName~PtxCompilationTests" >"$ptx/test.log" 2>&1 || { tail -40 "$ptx/test.log"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "| kernel | registers | spill bytes | shared bytes | SASS instructions |"
echo "|---|---:|---:|---:|---:|"
for f in "$ptx"/*.ptx; do
  sed -e 's/^\.version .*/.version 7.8/' "$f" >"$work/k.ptx"
  report=$("$bin/ptxas" -v --gpu-name sm_90 "$work/k.ptx" -o "$work/k.cubin" 2>&1)
  regs=$(grep -oE "Used [0-9]+ registers" <<<"$report" | grep -oE "[0-9]+")
  spill=$(grep -oE "[0-9]+ bytes spill stores" <<<"$report" | grep -oE "^[0-9]+" || echo 0)
  smem=$(grep -oE "[0-9]+ bytes smem" <<<"$report" | grep -oE "^[0-9]+" || echo 0)
  sass=$("$bin/cuobjdump" -sass "$work/k.cubin" | grep -cE "^\s+/\*[0-9a-f]{4,}\*/")
  echo "| $(basename "$f" .ptx) | $regs | $spill | $smem | $sass |"
done
