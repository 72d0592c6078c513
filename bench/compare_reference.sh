#!/usr/bin/env bash
# Side by side, in one run: training tokens/s of facebookresearch/adaptive-span (run on CPU) and of
# adaspan, same config, same torch, same threads, at initial spans and at spans of 50% of S.
#
#   bench/compare_reference.sh REFERENCE_CHECKOUT TEXT_FILE
#
# REFERENCE_CHECKOUT: a clone of facebookresearch/adaptive-span (not shipped with adaspan). It is
# copied to a temp dir and patched there to run without CUDA (its utils.py asserts a GPU) and on
# torch 2.x (two removed addcmul_/addcdiv_ overloads in its Adagrad); nothing else changes.
# TEXT_FILE: any text; its first 1 MB is converted to the reference's enwik8-style format.
set -euo pipefail
ref="${1:?reference checkout}"; text="${2:?text file}"
here="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}"  # bench_record
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
cp -r "$ref" "$work/ref"
sed -i 's/^    assert torch.cuda.is_available()/    pass/; s/^    env_params\[.device.\] = torch.device(.cuda.)/    env_params["device"] = torch.device("cpu")/' "$work/ref/utils.py"
sed -i "s/state\['sum'\].addcmul_(1, grad, grad)/state['sum'].addcmul_(grad, grad, value=1)/; s/p.data.addcdiv_(-clr, grad, std)/p.data.addcdiv_(grad, std, value=-clr)/" "$work/ref/adagrad_with_grad_clip.py"
mkdir -p "$work/data"
python3 - "$text" "$work/data" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()[:1000000]
def fmt(b):
    return '\n'.join(' '.join(str(c) for c in line) for line in b.split(b'\n')) + '\n'
n = len(data)
for name, part in (('train', data[:n * 9 // 10]), ('valid', data[n * 9 // 10:n * 19 // 20]), ('test', data[n * 19 // 20:])):
    open(f'{sys.argv[2]}/{name}.txt', 'w').write(fmt(part))
PY
threads="${THREADS:-$(nproc)}"
model=(--nlayers 4 --hid-sz 256 --inner-hid-sz 1024 --nheads 4 --block-sz 256 --attn-span 1024 --batch-sz 16)
echo "reference (threads $threads): ms/batch of the second iteration of 12 steps"
declare -A ref_tps
for init in 0 0.5; do
  rm -f "$work/data/corpus.pt"
  line=$(cd "$work/ref" && OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=1 python3 main.py --data "$work/data" \
    "${model[@]}" --optim adagrad --lr 1e-7 --grad-clip 0.03 --lr-warmup 100 --dropout 0 --adapt-span \
    --adapt-span-loss 0 --adapt-span-init $init --adapt-span-cache --niter 2 --nbatches 12 2>/dev/null | grep steps | tail -1)
  ms=$(echo "$line" | sed -E 's/.*ms\/batch: ([0-9.]+).*/\1/')
  ref_tps[$init]=$(python3 -c "print(16*256/($ms/1000))")
  echo "  span init $init: $line"
done
"$here/build/adaspan_bench" --threads "$threads" --steps 10 --warmup 3 --json "$work/adaspan.json"
python3 - "$work/adaspan.json" "${ref_tps[0]}" "${ref_tps[0.5]}" <<'PY'
import json, sys
from bench_record import record
a = json.load(open(sys.argv[1])); r0, r50 = float(sys.argv[2]), float(sys.argv[3])
print("\n| spans | reference tok/s | adaspan kv | adaspan hidden |\n|---|---:|---:|---:|")
for label, key, r in (("at init", "train_tokens_per_s_span0", r0), ("50% of S", "train_tokens_per_s_span50", r50)):
    kv, hid = a[key]["kv"], a[key]["hidden"]
    print(f"| {label} | {r:.0f} | {kv:.0f} ({kv/r:.2f}x) | {hid:.0f} ({hid/r:.2f}x) |")
    record("vs_reference", f"spans {label}", "reference tokens/s", r, "tokens/s")
    record("vs_reference", f"spans {label}", "adaspan --cache kv / reference", kv / r, "x")
    record("vs_reference", f"spans {label}", "adaspan --cache hidden / reference", hid / r, "x")
PY
