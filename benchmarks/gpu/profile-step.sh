#!/bin/bash
# Where a decode step's time goes, kernel by kernel, on the GPU machine: writes a random-weight f16 checkpoint of a
# config (`si make-random-checkpoint`), runs `si generate` on it under Nsight Compute with a few cheap metrics per
# launch (device time, DRAM bytes read and written, grid, block, registers), and leaves the CSV in
# $OUT/step-<config>.csv. On the dev machine, `python3 benchmarks/gpu/step_breakdown.py <csv>` turns it into a table
# per kernel of one decode step: launches, device time, bytes and GB/s. Clocks and caches are left as they run
# (--clock-control none --cache-control none), so the times are a real step's, one kernel at a time.
#
#   bash benchmarks/gpu/profile-step.sh [config = configs/small.json] [layers = all] [new tokens = 3]
# The prompt is 3 tokens, so the run is: a prefill step, then decode steps; each step starts with the embedding.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results}
config=${1:-configs/small.json}
layers=${2:-}
new_tokens=${3:-3}
name=$(basename "$config" .json)
mkdir -p "$OUT"
ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2> /dev/null | head -1)
[ -n "$ncu" ] || { echo "profile-step.sh: ncu (Nsight Compute) not found" >&2; exit 2; }
bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
si=(/tmp/dn/dotnet .gpu/si/si.dll)   # an array, not a function: `timeout` runs programs only

checkpoint=/tmp/si-step-$name
rm -rf "$checkpoint"
echo "== random f16 checkpoint of $config${layers:+ ($layers layers)}"
timeout 120 "${si[@]}" make-random-checkpoint --config "$config" --out "$checkpoint" --dtype f16 ${layers:+--layers "$layers"} \
  || { echo "make-random-checkpoint failed"; exit 1; }
echo "== ncu over si generate ($new_tokens new tokens)"
timeout 240 "$ncu" --target-processes all --csv --print-units base --clock-control none --cache-control none \
  --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__grid_size,launch__block_size,launch__registers_per_thread \
  "${si[@]}" generate --model "$checkpoint" --prompt-ids 5,6,7 --max-new-tokens "$new_tokens" --greedy --ignore-eos --device cuda \
  > "$OUT/step-$name.csv" 2> "$OUT/step-$name.log"
rc=$?
rm -rf "$checkpoint"
echo "ncu exited with $rc; $(grep -c '"gpu__time_duration.sum"' "$OUT/step-$name.csv") launches in $OUT/step-$name.csv"
exit $rc
