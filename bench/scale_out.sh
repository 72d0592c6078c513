#!/usr/bin/env bash
# Issue "scale-out essentials", side by side on this host (CPU, MPI backend, 2 ranks):
#  1. optimizer state per rank, replicated vs --zero 1 (Adagrad and Adam), and tokens/s of each;
#  2. training stall per checkpoint, synchronous vs --async-checkpoint, and the write time.
#   bench/scale_out.sh [STEPS]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}"  # bench_record
steps="${1:-8}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
run() {  # run NAME FLAGS...
  local dir="$work/$1"; shift
  mpirun --allow-run-as-root --oversubscribe -np 2 "$here/build/adaspan" train --threads 1 --eval-every 0 \
    --warmup-steps 1 --log-every "$steps" --steps "$steps" --run-dir "$dir" "$@" >/dev/null
  echo "$dir/metrics.jsonl"
}
model=(--layers 8 --d-model 512 --heads 8 --ff-size 2048 --attn-span 512 --block-size 64 --batch-size 4)

echo "## ZeRO-1: optimizer state per rank (2 ranks, ${model[*]})"
echo "| optimizer | zero | state MB per rank | tokens/s |"
echo "|---|---:|---:|---:|"
for opt in adagrad adam; do
  for zero in 0 1; do
    m=$(run "z-$opt-$zero" "${model[@]}" --optimizer "$opt" --zero "$zero")
    python3 - "$m" "$opt" "$zero" <<'PY'
import json, sys
from bench_record import record
r = [json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l][-1]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {max(r['optimizer_state_mb']):.1f} | {r['tokens_per_s']:.0f} |")
case = f"2 ranks, {sys.argv[2]}, --zero {sys.argv[3]}"
record("zero", case, "optimizer state per rank", max(r["optimizer_state_mb"]), "MB")
record("zero", case, "tokens/s", r["tokens_per_s"], "tokens/s")
PY
  done
done

echo
echo "## Checkpoint stall (2 ranks, checkpoint every 2 steps, same model)"
echo "| mode | checkpoints | mean stall s | mean write s | stall / sync stall |"
echo "|---|---:|---:|---:|---:|"
sync_stall=""
for mode in sync async; do
  flag=(); [ "$mode" = async ] && flag=(--async-checkpoint)
  m=$(run "c-$mode" "${model[@]}" --checkpoint-every 2 --keep-checkpoints 1 "${flag[@]}")
  # The last step's checkpoint is always synchronous: leave it out of the comparison.
  line=$(python3 - "$m" "$mode" "$steps" "${sync_stall:-0}" <<'PY'
import json, sys
from bench_record import record
recs = [json.loads(l) for l in open(sys.argv[1])]
c = [r for r in recs if r.get("event") == "checkpoint" and r["step"] != int(sys.argv[3])]
stall = sum(r["stall_seconds"] for r in c) / len(c)
write = sum(r["seconds"] for r in c) / len(c)
ref = float(sys.argv[4]) or stall
record("async_checkpoint", f"2 ranks, {sys.argv[2]}", "stall per checkpoint", stall, "s")
record("async_checkpoint", f"2 ranks, {sys.argv[2]}", "stall / sync stall", stall / ref, "x")
print(f"{stall}##| {sys.argv[2]} | {len(c)} | {stall:.3f} | {write:.3f} | {stall / ref:.3f} |")
PY
)
  [ "$mode" = sync ] && sync_stall="${line%%##*}"
  echo "${line#*##}"
done
