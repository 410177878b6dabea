#!/usr/bin/env python3
"""A decode step's kernels and the gaps between them, from Nsight Systems' GPU trace (`nsys stats --report
cuda_gpu_trace --format csv`), which times every launch as it ran, back to back, caches warm: what Nsight Compute
(profile-step.sh, one kernel at a time) and the CUDA-event stage markers (report --stage-times, host work between
launches) cannot show.

Each step of `si generate` starts with the embedding kernel, so the kernels are cut there; the first step is the
prefill. Prints, per decode step: its kernels, the sum of their durations, the sum of the idle gaps between one
kernel's end and the next one's start, the sum of the overlaps (a kernel that starts before the one before it ends:
programmatic dependent launch, `--decode-launches per-stage-pdl`), and the span from the first start to the last end;
then the mean over the decode steps, and the last decode step's kernels merged by name (launches, mean duration, mean gap
before).

    python3 benchmarks/gpu/trace_gaps.py <trace>.csv
"""
import csv
import sys
from collections import OrderedDict


def column(header, *words):
    for i, name in enumerate(header):
        if all(w.lower() in name.lower() for w in words):
            return i
    raise SystemExit(f"trace_gaps.py: no column with {words} in {header}")


def kernels(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(line for line in f if line.strip() and not line.startswith("Generating") and not line.startswith("Processing")))
    header = next(i for i, r in enumerate(rows) if any("Start" in c for c in r) and any("Duration" in c for c in r))
    h = rows[header]
    start, duration, name = column(h, "start"), column(h, "duration"), column(h, "name")
    out = []
    for r in rows[header + 1:]:
        if len(r) <= max(start, duration, name):
            continue
        n = r[name]
        if "[CUDA mem" in n or "memcpy" in n.lower() or "memset" in n.lower():
            continue   # copies and sets are not kernels; their time shows as a gap
        out.append((float(r[start]), float(r[duration]), n))
    out.sort()
    return out


def short(name):
    for prefix in ("void ", "Kernel_"):
        name = name.replace(prefix, "")
    return name[:90]


def main(path):
    ks = kernels(path)
    steps, current = [], []
    for k in ks:
        if "mbedding" in k[2] and current:
            steps.append(current)
            current = []
        current.append(k)
    if current:
        steps.append(current)
    if len(steps) < 2:
        raise SystemExit(f"trace_gaps.py: {len(ks)} kernels in {len(steps)} step(s); expected a prefill and decode steps (cut at the embedding kernel)")
    decode = steps[1:-1] if len(steps) > 3 else steps[1:]   # the last step may be cut short by the end of the trace
    print(f"{len(ks)} kernels, {len(steps)} steps (the first the prefill); decode steps summed: {len(decode)}")
    print("| decode step | kernels | kernel time, us | gaps, us | overlaps, us | span, us |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = [0, 0.0, 0.0, 0.0, 0.0]
    for i, step in enumerate(decode):
        busy = sum(d for _, d, _ in step) / 1e3
        gaps = sum(max(0.0, b[0] - (a[0] + a[1])) for a, b in zip(step, step[1:])) / 1e3
        overlaps = sum(max(0.0, (a[0] + a[1]) - b[0]) for a, b in zip(step, step[1:])) / 1e3
        span = (step[-1][0] + step[-1][1] - step[0][0]) / 1e3
        print(f"| {i + 1} | {len(step)} | {busy:.1f} | {gaps:.1f} | {overlaps:.1f} | {span:.1f} |")
        for j, v in enumerate((len(step), busy, gaps, overlaps, span)):
            totals[j] += v
    n = len(decode)
    print("| mean | " + " | ".join(f"{t / n:.1f}" for t in totals) + " |")
    print()
    last = decode[-1]
    merged = OrderedDict()
    for j, (s, d, name) in enumerate(last):
        gap = max(0.0, s - (last[j - 1][0] + last[j - 1][1])) if j > 0 else 0.0
        m = merged.setdefault(short(name), [0, 0.0, 0.0])
        m[0] += 1
        m[1] += d / 1e3
        m[2] += gap / 1e3
    print("The last decode step by kernel (in order of first launch):")
    print("| kernel | launches | mean us | mean gap before, us |")
    print("|---|---:|---:|---:|")
    for name, (count, busy, gap) in merged.items():
        print(f"| `{name}` | {count} | {busy / count:.2f} | {gap / count:.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
