#!/bin/bash
# What the work since run 23 waits to have measured, in one device call of ~6 minutes (run it with timeout_s 450), from
# the repository root after benchmarks/gpu/pack.sh (carry .gpu). Outputs go to $OUT:
#   1. selftest.txt   `si selftest --device cuda --set dense`: 17 checks, the new one a layer tail whose warps pull their
#                     own rows and, before each grid barrier, their next stage's first rows into L2 (NextStagePrefetch)
#                     against float64; generate-variants.txt: the bundled model at the new default depth (4,2,4), and
#                     with grid-synced tails pulling the next stage, and whole layers pulling own rows and the next stage,
#                     must print the reference text.
#   2. report-e2e.md  `report --sections copy,e2e --decode-launches grid-synced-tails --prefetch-weights stage
#                     --matvec-depths "4,2;8,2,4;8,2,8"`: both preset models at batch 1/16/64 at the new default depth
#                     (the qkv pair at 4 chunks per lane per step, run 23's win: 5.19 ms against 5.61 for Llama-3-8B,
#                     1.28 against 1.33 for TinyLlama), then at batch 1 at run 23's default (4,2) again and at deeper
#                     o_proj/down (8: TinyLlama's o_proj row in one step, down's in 3 instead of 6) and qkv (8: its row
#                     pair in one step); then grid-synced tails at each of those depths, alone and pulling each warp's
#                     first rows of the next stage into L2 before every barrier (the SM has nothing in flight while it
#                     waits there; run 23: TinyLlama's tail ran at ~1.1 TB/s, 50 µs a layer). Tail registers (ptxas sm_90):
#                     100 at 4,2 (one group of 16 warps per SM), 168 at 4,2,4 (3 groups of 4 warps).
# Afterwards: move the outputs to benchmarks/results/gpu-<date>-<card>-run<N>/ with this script as commands.sh.
#
#   OUT=<folder> bash benchmarks/gpu/pending.sh
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results/pending}
mkdir -p "$OUT"
bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
SI="/tmp/dn/dotnet .gpu/si/si.dll"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

timeout 60 $SI selftest --device cuda --set dense > "$OUT/selftest.txt" 2>&1
grep -h "passed\|failed\|FAIL" "$OUT/selftest.txt" | tail -4
for flags in "" "--decode-launches grid-synced-tails --prefetch-weights stage" "--decode-launches grid-synced-layers --prefetch-weights stage+rows"; do
  timeout 60 $SI generate --model models/docstrings-bf16 --prompt "This module provides" --max-new-tokens 32 --device cuda $flags
done > "$OUT/generate-variants.txt" 2>&1
echo "generate variants: $(grep -c "regular expression matching operations similar to those found in Perl" "$OUT/generate-variants.txt") of 3 print the reference"
echo "selftest done at $(elapsed) s"

left=$(( 400 - $(elapsed) )); [ $left -gt 60 ] || left=60
timeout $left /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --time-budget $(( left - 25 )) \
  --sections copy,e2e --decode-launches grid-synced-tails --prefetch-weights stage --matvec-depths "4,2;8,2,4;8,2,8" \
  --out "$OUT/report-e2e.md" > "$OUT/report-e2e.log" 2>&1
echo "report rc $? at $(elapsed) s"
grep -h "batch .*: decode" "$OUT/report-e2e.log" | sed 's/, prefill.*decode step/; step/' | cut -c1-150
