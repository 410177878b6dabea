#!/bin/bash
# What the offline work since run 25 waits to have measured, in one device call of ~4.5 minutes (run it with timeout_s 360),
# from the repository root after benchmarks/gpu/pack.sh (carry .gpu). Outputs go to $OUT:
#   1. selftest.txt   `si selftest --device cuda --set dense`: 19 checks, the new three the matvec (f16, f32) and the fused
#                     norm projection streaming their rows through shared memory by cp.async (MatvecLoads.AsyncCopy)
#                     against float64, first time on a GPU;
#                     generate-variants.txt: the bundled model with `--matvec-loads async-copy` (every decode matvec: o_proj,
#                     down_proj, the fused qkv, gate|up and LM head) must print the reference text.
#   2. report-e2e.md  `report --sections copy,e2e --matvec-loads async-copy --stage-times`: both preset models at batch
#                     1/16/64, then at batch 1 with each decode matvec keeping 8 chunks per lane (4 KB a warp, 8 KB for a
#                     row pair) in flight as cp.async copies into shared memory, which hold no registers while they fly
#                     (ptxas sm_90: 48 registers + 16 KB for o_proj/down, 79 + 32 KB for the fused pairs, against 96-165
#                     registers with 2-4 chunks in registers). The stage tables show each projection's time in the step
#                     (run 23: TinyLlama's qkv 12 us, o_proj 7.7, gate|up 23, down 12 a layer, 0.9-2.0 TB/s).
#   3. launch-graph.txt  `SpecializedInference.Benchmarks.dll launch-graph`: chains of 100 launches (an empty kernel, an
#                     8 MiB read) one by one through ILGPU against the same chain captured into a CUDA graph (driver
#                     API) and replayed: whether ILGPU's launches can be captured at all, and what a launch costs each
#                     way. It decides whether the decode step should be built around graphs (TinyLlama: ~113 launches).
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

timeout 60 /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll launch-graph > "$OUT/launch-graph.txt" 2>&1
cat "$OUT/launch-graph.txt"
timeout 40 $SI selftest --device cuda --set dense > "$OUT/selftest.txt" 2>&1
grep -h "passed\|failed\|FAIL" "$OUT/selftest.txt" | tail -4
for flags in "" "--matvec-loads async-copy"; do
  timeout 40 $SI generate --model models/docstrings-bf16 --prompt "This module provides" --max-new-tokens 32 --device cuda $flags
done > "$OUT/generate-variants.txt" 2>&1
echo "generate variants: $(grep -c "regular expression matching operations similar to those found in Perl" "$OUT/generate-variants.txt") of 2 print the reference; $(elapsed) s"

left=$(( 300 - $(elapsed) )); [ $left -gt 60 ] || left=60
timeout $left /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --time-budget $(( left - 20 )) \
  --sections copy,e2e --matvec-loads async-copy --stage-times --out "$OUT/report-e2e.md" > "$OUT/report-e2e.log" 2>&1
echo "report rc $? at $(elapsed) s"
grep -h "batch .*: decode" "$OUT/report-e2e.log" | sed 's/, prefill.*decode step/; step/' | cut -c1-150
grep -h "\[stage times\]" "$OUT/report-e2e.log" | sed 's/.*device: /  stages: /' | cut -c1-300
