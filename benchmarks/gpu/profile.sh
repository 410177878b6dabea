#!/bin/bash
# Nsight Compute on the generated attention kernels, on the GPU machine, after benchmarks/gpu/run.sh has unpacked
# .gpu/ (the .NET runtime in /tmp/dn and `si` in .gpu/si/). For each of the generated Decode and Prefill kernels
# of one kernel set it profiles the first launch of `si attention-bench` and writes what explains its time:
# duration, DRAM and compute throughput against peak, registers per thread, occupancy (theoretical and achieved)
# and where warps stall. Each report goes to $OUT/ncu-<kernel>.txt (default: benchmarks/results/).
# PROFILE_KERNELS (default "Decode Prefill") picks the kernels, PROFILE_BATCH (default 1) the decode batch; the shape is the set's (PROFILE_SHAPE for a set not listed below).
#
#   benchmarks/gpu/profile.sh [kernel set = Llama3_8B] [context = 4096]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results}
set_name=${1:-Llama3_8B}
context=${2:-4096}
mkdir -p "$OUT"

ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2> /dev/null | head -1)
if [ -z "$ncu" ]; then
  echo "profile.sh: ncu (Nsight Compute) not found" >&2
  exit 2
fi
bash benchmarks/gpu/unpack.sh || exit 2
batch=${PROFILE_BATCH:-1}
case "$set_name" in   # attention-bench refuses a set on another shape than its own
  Llama3_8B) shape=${PROFILE_SHAPE:-"--heads 32 --kv-heads 8 --head-dim 128"} ;;
  TinyLlama_1_1B) shape=${PROFILE_SHAPE:-"--heads 32 --kv-heads 4 --head-dim 64"} ;;
  Llama2_13B) shape=${PROFILE_SHAPE:-"--heads 40 --kv-heads 40 --head-dim 128"} ;;
  *) shape=${PROFILE_SHAPE:?"profile.sh: set PROFILE_SHAPE='--heads H --kv-heads K --head-dim D' for $set_name"} ;;
esac
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

status=0
for kernel in ${PROFILE_KERNELS:-Decode Prefill}; do
  # ILGPU names a kernel's PTX entry Kernel_<method>; the generated set's launch comes first (--sets: no generic runs).
  prefill_tokens=0
  [ "$kernel" = Prefill ] && prefill_tokens=1024
  [ "$kernel" = Decode ] && [ "$batch" -gt 1 ] && suffix="-b$batch" || suffix=""
  echo "== ncu $set_name $kernel (context $context, batch $([ "$kernel" = Decode ] && echo "$batch" || echo 1))"
  timeout 120 "$ncu" --target-processes all -k "regex:^Kernel_${kernel}\$" --launch-count 1 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section SchedulerStats \
    /tmp/dn/dotnet .gpu/si/si.dll attention-bench --device cuda --sets "$set_name" $shape --context "$context" \
    --batch "$([ "$kernel" = Decode ] && echo "$batch" || echo 1)" --prefill-tokens "$prefill_tokens" --iterations 2 \
    > "$OUT/ncu-$kernel$suffix.txt" 2>&1
  rc=$?
  [ $rc -eq 0 ] || { echo "ncu for $kernel exited with $rc"; status=1; }
  grep -E "Duration|DRAM Throughput|Memory Throughput|Compute \(SM\) Throughput|Registers Per Thread|Achieved Occupancy|Theoretical Occupancy|Block Limit|Shared Memory Configuration Size|Issued Warp|No Eligible|One or More Eligible|Grid Size|Block Size" "$OUT/ncu-$kernel$suffix.txt"
done
exit $status
