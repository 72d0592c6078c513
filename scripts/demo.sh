#!/usr/bin/env bash
# Set-up (if needed), build, and a ~2 minute training run on the built-in corpus (2 CPU cores):
# bits per byte falls, the learned span of every head is printed at the end, and the run ends with
# a checkpoint that the printed eval / generate / report commands use. A second demo moves the
# first one's files to RUN_DIR/previous-<time>/ (--fresh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target adaspan
run_dir="${RUN_DIR:-runs/demo}"
echo "demo: training on the built-in corpus; metrics in ${run_dir}/metrics.jsonl"
fresh=(--fresh)  # an earlier demo's files move aside, unless this one resumes it
for arg in "$@"; do [ "$arg" = "--resume" ] && fresh=(); done
build/adaspan train --run-dir "$run_dir" --steps 600 --layers 4 --d-model 128 --heads 4 --ff-size 512 \
  --attn-span 512 --batch-size 16 --block-size 128 --lr 0.07 --warmup-steps 100 --log-every 50 \
  --eval-every 200 "${fresh[@]}" "$@"
checkpoint="$run_dir/$(cat "$run_dir/latest")"
echo "demo: the trained model is $checkpoint; try"
echo "  build/adaspan generate --checkpoint $checkpoint --prompt '<def ' --bytes 200"
echo "  build/adaspan prepare builtin --out data/builtin && build/adaspan eval --checkpoint $checkpoint \\"
echo "      --data data/builtin/valid.txt --focus data/builtin/valid.mask"
echo "  build/adaspan report $run_dir"
