#!/bin/bash
# What the offline work since run 25 waits to have measured, in one device call of ~9 minutes (run it with timeout_s 560),
# from the repository root after benchmarks/gpu/pack.sh (carry .gpu). Outputs go to $OUT; each step gets what is left of
# the call's 500 s (after unpacking), the ones that decide the most first:
#   1. selftest.txt   `si selftest --device cuda --set dense`: 25 checks, first time on a GPU for nine of them: the
#                     matvec (f16, f32) and the fused norm projection streaming their rows through shared memory by
#                     cp.async (MatvecLoads.AsyncCopy), the matvec and the fused projection launched by the engine's own
#                     programmatic launcher (cuLaunchKernelEx, arguments marshalled as ILGPU lays them out, PTX target
#                     raised to sm_90 for griddepcontrol), both at once (the rings filled before the wait), the
#                     grid-synced tail with each stage's first rows preloaded (the plain tail's bits), and the tail
#                     clocked (its marks complete and in order).
#   2. launch-graph.txt  `SpecializedInference.Benchmarks.dll launch-graph`: chains of 100 launches (an empty kernel, an
#                     8 MiB read) one by one through ILGPU against the same chain captured into a CUDA graph (driver
#                     API) and replayed: whether ILGPU's launches can be captured at all, and what a launch costs each way.
#                     Then chains of 8 MiB reads launched by cuLaunchKernelEx with programmatic dependent launch (PDL:
#                     griddepcontrol, the PTX target raised from ILGPU's sm_80 to sm_90 in a module the probe loads),
#                     waiting before their loads and loading before their wait: what a launch boundary costs when the
#                     next kernel starts early, the way a matvec could load its weights before its inputs are ready.
#   3. generate-variants.txt: the bundled model, default, `--matvec-loads async-copy`, `--decode-launches per-stage-pdl`
#                     (every matvec and the decode attention programmatic), both, per-stage-pdl on a non-blocking stream
#                     of the engine's own (`--stream non-blocking`), and the decode steps captured as CUDA graphs and
#                     replayed (`--cuda-graphs`, new: the first time on a GPU), plain and with per-stage-pdl (programmatic
#                     edges in the graph), must print the reference text (7 of 7); the last two say how many steps they
#                     captured and replayed (the key changes where the block table's stride doubles, at 17 and 33 keys
#                     with blocks of 16: 3 captures and ~25 replays of the 31 decode steps).
#   4. selftest-attention.txt `si selftest --device cuda --set Llama3_8B`: its kernels against float64, with the line
#                     "Llama3_8B mma programmatic" new: the tensor-core decode launched programmatically (DecodeLaunch.
#                     Programmatic: K/V loads before its wait, the partition holding the newest key waiting first), and
#                     "Llama3_8B materialized" (prefill-mat, decode-mat; stop 26): the set's own non-flash kernels.
#   5. attention-pdl.txt `si attention-bench --sets Llama3_8B --batch 1,32 --tensor-core-decode --programmatic
#                     --max-registers "decode=0;decode=168;decode=128"`: each decode (CUDA cores, tensor cores, large-batch)
#                     stream-ordered and then launched programmatically, back to back: does a call whose K/V loads start
#                     while the one before finishes (combine, ticket, launch) take the batch-1 decode from 10.0-10.4 us
#                     (1617-1679 GB/s) towards the 5.6 us of 3000 GB/s? Uncapped, the tensor-core decode's 162 registers
#                     fit 3 groups an SM, so two calls' 256 groups cannot all be resident at once; capped at 128 (ptxas
#                     sm_90: 104 bytes spilled a thread) 4 fit, and the next call can start all of its groups. At 168 (new):
#                     the programmatic large-batch decode, 172 registers uncapped (2 groups an SM where its stream-ordered
#                     form's 168 fit 3), fits 3 again with no spill (ptxas sm_90); the others already fit under it.
#                     attention-pdl-own-stream.txt: batch 1 and 32 again with every launch on a non-blocking stream (`--stream
#                     non-blocking`): if launch-graph.txt says PDL does not overlap kernels on the legacy stream, this is
#                     the programmatic decode where it can. New: each decode's calls also captured as one CUDA graph and
#                     replayed (`--cuda-graphs`, rows "(a graph of N calls)"), stream-ordered and programmatic: what a call
#                     costs inside a replayed decode step, with programmatic edges between the calls (at batch 32 the
#                     145 us call's launch and last wave are ~3% of it, about the gap to SDPA's 3903 GB/s).
#   6. report-e2e.md  `report --batches 1 --sections copy,e2e --matvec-loads async-copy --decode-launches per-stage-pdl,
#                     grid-synced-tails,grid-synced-tails-preloaded --stage-times`: both preset models at batch 1 (batch
#                     16 and 64 were measured in runs 14-25; --batches 1 leaves their time to the A/B rows), then
#                     (a) with each decode matvec keeping 8 chunks per lane in flight as cp.async copies into shared memory
#                     (ptxas sm_90: 48 registers + 16 KB for o_proj/down, 79 + 32 KB for the fused pairs, against 96-165
#                     registers with 2-4 chunks in registers), (b) with every launch of a decode layer programmatic
#                     (per-stage-pdl: each matvec and the decode attention start while the kernel before ends, load what no
#                     kernel of the step writes, then wait; ProgrammaticLauncher), (c) with grid-synced tails, plain and
#                     with each warp's first rows of a stage loaded before its barrier (in flight while the groups meet),
#                     (d) (a) and (b) at once: each matvec's ring of cp.async copies fills before its wait.
#   7. report-graphs.md `report --batches 1 --sections e2e --cuda-graphs --decode-launches per-stage-pdl --matvec-loads
#                     async-copy` (--cuda-graphs puts every run on a non-blocking stream): both models at batch 1 by
#                     default, with the decode steps replayed as CUDA graphs, plain and under per-stage-pdl (first after
#                     the default rows), then the async-copy and per-stage-pdl rows on the non-blocking stream, where PDL
#                     is documented to overlap kernels. Does a replayed step take the host's ~113 launches (440-504 us of
#                     enqueue at TinyLlama's 1.28-1.33 ms step) and their gaps away?
#   8. layer-tail.txt `SpecializedInference.Benchmarks.dll layer-tail`: one layer's dense work at batch 1 for Llama-3-8B
#                     and TinyLlama, as four per-stage launches, as one grid-synced launch, and as one whose warps load
#                     each stage's first rows before its barrier (new, off by default), then both launches clocked:
#                     per stage, the groups' own work, their wait at the barrier after it, and the wait of the last
#                     group to arrive (the barrier alone). Run 23 had TinyLlama's tail at 50 us a layer for 84 MiB, where
#                     copy bandwidth reads it in 22: this says whether rows, lateness or barriers lose the rest.
#   9. trace.txt      only where Nsight Systems is installed (tools.txt says what is) and time is left: a 4-layer TinyLlama-shape random
#                     checkpoint's `si generate` traced (`nsys profile -t cuda`), then benchmarks/gpu/trace_gaps.py: each
#                     decode step's kernel time against the idle gaps between its launches, as they ran back to back;
#                     trace-pdl.txt the same under per-stage-pdl, where the overlaps column says whether kernels overlap.
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
APP="/tmp/dn/dotnet .gpu/app/SpecializedInference.Benchmarks.dll"
start=$(date +%s)
deadline=500
elapsed() { echo $(( $(date +%s) - start )); }
# budget <at most>: seconds for the next step, at most what is left before the deadline (at least 5)
budget() { local left=$(( deadline - $(elapsed) )); [ $left -lt $1 ] || left=$1; [ $left -gt 5 ] || left=5; echo $left; }

{ nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv; command -v nsys ncu;
  ls -d /opt/nvidia/nsight-systems/*/bin /usr/local/cuda*/bin 2> /dev/null; } > "$OUT/tools.txt" 2>&1

timeout $(budget 70) $SI selftest --device cuda --set dense > "$OUT/selftest.txt" 2>&1
grep -h "passed\|failed\|FAIL" "$OUT/selftest.txt" | tail -5
timeout $(budget 60) $APP launch-graph > "$OUT/launch-graph.txt" 2>&1
cat "$OUT/launch-graph.txt"
for flags in "" "--matvec-loads async-copy" "--decode-launches per-stage-pdl" "--matvec-loads async-copy --decode-launches per-stage-pdl" \
             "--stream non-blocking --decode-launches per-stage-pdl" "--cuda-graphs" "--cuda-graphs --decode-launches per-stage-pdl"; do
  timeout $(budget 40) $SI generate --model models/docstrings-bf16 --prompt "This module provides" --max-new-tokens 32 --device cuda $flags
done > "$OUT/generate-variants.txt" 2>&1
echo "generate variants: $(grep -c "regular expression matching operations similar to those found in Perl" "$OUT/generate-variants.txt") of 7 print the reference; $(elapsed) s"
grep -h "CUDA graphs\|--cuda-graphs" "$OUT/generate-variants.txt"
timeout $(budget 60) $SI selftest --device cuda --set Llama3_8B > "$OUT/selftest-attention.txt" 2>&1
grep -h "programmatic\|passed\|failed\|FAIL" "$OUT/selftest-attention.txt" | tail -8
timeout $(budget 110) $SI attention-bench --device cuda --sets Llama3_8B --batch 1,32 --prefill-tokens 0 --tensor-core-decode --programmatic \
  --max-registers "decode=0;decode=168;decode=128" > "$OUT/attention-pdl.txt" 2>&1
cat "$OUT/attention-pdl.txt"; echo "attention at $(elapsed) s"
timeout $(budget 75) $SI attention-bench --device cuda --sets Llama3_8B --batch 1,32 --prefill-tokens 0 --tensor-core-decode --programmatic \
  --cuda-graphs --stream non-blocking > "$OUT/attention-pdl-own-stream.txt" 2>&1
grep -h "us/call\|notice" "$OUT/attention-pdl-own-stream.txt"; echo "attention on a non-blocking stream at $(elapsed) s"

nsys=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda*/bin/nsys 2> /dev/null | head -1)
# The options measured end to end come before the diagnostics: the main report, then the graphs' (90 s kept for it),
# then the layer tail (60 s kept), then the trace only with what is left.
report=$(( $(budget 300) - 150 ))
if [ $report -gt 60 ]; then
  timeout $report $APP report --device cuda --time-budget $(( report - 20 )) --batches 1 \
    --sections copy,e2e --matvec-loads async-copy --decode-launches per-stage-pdl,grid-synced-tails,grid-synced-tails-preloaded --stage-times \
    --out "$OUT/report-e2e.md" > "$OUT/report-e2e.log" 2>&1
  echo "report rc $? at $(elapsed) s"
  grep -h "batch .*: decode" "$OUT/report-e2e.log" | sed 's/, prefill.*decode step/; step/' | cut -c1-150
  grep -h "\[stage times\]" "$OUT/report-e2e.log" | sed 's/.*device: /  stages: /' | cut -c1-300
fi

# Batch 1 with the decode steps replayed as CUDA graphs, and the programmatic rows again, every launch on a non-blocking
# stream (graphs need one; PDL is documented to overlap kernels there, whether ILGPU's legacy stream does is what
# launch-graph.txt says).
graphs=$(( $(budget 150) - 60 ))
if [ $graphs -gt 40 ]; then
  timeout $graphs $APP report --device cuda --time-budget $(( graphs - 15 )) --batches 1 --sections e2e --cuda-graphs \
    --decode-launches per-stage-pdl --matvec-loads async-copy --out "$OUT/report-graphs.md" > "$OUT/report-graphs.log" 2>&1
  echo "report with CUDA graphs (non-blocking stream) rc $? at $(elapsed) s"
  grep -h "batch 1: decode" "$OUT/report-graphs.log" | sed 's/, prefill.*decode step/; step/' | cut -c1-220
fi

timeout $(budget 60) $APP layer-tail --device cuda > "$OUT/layer-tail.txt" 2>&1
cat "$OUT/layer-tail.txt"; echo "layer-tail at $(elapsed) s"

if [ -n "$nsys" ] && [ $(( deadline - $(elapsed) )) -gt 40 ]; then
  checkpoint=/tmp/si-trace-small
  rm -rf $checkpoint
  timeout $(budget 30) $SI make-random-checkpoint --config configs/small.json --out $checkpoint --dtype f16 --layers 4 > "$OUT/trace.txt" 2>&1
  timeout $(budget 60) "$nsys" profile -t cuda -o /tmp/si-trace -f true $SI generate --model $checkpoint --prompt-ids 1,2,3 \
    --max-new-tokens 12 --greedy --ignore-eos --device cuda >> "$OUT/trace.txt" 2>&1
  timeout $(budget 30) "$nsys" stats -r cuda_gpu_trace -f csv /tmp/si-trace.nsys-rep > "$OUT/trace.csv" 2>> "$OUT/trace.txt"
  python3 benchmarks/gpu/trace_gaps.py "$OUT/trace.csv" >> "$OUT/trace.txt" 2>&1
  tail -25 "$OUT/trace.txt"
  # The same step with every launch programmatic: do the kernels overlap (the overlaps column), and by how much?
  if [ $(( deadline - $(elapsed) )) -gt 40 ]; then
    timeout $(budget 60) "$nsys" profile -t cuda -o /tmp/si-trace-pdl -f true $SI generate --model $checkpoint --prompt-ids 1,2,3 \
      --max-new-tokens 12 --greedy --ignore-eos --device cuda --decode-launches per-stage-pdl > "$OUT/trace-pdl.txt" 2>&1
    timeout $(budget 30) "$nsys" stats -r cuda_gpu_trace -f csv /tmp/si-trace-pdl.nsys-rep > "$OUT/trace-pdl.csv" 2>> "$OUT/trace-pdl.txt"
    python3 benchmarks/gpu/trace_gaps.py "$OUT/trace-pdl.csv" >> "$OUT/trace-pdl.txt" 2>&1
    grep -h "| mean" "$OUT/trace.txt" "$OUT/trace-pdl.txt"
  fi
fi
echo "done at $(elapsed) s"
