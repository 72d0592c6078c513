#!/usr/bin/env bash
# Long-range dependencies: for each distance d and attention variant, train on a text with planted
# copies at distance d (bench/planted_text.py), then report bits per byte on the planted bytes
# (4 bits = not learned, 0 = learned) and elsewhere (4 bits: random letters), the learned spans and
# the attention time per step, side by side.
#
#   bench/long_range.sh [STEPS] [DISTANCES] [VARIANTS]
#     STEPS      training steps per run (default 300)
#     DISTANCES  comma-separated (default 64,256; the issue's family is 64,256,1024,4096: the longer
#                ones take hours on a 2-core CPU, minutes on a GPU with DEVICE=cuda), and `builtin`:
#                the built-in corpus (adaspan prepare builtin), text-like words where the planted
#                bytes are the values of <use K=V> recalling a <def K=V> 200-800 bytes back; S = 2048.
#     VARIANTS   comma-separated from: adaptive dynamic full full-asentmax local sparse entmax15
#                asentmax (default all), and adaptive-init0 (spans start at 0, as the reference's do).
#                local = --attention fixed with a 64-byte window (S = 64).
# Length extrapolation: full and full-asentmax (softmax vs ASEntmax over all of S) are also evaluated
# at 4x and 8x the training S and block (adaspan eval --attn-span --block-size); on a CPU, at d 4096
# and on builtin (8x S = 65536 / 16384 keys per query; softmax over 16384 took 15 min) only with
# EXTRAPOLATE=1.
# Environment: DEVICE (cpu), THREADS (all cores), BENCH_JSON (records for bench/run_all), TASK (copy:
# the planted byte is a copy of the byte d back, a positional lookup; recall: a key byte whose
# previous occurrence d back was followed by the answer, found by content; see planted_text.py).
# S = 2d for every variant but local; adaptive and dynamic start at span d (--span-init 0.5).
# Evaluation reads the validation text as 16 streams (the training batch) of 6250 bytes (62500 at d 4096):
# a planted byte within the first d bytes of a stream has its source in another stream, so even a perfect
# model scores 4·d/stream bits on the planted bytes (0.04 at d 64, 0.16 at 256, 0.66 at 1024, 0.26 at 4096).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}"  # bench_record
steps="${1:-300}"
IFS=, read -r -a distances <<< "${2:-64,256}"
IFS=, read -r -a variants <<< "${3:-adaptive,dynamic,full,full-asentmax,local,sparse,entmax15,asentmax}"
device="${DEVICE:-cpu}"
task="${TASK:-copy}"
threads="${THREADS:-$(nproc)}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
model=(--layers 2 --d-model 64 --heads 4 --ff-size 256 --block-size 64 --batch-size 16 --lr 0.03
       --warmup-steps 20 --span-loss-coeff 1e-5)
# The validation text: 100 KB, or 1 MB at d >= 4096 (so that most planted bytes have their source in their stream).
valid_bytes() { if (( $1 >= 4096 )); then echo 1000000; else echo 100000; fi; }
echo "| d | variant | bpb planted | bpb elsewhere | span per head (layer 0; layer 1) | attention s/step | tokens/s | bpb planted at 4x / 8x S |"
echo "|---:|---|---:|---:|---|---:|---:|---|"
for d in "${distances[@]}"; do
  if [[ "$d" == builtin ]]; then
    # The built-in corpus: text-like words with <use K=V> recalling a <def K=V> 200-800 bytes back.
    "$here/build/adaspan" prepare builtin --out "$work/builtin" > /dev/null
    for split in train valid; do ln -sf "$work/builtin/$split.txt" "$work/${split}builtin.txt"; done
    ln -sf "$work/builtin/valid.mask" "$work/validbuiltin.mask"
    span=2048
  else
    python3 "$here/bench/planted_text.py" "$work/train$d" --distance "$d" --task "$task" --bytes 2000000 --seed 1
    python3 "$here/bench/planted_text.py" "$work/valid$d" --distance "$d" --task "$task" --bytes "$(valid_bytes "$d")" \
      --seed 2
    span=$((2 * d))
  fi
  for variant in "${variants[@]}"; do
    case "$variant" in
      adaptive) flags=(--attn-span "$span" --span-init 0.5) ;;
      adaptive-init0) flags=(--attn-span "$span" --span-init 0) ;;  # the reference's init: spans grow from 0
      dynamic) flags=(--attn-span "$span" --span-init 0.5 --span-mode dynamic) ;;
      full) flags=(--attn-span "$span" --attention full) ;;
      full-asentmax) flags=(--attn-span "$span" --attention full --normalizer asentmax) ;;
      local) flags=(--attn-span 64 --attention fixed) ;;
      sparse) flags=(--attn-span "$span" --attention sparse-fixed --sparse-stride 16) ;;
      entmax15) flags=(--attn-span "$span" --span-init 0.5 --normalizer entmax15) ;;
      asentmax) flags=(--attn-span "$span" --span-init 0.5 --normalizer asentmax) ;;
      *) echo "unknown variant $variant" >&2; exit 2 ;;
    esac
    dir="$work/$d-$variant"
    "$here/build/adaspan" train "${model[@]}" "${flags[@]}" --data "$work/train$d.txt" --steps "$steps" \
      --log-every "$steps" --eval-every 0 --checkpoint-every "$steps" --threads "$threads" --device "$device" \
      --run-dir "$dir" > /dev/null
    "$here/build/adaspan" eval --checkpoint "$dir/ckpt-$steps.h5" --data "$work/valid$d.txt" \
      --focus "$work/valid$d.mask" --device "$device" --threads "$threads" --json > "$dir/eval.json"
    if [[ "$variant" == full* ]] && { [[ "$device" != cpu || "${EXTRAPOLATE:-0}" == 1 ]] || (( ${d/builtin/4096} < 4096 )); }; then
      for x in 4 8; do
        "$here/build/adaspan" eval --checkpoint "$dir/ckpt-$steps.h5" --data "$work/valid$d.txt" \
          --focus "$work/valid$d.mask" --device "$device" --threads "$threads" --attn-span $((x * span)) \
          --block-size $((x * 64)) --json > "$dir/eval$x.json"
      done
    fi
    python3 - "$dir" "$d" "$variant" <<'PY'
import json, os, sys
from bench_record import record
run, d, variant = sys.argv[1], sys.argv[2], sys.argv[3]
e = json.load(open(f"{run}/eval.json"))
r = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"tokens_per_s"' in l][-1]
spans = "; ".join(" ".join(f"{z:.0f}" for z in layer) for layer in r["spans"])
att = r["attention_s_per_step"][0]
task = os.environ.get("TASK", "copy")
case = f"d {d}, {variant}" + (f", {task}" if task != "copy" else "")
longer = ""
if os.path.exists(f"{run}/eval4.json"):
    e4, e8 = json.load(open(f"{run}/eval4.json")), json.load(open(f"{run}/eval8.json"))
    longer = f"{e4['bpb_focus']:.3f} / {e8['bpb_focus']:.3f}"
    record("long_range", case, "bpb on planted bytes at 4x S", e4["bpb_focus"], "bits")
    record("long_range", case, "bpb on planted bytes at 8x S", e8["bpb_focus"], "bits")
print(f"| {d} | {variant} | {e['bpb_focus']:.3f} | {e['bpb_rest']:.3f} | {spans} | {att:.4f} | {r['tokens_per_s']:.0f} | {longer} |")
record("long_range", case, "bpb on planted bytes", e["bpb_focus"], "bits")
record("long_range", case, "bpb elsewhere", e["bpb_rest"], "bits")
record("long_range", case, "mean span", sum(map(sum, r["spans"])) / sum(map(len, r["spans"])), "bytes")
record("long_range", case, "attention time per step", att, "s")
PY
  done
done
