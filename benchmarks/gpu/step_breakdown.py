#!/usr/bin/env python3
"""One decode step, kernel by kernel, from the CSV of benchmarks/gpu/profile-step.sh (Nsight Compute, base units).

Each step of `si generate` starts with the embedding kernel, so the launches are cut there: the first step is the
prefill, the others are decode steps. Prints, for the last decode step, a Markdown table of its kernels in launch
order, merged where the same kernel runs with the same grid (once per layer): launches, device time, DRAM bytes and
GB/s; then the step's totals. Device time only: the gaps between launches are not in it.

    python3 benchmarks/gpu/step_breakdown.py benchmarks/results/<run>/step-small.csv [--step N]
"""
import csv
import sys
from collections import OrderedDict


def launches(path):
    rows = {}
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]
    for row in csv.DictReader(lines):
        launch = rows.setdefault(int(row["ID"]), {"name": row["Kernel Name"], "grid": row["Grid Size"], "block": row["Block Size"]})
        value = row["Metric Value"].replace(",", "")
        launch[row["Metric Name"]] = float(value) if value else 0.0
    return [rows[i] for i in sorted(rows)]


def steps(all_launches):
    cut = [i for i, l in enumerate(all_launches) if l["name"].startswith("Kernel_Embedding")]
    return [all_launches[a:b] for a, b in zip(cut, cut[1:] + [len(all_launches)])]


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    path = args[0]
    every = steps(launches(path))
    if len(every) < 2:
        sys.exit(f"{path}: {len(every)} step(s) found; need a prefill and at least one decode step")
    index = int(args[args.index("--step") + 1]) if "--step" in args else len(every) - 1
    step = every[index]
    merged = OrderedDict()
    for l in step:
        key = (l["name"].removeprefix("Kernel_"), l["grid"], l["block"], int(l.get("launch__registers_per_thread", 0)))
        m = merged.setdefault(key, {"n": 0, "ns": 0.0, "bytes": 0.0})
        m["n"] += 1
        m["ns"] += l.get("gpu__time_duration.sum", 0.0)
        m["bytes"] += l.get("dram__bytes_read.sum", 0.0) + l.get("dram__bytes_write.sum", 0.0)
    total_ns = sum(m["ns"] for m in merged.values())
    total_bytes = sum(m["bytes"] for m in merged.values())
    print(f"Step {index} of 0..{len(every) - 1} ({'prefill' if index == 0 else 'decode'}): {len(step)} launches, "
          f"{total_ns / 1e3:.0f} µs of device time, {total_bytes / 1e6:.1f} MB of DRAM traffic "
          f"({total_bytes / total_ns:.0f} GB/s over the kernels' time)\n")
    print("| kernel | grid × block | registers | launches | µs per launch | µs in all | share | MB per launch | GB/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for (name, grid, block, regs), m in merged.items():
        per = m["ns"] / m["n"] / 1e3
        gbs = m["bytes"] / m["ns"] if m["ns"] else 0.0
        print(f"| {name} | {grid} × {block} | {regs} | {m['n']} | {per:.1f} | {m['ns'] / 1e3:.0f} | "
              f"{100 * m['ns'] / total_ns:.0f}% | {m['bytes'] / m['n'] / 1e6:.2f} | {gbs:.0f} |")


if __name__ == "__main__":
    main()
