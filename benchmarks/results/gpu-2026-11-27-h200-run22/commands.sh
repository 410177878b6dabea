#!/bin/bash
# Run 22: the committed state (large-batch decode, fence.acq_rel ticket): selftest, decode B=1/32, e2e.
set -u
bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
SI="/tmp/dn/dotnet .gpu/si/si.dll"
start=$(date +%s)
timeout 30 $SI selftest --device cuda --set Llama3_8B > $OUT/selftest.txt 2>&1; tail -1 $OUT/selftest.txt
L3="--heads 32 --kv-heads 8 --head-dim 128"
for b in 1 32; do
  timeout 30 $SI attention-bench --device cuda $L3 --sets Llama3_8B --batch $b --context 4096 --prefill-tokens 0 --tensor-core-decode
done > $OUT/decode.txt 2>&1
grep -h "us/call" $OUT/decode.txt
echo "benches done $(( $(date +%s) - start )) s"
timeout $(( 200 - ($(date +%s) - start) )) /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --sections copy,e2e --out $OUT/report-e2e.md > $OUT/report-e2e.log 2>&1
echo "report rc $? at $(( $(date +%s) - start )) s"
grep -h "batch .*: decode" $OUT/report-e2e.log | cut -c1-200
