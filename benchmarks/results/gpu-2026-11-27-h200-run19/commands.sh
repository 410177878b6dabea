#!/bin/bash
# Run 19: decode partition/warp/register variants (throw-away configs zz-*.json).
set -u
bash benchmarks/gpu/unpack.sh || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
SI="/tmp/dn/dotnet .gpu/si/si.dll"
start=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv | tee $OUT/card.csv
for s in L3_P256W4 L3_P256W8 L3_P512W8 Tiny_P256W4 Tiny_P128W4; do
  timeout 40 $SI selftest --device cuda --set $s 2>&1 | tail -8
done > $OUT/variant-selftest.txt 2>&1
echo "selftest done $(( $(date +%s) - start )) s"
L3="--heads 32 --kv-heads 8 --head-dim 128"
TL="--heads 32 --kv-heads 4 --head-dim 64"
{
for b in 32 1; do
  timeout 60 $SI attention-bench --device cuda $L3 --sets Llama3_8B --batch $b --context 4096 --prefill-tokens 0 --tensor-core-decode --max-registers "decode=0,prefill=0;decode=128,prefill=0;decode=96,prefill=0;decode=80,prefill=0"
  for s in L3_P256W4 L3_P256W8 L3_P512W8; do
    timeout 40 $SI attention-bench --device cuda $L3 --sets $s --batch $b --context 4096 --prefill-tokens 0 --tensor-core-decode
  done
  echo "t=$(( $(date +%s) - start )) s"
done
} > $OUT/decode-variants-l3.txt 2>&1
echo "l3 done $(( $(date +%s) - start )) s"
{
for b in 32 1; do
  for s in TinyLlama_1_1B Tiny_P256W4 Tiny_P128W4; do
    timeout 40 $SI attention-bench --device cuda $TL --sets $s --batch $b --context 4096 --prefill-tokens 0 --tensor-core-decode
  done
done
for s in TinyLlama_1_1B Tiny_P256W4; do
  timeout 40 $SI attention-bench --device cuda $TL --sets $s --batch 1 --context 256 --prefill-tokens 0 --tensor-core-decode
done
} > $OUT/decode-variants-tiny.txt 2>&1
echo "tiny done $(( $(date +%s) - start )) s"
grep -h "us/call\|FAIL\|rror" $OUT/*.txt | head -80
