#!/bin/bash
# What the work since run 24 waits to have measured, in one device call of ~3.5 minutes (run it with timeout_s 240), from
# the repository root after benchmarks/gpu/pack.sh (carry .gpu). Outputs go to $OUT:
#   1. selftest.txt   `si selftest --device cuda --set dense` (17 checks; the layer tail pulling its next stage's rows
#                     now does so after its group's arrival at each barrier, GridBarrier.Arrive/Wait); generate-variants.txt:
#                     the bundled model with grid-synced tails pulling the next stage prints the reference text.
#   2. report-e2e.md  `report --sections e2e --decode-launches grid-synced-tails --prefetch-weights stage --matvec-depths 4,2`:
#                     run 24 measured the next stage's rows requested before the arrival as a loss (TinyLlama 1.39 ms
#                     against 1.31 at depths 4,2): the arrival's fence waits for the thread's memory operations. Requested
#                     after it, while the others arrive, the wait should overlap them.
#   3. decode.txt     Llama-3-8B decode B=1, L=4096, clocked (--stage-times): the combine stage, whose marks were stale
#                     until the kernels cleared them at entry (run 23 printed a mean of −218 us).
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

timeout 40 $SI selftest --device cuda --set dense > "$OUT/selftest.txt" 2>&1
grep -h "passed\|failed\|FAIL" "$OUT/selftest.txt" | tail -3
timeout 30 $SI generate --model models/docstrings-bf16 --prompt "This module provides" --max-new-tokens 32 --device cuda \
  --decode-launches grid-synced-tails --prefetch-weights stage > "$OUT/generate-variants.txt" 2>&1
echo "generate: $(grep -c "regular expression matching operations similar to those found in Perl" "$OUT/generate-variants.txt") of 1 prints the reference; $(elapsed) s"

timeout 130 /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --time-budget 110 \
  --sections e2e --decode-launches grid-synced-tails --prefetch-weights stage --matvec-depths "4,2" \
  --out "$OUT/report-e2e.md" > "$OUT/report-e2e.log" 2>&1
echo "report rc $? at $(elapsed) s"
grep -h "batch .*: decode" "$OUT/report-e2e.log" | sed 's/, prefill.*decode step/; step/' | cut -c1-120

left=$(( 215 - $(elapsed) ))
if [ $left -gt 20 ]; then
  timeout $left $SI attention-bench --device cuda --heads 32 --kv-heads 8 --head-dim 128 --sets Llama3_8B --prefill-tokens 0 \
    --batch 1 --context 4096 --tensor-core-decode --stage-times > "$OUT/decode.txt" 2>&1
  grep -h "us/call\|^    " "$OUT/decode.txt" | head -40
fi
