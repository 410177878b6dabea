#!/bin/bash
# Model runner GPU check (pack: dotnet publish src/SpecializedInference.Cli -c Release -o .gpu/model/si; copy this
# folder to .gpu/model/; carry .gpu/dotnet.tar.xz and .gpu/model): README command on CUDA, HF reference check on CUDA, decode/prefill benchmark on a
# random Llama-3-8B-shaped checkpoint (8 layers, f16).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
start=$(date +%s); el() { echo "[$(( $(date +%s) - start )) s]"; }
mkdir -p /tmp/dn && tar xJf .gpu/dotnet.tar.xz -C /tmp/dn || exit 2
export DOTNET_ROOT=/tmp/dn DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
SI="/tmp/dn/dotnet .gpu/model/si/si.dll"
nvidia-smi --query-gpu=name,memory.total,clocks.max.mem --format=csv
echo "== README command, f16, cuda $(el)"
timeout 90 $SI generate --model models/docstrings-bf16 --prompt "This module provides" --max-new-tokens 32 --device cuda 2>&1
echo "== HF reference check, f32, cuda $(el)"
timeout 150 python3 .gpu/model/check.py /tmp/dn/dotnet .gpu/model/si/si.dll 2>&1 | tee "$OUT/check.txt"
echo "== random Llama3-8B-shaped checkpoint, 8 layers $(el)"
timeout 120 $SI make-random-checkpoint --config configs/medium.json --out /tmp/l3 --dtype f16 --layers 8 2>&1
IDS=$(python3 -c "print(','.join(str(3 + (i * 7919) % 128000) for i in range(512)))")
for extra in "" "--generic"; do
  echo "== decode bench $extra: 512-token prompt, 128 new tokens $(el)"
  timeout 120 $SI generate --model /tmp/l3 --prompt-ids "$IDS" --max-new-tokens 128 --ignore-eos --device cuda $extra 2>&1 >/dev/null | tail -3
done
IDS1=$(python3 -c "print(','.join(str(3 + (i * 7919) % 128000) for i in range(16)))")
echo "== decode bench, 16-token prompt, 256 new tokens $(el)"
timeout 100 $SI generate --model /tmp/l3 --prompt-ids "$IDS1" --max-new-tokens 256 --ignore-eos --device cuda 2>&1 >/dev/null | tail -3
echo "== done $(el)"
