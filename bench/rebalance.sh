#!/usr/bin/env bash
# Span-aware head rebalancing on a planted skewed span distribution (CPU, MPI, TP = 2): per-rank
# KV-cache memory, peak memory and step time, with and without rebalancing, side by side.
#   bench/rebalance.sh [STEPS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}"  # bench_record
steps="${1:-12}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# 8 heads: 4 at ~S, 4 short; the contiguous split gives rank 0 every long head.
model=(--layers 4 --d-model 256 --heads 8 --ff-size 1024 --attn-span 1024 --block-size 128 --batch-size 4
       --span-init-heads 1000,1000,1000,1000,30,30,30,30 --span-loss-coeff 0 --eval-every 0 --warmup-steps 1 --lr 0.01)
echo "| rebalancing | KV cache MB per rank | largest / mean | peak memory MB per rank | step time max / min (s) | tokens/s |"
echo "|---|---|---:|---|---|---:|"
for mode in off on; do
  flag=(); [ "$mode" = on ] && flag=(--rebalance-every 2)
  dir="$work/$mode"
  mpirun --allow-run-as-root --oversubscribe -np 2 "$here/build/adaspan" train "${model[@]}" --tp 2 --threads 1 \
    --steps "$steps" --log-every "$steps" --run-dir "$dir" "${flag[@]}" >/dev/null
  python3 - "$dir/metrics.jsonl" "$mode" <<'PY'
import json, sys
from bench_record import record
r = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l][-1]
kv = r["kv_cache_mb"]
mean = sum(kv) / len(kv)
case = f"TP 2, rebalancing {sys.argv[2]}"
record("rebalance", case, "KV cache largest / mean rank", max(kv) / mean, "x")
record("rebalance", case, "KV cache largest rank", max(kv), "MB")
record("rebalance", case, "step time max", r["step_time_max_s"], "s")
print(f"| {sys.argv[2]} | {', '.join(f'{x:.1f}' for x in kv)} | {max(kv) / mean:.2f} | "
      f"{', '.join(f'{x:.0f}' for x in r['peak_memory_mb'])} | {r['step_time_max_s']:.3f} / {r['step_time_min_s']:.3f} | "
      f"{r['tokens_per_s']:.0f} |")
PY
done
