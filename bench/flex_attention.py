#!/usr/bin/env python3
"""FlexAttention with a sliding-window block mask at the spans adaspan_bench_attention measures.

    bench/flex_attention.py [--batch-size B] [--block-size M] [--head-dim d] [--attn-span S]
                            [--spans 64,256,...] [--reps N] [--json FILE]

The yardstick of docs/kernels.md §3 for the CUDA span kernels: one head, B streams of M queries over a
cache of S keys plus the block, query i sees the s = min(z + R, S) keys before it (itself excluded,
as adaspan's x = distance - 1). Same shapes and the same useful-FLOP count as
adaspan_bench_attention (3.5 · 4·n·s·d for forward+backward, n = B·M), fp32 inputs.
Needs PyTorch >= 2.5 with CUDA; prints why and exits 2 otherwise.
"""
import argparse
import json
import sys
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--attn-span", type=int, default=2048)
    parser.add_argument("--ramp", type=float, default=32)
    parser.add_argument("--spans", default="64,256,1024,2048")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("flex_attention.py: python3 has no torch", file=sys.stderr)
        sys.exit(2)
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    except ImportError:
        print(f"flex_attention.py: torch {torch.__version__} has no FlexAttention (needs >= 2.5)", file=sys.stderr)
        sys.exit(2)
    if not torch.cuda.is_available():
        print("flex_attention.py: no CUDA device visible", file=sys.stderr)
        sys.exit(2)
    compiled = torch.compile(flex_attention)
    B, M, d, S = args.batch_size, args.block_size, args.head_dim, args.attn_span
    keys = S + M
    results = []
    print(f"FlexAttention, torch {torch.__version__}, {torch.cuda.get_device_name()}; B {B} M {M} d {d} S {S}")
    print(f"{'span':>8} {'flex ms':>10} {'flex GFLOP/s':>12}")
    for z in (float(s) for s in args.spans.split(",")):
        s = int(min(z + args.ramp, S))

        def window(b, h, q_idx, kv_idx):
            x = q_idx + S - 1 - kv_idx  # distance - 1 of key kv_idx from query q_idx (cache of S keys first)
            return (x >= 0) & (x < s)

        mask = create_block_mask(window, B=None, H=None, Q_LEN=M, KV_LEN=keys, device="cuda")
        q = torch.randn(B, 1, M, d, device="cuda", requires_grad=True)
        k = torch.randn(B, 1, keys, d, device="cuda", requires_grad=True)
        v = torch.randn(B, 1, keys, d, device="cuda", requires_grad=True)
        times = []
        for rep in range(args.reps + 2):  # two warm-ups (the first compiles)
            torch.cuda.synchronize()
            start = time.perf_counter()
            compiled(q, k, v, block_mask=mask).sum().backward()
            torch.cuda.synchronize()
            if rep >= 2:
                times.append(1000 * (time.perf_counter() - start))
        ms = sorted(times)[len(times) // 2]
        flops = 3.5 * 4 * B * M * s * d
        print(f"{z:8.0f} {ms:10.3f} {flops / ms / 1e6:12.1f}")
        results.append({"span": z, "flex_ms": ms, "flex_gflops": flops / ms / 1e6})
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(), "spans": results}, out,
                      indent=2)


if __name__ == "__main__":
    main()
