#!/bin/bash
# Register caps of the generated attention kernels, measured: `si attention-bench` on the GPU machine for the
# medium, small and large presets' shapes at batch 1 and 32 (context 4096, prefill of 1024 tokens), each with the
# caps below, then Nsight Compute on the first dense projections of a decode step (registers and occupancy of
# the dense kernels, which take no cap yet). Run after benchmarks/gpu/run.sh has unpacked .gpu/.
# Writes $OUT/register-sweep.txt and $OUT/ncu-dense.txt (default: benchmarks/results/).
#
#   benchmarks/gpu/sweep-registers.sh ["decode=0,prefill=0;decode=168,prefill=128;..."]
# SWEEP_BATCHES (default "1 32"), SWEEP_CONTEXT (4096), SWEEP_PREFILL (prompt tokens at batch 1, 1024),
# SWEEP_ITERATIONS (100), SWEEP_NCU (1; 0 skips the dense ncu) and
# SWEEP_DEVICE (cuda; cpu checks the script itself on a machine without a GPU, at tiny sizes) narrow it.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results}
caps=${1:-"decode=0,prefill=0;decode=128,prefill=96;decode=168,prefill=128;decode=200,prefill=168"}
batches=${SWEEP_BATCHES:-"1 32"}
device=${SWEEP_DEVICE:-cuda}
context=${SWEEP_CONTEXT:-4096}
prefill_tokens=${SWEEP_PREFILL:-1024}
iterations=${SWEEP_ITERATIONS:-100}
mkdir -p "$OUT"
if [ ! -x /tmp/dn/dotnet ] || [ ! -f .gpu/si/si.dll ]; then
  echo "sweep-registers.sh: run benchmarks/gpu/run.sh first (it unpacks the .NET runtime to /tmp/dn and si to .gpu/si)" >&2
  exit 2
fi
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
si=(/tmp/dn/dotnet .gpu/si/si.dll)   # an array, not a function: `timeout` runs programs only

status=0
# name heads kv_heads head_dim
for shape in "Llama3_8B 32 8 128" "TinyLlama_1_1B 32 4 64" "Llama2_13B 40 40 128"; do
  read -r name heads kv dim <<< "$shape"
  for batch in $batches; do
    prefill=$prefill_tokens
    [ "$batch" -gt 1 ] && prefill=0
    echo "== $name batch $batch, caps $caps"
    timeout 120 "${si[@]}" attention-bench --device "$device" --sets "$name" --heads "$heads" --kv-heads "$kv" --head-dim "$dim" \
      --context "$context" --batch "$batch" --prefill-tokens "$prefill" --max-registers "$caps" --iterations "$iterations" 2>&1
    rc=$?
    [ $rc -eq 0 ] || { echo "attention-bench $name batch $batch exited with $rc"; status=1; }
  done
done | tee "$OUT/register-sweep.txt"

ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2> /dev/null | head -1)
if [ -n "$ncu" ] && [ "$device" = cuda ] && [ "${SWEEP_NCU:-1}" = 1 ]; then
  echo "== ncu: the first three dense projections of a one-token step (docstrings-bf16)"
  timeout 120 "$ncu" --target-processes all -k "regex:Linear" --launch-count 3 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    /tmp/dn/dotnet .gpu/si/si.dll generate --model models/docstrings-bf16 --prompt-ids 5 --max-new-tokens 2 \
    --greedy --ignore-eos --device cuda > "$OUT/ncu-dense.txt" 2>&1 || status=1
  grep -E "Kernel_|Duration|DRAM Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|Block Limit Registers|Block Size|Grid Size" "$OUT/ncu-dense.txt"
fi
exit $status
