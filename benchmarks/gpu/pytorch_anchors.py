"""PyTorch anchors measured on the same card as our kernels, in the same GPU run.

Prints a markdown table: device copy bandwidth, SDPA GQA decode (batch 1 and 32, 32/8 heads, d=128,
L=4096, f16) in GB/s of K/V read, and SDPA causal prefill (L=4096) in TFLOP/s. Timed with CUDA events,
median of repeated runs after warm-up.
"""
import sys
import torch
import torch.nn.functional as F


def timed(fn, warmup=5, reps=30):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


def main():
    dev = torch.device("cuda")
    name = torch.cuda.get_device_name(0)
    rows = []

    n = 1 << 28  # 1 GiB of f32
    src = torch.empty(n, dtype=torch.float32, device=dev).uniform_()
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src))
    copy_gbs = 2 * n * 4 / t / 1e9
    rows.append(("device copy (read+write)", f"{copy_gbs:.0f} GB/s", f"{t*1e3:.3f} ms"))
    del src, dst

    # The decode at batch 1 reads 16 MiB of K/V: what PyTorch's own kernels take for that many bytes in one launch
    # (ours: the report's "one launch that only reads" table).
    small = torch.empty(1 << 23, dtype=torch.float16, device=dev).uniform_()  # 16 MiB
    small_dst = torch.empty_like(small)
    t = timed(lambda: small_dst.copy_(small))
    rows.append(("copy 16 MiB (read+write 32 MiB)", f"{2 * small.numel() * 2 / t / 1e9:.0f} GB/s", f"{t*1e6:.1f} us"))
    t = timed(lambda: small.sum())
    rows.append(("sum of 16 MiB f16 (read)", f"{small.numel() * 2 / t / 1e9:.0f} GB/s", f"{t*1e6:.1f} us"))
    del small, small_dst

    heads, kv_heads, d, L = 32, 8, 128, 4096
    for batch in (1, 32):
        q = torch.randn(batch, heads, 1, d, dtype=torch.float16, device=dev)
        k = torch.randn(batch, kv_heads, L, d, dtype=torch.float16, device=dev)
        v = torch.randn_like(k)
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
        kv_bytes = 2 * batch * kv_heads * L * d * 2
        rows.append((f"SDPA GQA decode B={batch} 32/8 heads d=128 L=4096 f16", f"{kv_bytes / t / 1e9:.0f} GB/s", f"{t*1e6:.1f} us"))

    for batch in (1,):
        q = torch.randn(batch, heads, L, d, dtype=torch.float16, device=dev)
        k = torch.randn(batch, kv_heads, L, d, dtype=torch.float16, device=dev)
        v = torch.randn_like(k)
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), reps=10)
        flops = 4 * batch * heads * L * L * d / 2  # causal: half the QK^T and PV products
        rows.append((f"SDPA causal prefill B={batch} 32/8 heads d=128 L=4096 f16", f"{flops / t / 1e12:.1f} TFLOP/s", f"{t*1e3:.3f} ms"))

    print(f"### PyTorch {torch.__version__} anchors on {name}\n")
    print("| benchmark | figure | time |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    sys.exit(main())
