#!/usr/bin/env bash
# Set-up (if needed), build, and a ~2 minute training run on the built-in corpus (2 CPU cores):
# bits per byte falls, and the learned span of every head is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target adaspan
run_dir="${RUN_DIR:-runs/demo}"
echo "demo: training on the built-in corpus; metrics in ${run_dir}/metrics.jsonl"
build/adaspan train --run-dir "$run_dir" --steps 600 --layers 4 --d-model 128 --heads 4 --ff-size 512 \
  --attn-span 512 --batch-size 16 --block-size 128 --lr 0.07 --warmup-steps 100 --log-every 50 \
  --eval-every 200 "$@"
