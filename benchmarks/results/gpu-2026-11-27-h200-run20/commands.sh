#!/bin/bash
# Run 20: the large-batch decode (committed configs), selftest and the batch sweep that sets its threshold.
set -u
bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
SI="/tmp/dn/dotnet .gpu/si/si.dll"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee $OUT/card.csv
for s in Llama3_8B TinyLlama_1_1B; do timeout 60 $SI selftest --device cuda --set $s 2>&1; done > $OUT/selftest.txt 2>&1
echo "selftest done $(( $(date +%s) - start )) s"; grep -c " ok" $OUT/selftest.txt; grep -v " ok" $OUT/selftest.txt | head
L3="--heads 32 --kv-heads 8 --head-dim 128"
TL="--heads 32 --kv-heads 4 --head-dim 64"
for b in 32 16 8 4 1; do
  timeout 50 $SI attention-bench --device cuda $L3 --sets Llama3_8B --batch $b --context 4096 --prefill-tokens 0 --tensor-core-decode
done > $OUT/large-batch-llama3.txt 2>&1
echo "l3 done $(( $(date +%s) - start )) s"
{
for b in 64 32 16 8 1; do
  timeout 50 $SI attention-bench --device cuda $TL --sets TinyLlama_1_1B --batch $b --context 4096 --prefill-tokens 0 --tensor-core-decode
done
for b in 64 16; do
  timeout 50 $SI attention-bench --device cuda $TL --sets TinyLlama_1_1B --batch $b --context 256 --prefill-tokens 0 --tensor-core-decode
done
} > $OUT/large-batch-tinyllama.txt 2>&1
echo "tiny done $(( $(date +%s) - start )) s"
grep -h "us/call\|large-batch\|rror" $OUT/large-batch-*.txt | sed 's/registers decode=0,prefill=0, //' | head -80
