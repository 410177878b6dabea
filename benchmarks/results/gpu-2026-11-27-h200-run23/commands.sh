#!/bin/bash
# What the offline work since the last GPU run (run 22) waits to have measured, in one device call of 5–9
# minutes (run it with timeout_s 600), from the repository root after benchmarks/gpu/pack.sh (carry .gpu). Outputs go to $OUT:
#   1. selftest.txt   `si selftest --device cuda` for the two preset shapes: the shorter address arithmetic of the
#                     decodes and prefills (shifts and masks) must not change a result; and `--set dense`: the matvecs,
#                     fused norm projections (groups of 4, 2 and 1 warps, the L2 prefetch at end and start) and batched
#                     projections against float64, each a sum crossing the warp in one shuffle per level (b4355d0),
#                     first time on a GPU, each warp pulling its own rows into L2 (OwnRowPrefetch), and a layer's tail
#                     as one grid-synced launch (17 groups meeting at grid barriers) against float64 (16
#                     checks in all); generate-variants.txt: the bundled model with the L2 prefetch (end, start, own
#                     rows), the capped fused matvec, grid-synced layer tails (44 groups), whole grid-synced layers
#                     (the decode attention too) and --stage-times prints the reference text (and the last, its decode
#                     step's device time stage by stage).
#   2. decode.txt     Llama-3-8B decode, L=4096, B=1 and 32, with --tensor-core-decode --stage-times: the decodes' time
#                     after the address arithmetic (against run 20: 10.8 and 144.9 us), and where a group's time goes
#                     (DecodeStageSummary: blocks, scores, softmax, P·V, ticket, combine, exit), unclocked and clocked lines side by side.
#   3. contexts.txt   the B=1 decode at L = 16, 256, 1024 (one partition without a combine, two with, eight);
#      tinyllama-decode.txt  TinyLlama's B=1 decode at L=256, clocked (its batch-1 step's attention);
#      waves.txt      B=32 at L = 3840 and 4352: the large-batch grid in 9.7 and 11.0 waves against 4096's 10.3.
#   4. report-e2e.md  `report --sections copy,e2e --decode-launches grid-synced-tails,grid-synced-layers
#                     --prefetch-weights rows --stage-times`
#      and report-e2e-more.md (in the time left) `--sections e2e --prefetch-weights 8,start:8 --fused-matvec-launch
#                     2:88 --matvec-depths 4,2,4`: both
#                     preset models at batch 1/16/64, then at batch 1 with each layer's o_proj, MLP and the next layer's
#                     qkv as one launch whose groups meet at grid barriers (DecodeLaunches.GridSyncedTails: 2 launches
#                     per layer instead of 5; TinyLlama's step 48 launches instead of 113), and with the decode
#                     attention in that launch too (GridSyncedLayers: 1 per layer, 26 a step; ptxas: TinyLlama's layer
#                     kernel 116 registers, 2 groups of 256 threads per SM; Llama-3-8B's 184, 2 of 128), each alone and
#                     with own rows (next);
#                     with each decode matvec warp pulling its own rows past the first load step into L2 before
#                     loading it (rows: one HBM round trip per row instead of one per step, at 100-102 registers
#                     instead of 96, i.e. 4 groups per SM instead of 5); with the next projection's weights pulled at
#                     the grid's end or start (L2Prefetch), and with the fused matvec in groups of 2 warps at 88 registers
#                     (FusedMatvecLaunch: 22 warps per SM, TinyLlama's gate|up in 2 waves instead of 3), and with
#                     the qkv matvec alone at depth 4 (MatvecDepth.Qkv: half the round trips, still one wave for TinyLlama).
#                     --stage-times (first report): each batch-1 row run again with a CUDA event before every stage of
#                     its decode steps (StageTimeline): qkv, attention, o_proj, gate|up, down per layer (grid-synced
#                     rows: qkv once, then per layer attention and "o_proj+mlp+next qkv", or the whole layer), LM head, argmax, in the step
#                     as it runs, caches warm, so where the launch gaps and the own-row prefetch save shows
#                     (Nsight Compute, run 12, flushes L2 between kernels and cannot).
#                     Every row carries b4355d0's reductions (a lane's sums in one shuffle per level: ptxas gives the
#                     same registers and 8–64 fewer SASS instructions per matvec), unmeasured until then.
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

for set in Llama3_8B TinyLlama_1_1B dense; do
  timeout 60 $SI selftest --device cuda --set $set
done > "$OUT/selftest.txt" 2>&1
grep -h "passed\|failed\|FAIL" "$OUT/selftest.txt" | tail -6
# The bundled model with every decode matvec pulling the next weights into L2 (start and end): the reference text.
# Each warp pulling its own rows into L2 first, the fused matvec in groups of 2 warps capped at 88 registers, and each
# layer's tail (o_proj, MLP, next qkv) as one grid-synced launch, and the whole layer so.
for flags in "--prefetch-weights 1" "--prefetch-weights start:1" "--prefetch-weights rows" "--fused-matvec-launch 2:88" "--decode-launches grid-synced-tails" "--decode-launches grid-synced-layers" "--stage-times"; do
  timeout 60 $SI generate --model models/docstrings-bf16 --prompt "This module provides" --max-new-tokens 32 --device cuda $flags
done > "$OUT/generate-variants.txt" 2>&1
echo "generate variants: $(grep -c "regular expression matching operations similar to those found in Perl" "$OUT/generate-variants.txt") of 7 print the reference"
grep -A10 "device time of a decode step by stage" "$OUT/generate-variants.txt" | head -11
echo "selftest done at $(elapsed) s"

L3="--heads 32 --kv-heads 8 --head-dim 128 --sets Llama3_8B --prefill-tokens 0"
# One invocation per table, every variant compiled once for all its batches and contexts.
timeout 150 $SI attention-bench --device cuda $L3 --batch 1,32 --context 4096 --tensor-core-decode --stage-times > "$OUT/decode.txt" 2>&1
grep -h "us/call\|^    " "$OUT/decode.txt"
timeout 90 $SI attention-bench --device cuda $L3 --batch 1 --context 16,256,1024 --tensor-core-decode > "$OUT/contexts.txt" 2>&1
grep -h "us/call" "$OUT/contexts.txt"
# TinyLlama's decode as its batch-1 step runs it (contexts of 128-256 tokens: one partition, no combine), clocked: 22 of
# these are ~11% of its step (run 12: 6.6 us each).
timeout 90 $SI attention-bench --device cuda --heads 32 --kv-heads 4 --head-dim 64 --sets TinyLlama_1_1B --prefill-tokens 0 \
  --batch 1 --context 256 --tensor-core-decode --stage-times > "$OUT/tinyllama-decode.txt" 2>&1
grep -h "us/call\|^    " "$OUT/tinyllama-decode.txt"
# B=32 at contexts whose large-batch grids are whole waves or not (3 groups of 128 threads per SM, 396 on 132 SMs;
# 8 head groups per partition of 256): L=3840 9.7 waves, 4096 10.3, 4352 11.0. If 4352 reads notably faster per byte,
# partitions sized to fill the last wave would pay.
timeout 90 $SI attention-bench --device cuda $L3 --batch 32 --context 3840,4352 --tensor-core-decode > "$OUT/waves.txt" 2>&1
grep -h "us/call" "$OUT/waves.txt"
echo "attention benches done at $(elapsed) s"

# Two reports, most telling first: a variant row reloads its model (Llama-3-8B ~17 s, TinyLlama ~7 s) and --stage-times
# reruns each batch-1 row, so one report of every variant could run past the time left. The first: grid-synced layer
# tails and whole layers and own-row prefetch, with the stage tables; the second, in what time is left: stop 18's variants.
left=$(( 560 - $(elapsed) )); [ $left -gt 60 ] || left=60
first=$(( left * 3 / 5 )); [ $first -gt 60 ] || first=60
timeout $first /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --time-budget $(( first - 20 )) \
  --sections copy,e2e --decode-launches grid-synced-tails,grid-synced-layers --prefetch-weights rows --stage-times --out "$OUT/report-e2e.md" > "$OUT/report-e2e.log" 2>&1
echo "report rc $? at $(elapsed) s"
grep -h "batch .*: decode" "$OUT/report-e2e.log" | cut -c1-160
grep -h "\[stage times\]" "$OUT/report-e2e.log" | sed 's/.*device: /  stages: /' | cut -c1-300
left=$(( 570 - $(elapsed) ))
if [ $left -gt 45 ]; then
  timeout $left /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --time-budget $(( left - 15 )) \
    --sections e2e --prefetch-weights 8,start:8 --fused-matvec-launch 2:88 --matvec-depths 4,2,4 --out "$OUT/report-e2e-more.md" > "$OUT/report-e2e-more.log" 2>&1
  echo "second report rc $? at $(elapsed) s"
  grep -h "batch 1: decode" "$OUT/report-e2e-more.log" | cut -c1-160
fi
