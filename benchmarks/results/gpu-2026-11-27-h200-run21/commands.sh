#!/bin/bash
# Run 21: large-batch decode variants (throw-away configs zz-lb-*.json) and the committed state's quick report.
set -u
bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
SI="/tmp/dn/dotnet .gpu/si/si.dll"
start=$(date +%s)
L3="--heads 32 --kv-heads 8 --head-dim 128"
{
timeout 50 $SI attention-bench --device cuda $L3 --sets Llama3_8B --batch 32 --context 4096 --prefill-tokens 0 --tensor-core-decode --max-registers "decode=0;decode=128"
for s in L3_LB_P512W4 L3_LB_P256W2 L3_LB_P384W4; do
  timeout 40 $SI selftest --device cuda --set $s 2>&1 | grep -v " ok"
  timeout 40 $SI attention-bench --device cuda $L3 --sets $s --batch 32 --context 4096 --prefill-tokens 0 --tensor-core-decode
done
} > $OUT/large-batch-variants.txt 2>&1
echo "variants done $(( $(date +%s) - start )) s"
grep -h "us/call\|large-batch\|rror\|FAIL\|passed" $OUT/large-batch-variants.txt | sed 's/registers decode=0,prefill=0, //' | head -40
timeout 150 /tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll report --device cuda --quick --sections copy,kernels,e2e --out $OUT/report-quick.md > $OUT/report-quick.log 2>&1
echo "report rc $? at $(( $(date +%s) - start )) s"
grep -n "decode B=\|share of\|batch 64\|batch 1:" $OUT/report-quick.md $OUT/report-quick.log | head -20
