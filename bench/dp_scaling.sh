#!/usr/bin/env bash
# Weak scaling of data parallelism on this host: tokens/s with 1 and 2 ranks at a fixed per-rank
# batch, and the share of step time spent waiting on gradient all-reduces with and without overlap.
#   bench/dp_scaling.sh [STEPS]     (CPU, MPI backend; threads per rank = cores / ranks)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}"  # bench_record
steps="${1:-30}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
per_rank_streams=8
model=(--layers 4 --d-model 256 --heads 4 --ff-size 1024 --attn-span 1024 --block-size 256 --span-init 0.25
       --span-loss-coeff 0 --eval-every 0 --log-every "$steps" --steps "$steps" --warmup-steps 1)
echo "| ranks | overlap | tokens/s | step time max (s) | comm wait / step (s) | comm share |"
echo "|---|---|---:|---:|---:|---:|"
for ranks in 1 2; do
  for overlap in on off; do
    [ "$ranks" = 1 ] && [ "$overlap" = off ] && continue
    flag=(); [ "$overlap" = off ] && flag=(--no-overlap)
    dir="$work/np$ranks-$overlap"
    mpirun --allow-run-as-root --oversubscribe -np "$ranks" "$here/build/adaspan" train "${model[@]}" "${flag[@]}" \
      --batch-size $((per_rank_streams * ranks)) --threads $(( $(nproc) / ranks )) --run-dir "$dir" >/dev/null
    python3 - "$dir/metrics.jsonl" "$ranks" "$overlap" <<'PY'
import json, sys
from bench_record import record
r = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l][-1]
share = r["comm_wait_s"] / r["step_time_max_s"]
case = f"{sys.argv[2]} rank(s), overlap {sys.argv[3]}"
record("dp_scaling", case, "tokens/s", r["tokens_per_s"], "tokens/s")
record("dp_scaling", case, "comm wait share of step", 100 * share, "%")
print(f"| {sys.argv[2]} | {sys.argv[3]} | {r['tokens_per_s']:.0f} | {r['step_time_max_s']:.3f} | {r['comm_wait_s']:.4f} | {100*share:.1f}% |")
PY
  done
done
