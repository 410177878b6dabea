#!/bin/bash
# Runs the GPU benchmarks on the GPU machine, from the repository root, within 8 minutes:
#   1. unpacks the .NET runtime packed by benchmarks/gpu/pack.sh (.gpu/dotnet.tar.xz) to /tmp/dn,
#   2. prints the card and driver (nvidia-smi),
#   3. `si selftest --device cuda` when the si CLI is packed (.gpu/si/si.dll),
#   4. PyTorch anchors on the same card (benchmarks/gpu/pytorch_anchors.py),
#   5. the benchmark report: `report --device cuda` → $OUT/report.md (rewritten after every case, so a
#      run cut short still leaves what it measured).
# $OUT is set by the GPU harness; it defaults to ./benchmarks/results/. Extra arguments go to the report
# (e.g. --quick, or --sections kernels).
#
#   benchmarks/gpu/run.sh [report args...]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-benchmarks/results}
mkdir -p "$OUT"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }

bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_gcServer=0
DOTNET=/tmp/dn/dotnet

echo "== card"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/card.csv"
else
  echo "nvidia-smi not found" | tee "$OUT/card.csv"
fi

status=0
if [ -f .gpu/si/si.dll ]; then
  echo "== si selftest --device cuda ($(elapsed) s)"
  timeout 60 "$DOTNET" .gpu/si/si.dll selftest --device cuda 2>&1 | tee "$OUT/selftest.log"
  rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || { echo "si selftest exited with $rc"; status=1; }
fi

echo "== PyTorch anchors ($(elapsed) s)"
timeout 75 python3 benchmarks/gpu/pytorch_anchors.py 2>&1 | tee "$OUT/anchors.md"
rc=${PIPESTATUS[0]}; [ "$rc" -eq 0 ] || echo "pytorch_anchors.py exited with $rc (no PyTorch on this machine?)"

# Whatever is left of the 8 minutes goes to the report. Its --time-budget stops starting cases a minute
# before the hard timeout (a case already running, e.g. an end-to-end run, finishes), so every section gets
# its share and the report is complete, not cut off.
budget=$(( 470 - $(elapsed) ))
echo "== report --device cuda, $budget s left ($(elapsed) s)"
timeout "$budget" "$DOTNET" .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --out "$OUT/report.md" \
  --time-budget $(( budget - 60 )) "$@" 2>&1 | tee "$OUT/report.log"
rc=${PIPESTATUS[0]}
case $rc in
  0) ;;
  124) echo "report: out of time after $budget s; $OUT/report.md holds what it measured"; status=1 ;;
  1) echo "report: some cases failed (listed under Failures in $OUT/report.md)"; status=1 ;;
  *) echo "report exited with $rc before measuring (see $OUT/report.log)"; status=1 ;;
esac
echo "== done in $(elapsed) s: $OUT/report.md"
exit $status
