#!/usr/bin/env bash
# Context parallelism (--cp) on this host (CPU, MPI; every rank 1 ATen thread, ranks oversubscribed
# when CP exceeds the cores): per-rank peak memory, activation memory, step time, halo MB per step
# and the share of the step spent waiting for halos, at M = S = 2048, 4096, 8192 with every head's
# span planted at 10% and at 50% of S, CP 1, 2 and 4; beside them, the bytes an all-gather context
# parallelism and a ring would move for the same block; then three goals, checked and printed as
# PASS/FAIL lines with the figures of this run:
#   1. per-rank peak activation memory at CP C within (1/C + 10%) of CP 1's, at the largest M;
#   2. with spans at 10% of S, the halo moves at most 15% of the all-gather's bytes;
#   3. under a per-rank memory limit enforced by the kernel (RLIMIT_DATA, prlimit --data), the
#      longest block of a ladder that one rank trains at CP 1, and a block twice as long: fails at
#      CP 1, trains at CP 2 under the same per-rank limit.
#
#   bench/context_parallel.sh [--quick] [STEPS]
#     --quick  M = S = 256 and 512, 2 steps, a small ladder: a smoke test of the script, not figures.
#     STEPS    training steps per run (default 3; 2 with --quick). Figures: step time and halo wait
#              averaged over the steps after the first (its warm-up allocations excluded), halo MB
#              and peak memory at the last step.
# Environment: BENCH_JSON (records for bench/run_all), ADASPAN (the binary; default build/adaspan).
#
# How each figure is counted (the same things model/halo_exchange.cpp counts):
# - peak memory: the metrics' peak_memory_mb, each rank's peak resident set (getrusage ru_maxrss,
#   MiB). It includes LibTorch, MPI, the parameters and optimizer state, not only activations.
# - activation memory: peak minus a baseline run's peak, rank by rank: the same model, S, spans, CP,
#   batch and steps, with the smallest block CP allows (M = 64 x CP, a chunk of 64 positions per
#   rank). The baseline holds everything that does not grow with the block (libraries, MPI buffers,
#   parameters, optimizer state, a halo for a 64-row chunk), so the difference is what the block's M
#   positions add: activations and their temporaries. It slightly undercounts them (a 64-position
#   chunk's own activations sit in the baseline) and counts the full run's KV cache as activation
#   (the baseline's few short blocks fill little of it): at most window x heads x head_dim x 2 x B x
#   layers x 4 bytes over the CP ranks, 8.5 MB at the largest window here.
# - halo MB per step: the metrics' halo_mb_per_step, per rank, MB = 1e6 bytes: keys and values this
#   rank sent in forward plus the key/value gradients it sent back in backward, every layer.
# - all-gather / ring MB per step, per rank, from the shapes, counted the same way (sent bytes, fp32,
#   every layer): each rank receives the C-1 other chunks' keys and values of every head in forward
#   and returns their gradients in backward, so it also sends its own chunk's K/V to C-1 ranks and
#   C-1 chunks' dK/dV: 2 x (C-1) x (M/C) x heads x head_dim x 2 (K, V) x B x layers x 4 bytes. A ring
#   moves the same bytes in C-1 hops of one chunk each way. Only the current block is counted (an
#   all-gather CP with a Transformer-XL cache would move the previous block's keys too; the halo's
#   figure includes those), which favours the all-gather.
# - halo / all-gather: all ranks' halo bytes over all ranks' all-gather bytes (goal 2 is judged on
#   this: the bytes moved), and the busiest rank's halo over one rank's all-gather beside it.
# - halo wait share: per rank, cp_comm_wait_s / the slowest rank's step time. With CP 4 on 2 cores
#   a rank also waits while the rank it needs is descheduled, so on this host the share overstates
#   the network's part.
# Spans are learned: the runs use --lr 0.001 (an Adagrad step moves a span by about lr x S bytes)
# and no span penalty, so the planted spans stay within a few bytes of where they were put; the
# table shows the windows (kernels::effective_window, granule 64) at the last step.
#
# Goal 3's limit: RLIMIT_DATA (prlimit --data, per rank, inherited through mpirun) bounds the
# process's private writable memory, and malloc's (so LibTorch's CPU allocator's) heap and mmap
# growth past it fails with ENOMEM ("DefaultCPUAllocator: can't allocate memory"). RLIMIT_AS also
# binds here, but counts ~2.2 GB of mapped LibTorch/CUDA libraries first; RLIMIT_RSS is not
# enforced by Linux. The limit is set halfway between what one rank needs to train the ladder's
# middle block and the block twice as long at CP 1 (each need found by bisection on the limit, to
# RES MiB): a fixed limit that lies between two rungs. The ladder keeps S and the spans fixed (10%
# of S), so a block's memory grows linearly with M; with S = M a doubled block would need four
# times the attention memory and CP 2 would not be expected to fit it.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
export PYTHONPATH="$here/bench${PYTHONPATH:+:$PYTHONPATH}"  # bench_record
quick=0
steps=""
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *[!0-9]*|"") echo "context_parallel.sh: unknown argument '$arg' (usage: [--quick] [STEPS])" >&2; exit 2 ;;
    *) steps="$arg" ;;
  esac
done
bin="${ADASPAN:-$here/build/adaspan}"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

layers=2 d_model=64 heads=4 ff=256 batch=2 ramp=32
cps=(1 2 4)
spans_pct=(10 50)
if (( quick )); then
  steps="${steps:-2}"
  sizes=(256 512)
  ladder_s=256 ladder=(2048 4096 8192 16384) ladder_mid=4096 res=16
else
  steps="${steps:-3}"
  sizes=(2048 4096 8192)
  ladder_s=2048 ladder=(4096 8192 16384 32768 65536) ladder_mid=16384 res=8
fi
model=(--layers "$layers" --d-model "$d_model" --heads "$heads" --ff-size "$ff" --span-ramp "$ramp" --cache kv
       --span-loss-coeff 0 --lr 0.001 --warmup-steps 1 --eval-every 0 --threads 1 --no-final-checkpoint)
echo "{\"layers\": $layers, \"d_model\": $d_model, \"ff\": $ff, \"heads\": $heads, \"batch\": $batch, \"ramp\": $ramp, \
\"steps\": $steps, \"quick\": $quick, \"ladder_s\": $ladder_s, \"res\": $res}" > "$work/setup.json"
touch "$work/failures" "$work/grid" "$work/ladder"

per_head() { local out="$1" h; for ((h = 1; h < heads; ++h)); do out+=",$1"; done; echo "$out"; }  # --span-init-heads
log() { echo "[context_parallel $(date +%H:%M:%S)] $*" >&2; }

# train NAME CP LIMIT_MIB ARGS...: one training run in $work/NAME (LIMIT_MIB 0: no limit; else
# RLIMIT_DATA per rank); its exit status, stdout and stderr in $work/NAME.{out,err}.
train() {
  local name="$1" cp="$2" limit="$3"; shift 3
  local limited=(); if (( limit > 0 )); then limited=(prlimit --data=$((limit * 1048576))); fi
  rm -rf "${work:?}/$name"
  timeout 1800 mpirun --allow-run-as-root --oversubscribe -np "$cp" "${limited[@]}" "$bin" train "${model[@]}" \
    --cp "$cp" --run-dir "$work/$name" "$@" > "$work/$name.out" 2> "$work/$name.err"
}

# The first line of a failed run's stderr that says why (an allocation failure, else any error).
why() {
  grep -m1 -o -E "can't allocate memory[^.]*|Cannot allocate memory|std::bad_alloc|failed to map segment[^,]*" \
    "$work/$1.err" | sed -n 1p | grep . || grep -m1 -i -E "error|abort" "$work/$1.err" || echo "no message"
}
out_of_memory() { grep -q -E "can't allocate memory|Cannot allocate memory|std::bad_alloc|failed to map segment" "$work/$1.err"; }

failed() {  # failed NAME RC: a run that should have worked did not: reported, and the script exits 1
  log "run $1 FAILED (exit $2): $(why "$1")"
  tail -n 5 "$work/$1.err" >&2 || true
  echo "$1: exit $2: $(why "$1")" >> "$work/failures"
}

# ---- the grid: M = S, spans planted at p% of S on every head, CP 1, 2, 4 (+ a baseline each) ----
for M in "${sizes[@]}"; do
  for p in "${spans_pct[@]}"; do
    span=$(( (M * p + 50) / 100 ))
    planted=$(per_head "$span")
    common=(--attn-span "$M" --span-init-heads "$planted" --batch-size "$batch" --steps "$steps" --log-every 1)
    for C in "${cps[@]}"; do
      for kind in run base; do
        block=$M; [[ "$kind" == base ]] && block=$((64 * C))
        name="$kind-$M-$p-$C"
        log "M = S = $M, spans $span ($p% of S), CP $C, $kind (block $block)"
        rc=0; train "$name" "$C" 0 "${common[@]}" --block-size "$block" || rc=$?
        (( rc == 0 )) || failed "$name" "$rc"
        echo "{\"name\": \"$name\", \"kind\": \"$kind\", \"M\": $M, \"p\": $p, \"span\": $span, \"cp\": $C, \
\"block\": $block, \"rc\": $rc}" >> "$work/grid"
      done
    done
  done
done

# ---- goal 3: a per-rank memory limit, the ladder at CP 1, twice the longest block at CP 2 ----
ladder_span=$(( (ladder_s + 5) / 10 ))
planted=$(per_head "$ladder_span")
lad=(--attn-span "$ladder_s" --span-init-heads "$planted" --batch-size 1 --steps 2 --log-every 1)
ladder_rec() { echo "$1" >> "$work/ladder"; }

# need CP M: the smallest RLIMIT_DATA (MiB, to $res) under which CP ranks train block M; empty when
# the run fails without a limit too (reported as a failure).
need() {
  local cp="$1" M="$2" name="need-$1-$2" rc=0
  train "$name" "$cp" 0 "${lad[@]}" --block-size "$M" || rc=$?
  if (( rc != 0 )); then failed "$name" "$rc"; return 0; fi
  local lo=128 hi=4096
  while ! train "$name" "$cp" "$hi" "${lad[@]}" --block-size "$M"; do
    lo=$hi; hi=$((hi * 2))
    if (( hi > 65536 )); then failed "$name" "fits no limit up to 64 GiB"; return 0; fi
  done
  while (( hi - lo > res )); do
    local mid=$(( (lo + hi) / 2 ))
    if train "$name" "$cp" "$mid" "${lad[@]}" --block-size "$M"; then hi=$mid; else lo=$mid; fi
  done
  echo "$hi"
}

log "goal 3: what one rank needs at CP 1 for M = $ladder_mid and $((2 * ladder_mid)) (bisection on RLIMIT_DATA)"
need_mid=$(need 1 "$ladder_mid")
need_twice=$(need 1 $((2 * ladder_mid)))
if [[ -n "$need_mid" && -n "$need_twice" ]]; then
  limit=$(( (need_mid + need_twice) / 2 ))
  ladder_rec "{\"event\": \"limit\", \"limit_mib\": $limit, \"mid\": $ladder_mid, \"need_mid\": $need_mid, \
\"need_twice\": $need_twice, \"span\": $ladder_span}"
  longest=0
  for M in "${ladder[@]}"; do
    log "goal 3: CP 1, M = $M under RLIMIT_DATA $limit MiB"
    rc=0; train "lad-1-$M" 1 "$limit" "${lad[@]}" --block-size "$M" || rc=$?
    oom=false; if (( rc != 0 )) && out_of_memory "lad-1-$M"; then oom=true; fi
    ladder_rec "{\"event\": \"rung\", \"cp\": 1, \"M\": $M, \"rc\": $rc, \"oom\": $oom, \"name\": \"lad-1-$M\", \
\"why\": $(why "lad-1-$M" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}"
    if (( rc != 0 )); then
      [[ "$oom" == true ]] || failed "lad-1-$M" "$rc"
      break
    fi
    longest=$M
  done
  if (( longest > 0 )); then
    M=$((2 * longest))
    log "goal 3: CP 2, M = $M under RLIMIT_DATA $limit MiB per rank"
    rc=0; train "lad-2-$M" 2 "$limit" "${lad[@]}" --block-size "$M" || rc=$?
    oom=false; if (( rc != 0 )) && out_of_memory "lad-2-$M"; then oom=true; fi
    (( rc == 0 )) || [[ "$oom" == true ]] || failed "lad-2-$M" "$rc"
    ladder_rec "{\"event\": \"rung\", \"cp\": 2, \"M\": $M, \"rc\": $rc, \"oom\": $oom, \"name\": \"lad-2-$M\", \
\"why\": $(why "lad-2-$M" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()))')}"
    log "goal 3: what each rank needs at CP 2 for M = $M (bisection)"
    need_cp2=$(need 2 "$M")
    if [[ -n "$need_cp2" ]]; then ladder_rec "{\"event\": \"need_cp2\", \"M\": $M, \"need\": $need_cp2}"; fi
  fi
fi

# ---- the table, the goals, the records ----
python3 - "$work" <<'PY'
import json, math, os, sys
from bench_record import record

work = sys.argv[1]
setup = json.load(open(f"{work}/setup.json"))
L, D, H, B, RAMP = setup["layers"], setup["d_model"], setup["heads"], setup["batch"], setup["ramp"]
dh = D // H
quick = bool(setup["quick"])


def records(name):
    path = f"{work}/{name}/metrics.jsonl"
    if not os.path.exists(path):
        return []
    return [r for r in map(json.loads, open(path)) if "step_time_max_s" in r]


def window(z, S):  # kernels::effective_window with granule 64
    needed = max(int(math.floor(z + RAMP)) + 1, 1)
    return min((needed + 63) // 64 * 64, S)


def fmt(xs, f="{:.0f}"):
    return ", ".join(f.format(x).replace("-0", "0") if f.format(x).strip("-0.%") == "" else f.format(x) for x in xs)


grid = [json.loads(l) for l in open(f"{work}/grid")]
runs = {(g["kind"], g["M"], g["p"], g["cp"]): g for g in grid}
rows = {}  # (M, p, C) -> figures
for g in grid:
    if g["kind"] != "run":
        continue
    M, p, C = g["M"], g["p"], g["cp"]
    base = runs[("base", M, p, C)]
    recs, base_recs = records(g["name"]), records(base["name"])
    row = {"M": M, "p": p, "C": C, "span": g["span"], "ok": g["rc"] == 0 and bool(recs),
           "base_ok": base["rc"] == 0 and bool(base_recs)}
    m = M // C
    row["allgather"] = 2 * (C - 1) * m * H * dh * 2 * B * L * 4 / 1e6  # per rank, MB (1e6 bytes)
    row["ring"] = 2 * (C - 1) * (m * H * dh * 2 * B * L * 4) / 1e6      # C-1 hops of one chunk, each way
    if row["ok"]:
        last = recs[-1]
        steady = [r for r in recs if r["step"] >= 2] or recs
        row["peak"] = last["peak_memory_mb"]
        row["step_s"] = sum(r["step_time_max_s"] for r in steady) / len(steady)
        row["halo"] = last["halo_mb_per_step"]
        wait = [sum(r["cp_comm_wait_s"][k] for r in steady) / len(steady) for k in range(C)]
        row["share"] = [w / row["step_s"] for w in wait]
        row["windows"] = sorted({window(z, M) for layer in last["spans"] for z in layer})
        row["span_last"] = sum(map(sum, last["spans"])) / sum(map(len, last["spans"]))
    if row["ok"] and row["base_ok"]:
        row["base"] = base_recs[-1]["peak_memory_mb"]
        row["act"] = [a - b for a, b in zip(row["peak"], row["base"])]
    rows[(M, p, C)] = row

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "cpu")
print(f"Machine: {cpu}, {os.cpu_count()} cores; mpirun, CP ranks of 1 thread each (oversubscribed past the cores).")
print()
print(f"## Context parallelism: {L} layers, d_model {D}, {H} heads of {dh}, ff {setup.get('ff', 256)}, B {B}, "
      f"M = S, fp32, {setup['steps']} steps per run, 1 thread per rank" + (" (--quick: smoke test, not figures)" if quick else ""))
print()
print("Activation = peak RSS minus the peak RSS of the same run with a 64-position chunk per rank (block 64 x CP), "
      "rank by rank. All-gather / ring: bytes each rank would send for the current block's K/V forward and dK/dV "
      "backward (computed from the shapes). Halo share: cp_comm_wait_s / step time.")
print()
print("| M = S | spans (planted, windows at the end) | CP | peak RSS per rank (MiB) | baseline per rank (MiB) | "
      "activation per rank (MiB) | busiest activation / CP 1 | step time (s) | halo MB/step per rank | "
      "halo wait share of step, per rank | all-gather MB/step per rank | ring MB/step per rank | "
      "halo / all-gather (all ranks; busiest rank) |")
print("|---:|---|---:|---|---|---|---:|---:|---|---|---:|---:|---|")
for (M, p, C), r in sorted(rows.items()):
    spans = f"{r['span']} ({p}% of S)"
    if not r["ok"]:
        print(f"| {M} | {spans} | {C} | run failed | | | | | | | {r['allgather']:.2f} | {r['ring']:.2f} | |")
        continue
    spans += f", W {fmt(r['windows'])}"
    case = f"M=S {M}, spans {p}% of S, CP {C}"
    act1 = rows.get((M, p, 1), {}).get("act")
    act, rel = "baseline failed", ""
    if "act" in r:
        act = fmt(r["act"])
        if act1 and max(act1) > 0:
            r["rel"] = max(r["act"]) / max(act1)
            rel = f"{r['rel']:.3f}"
            if C > 1 and r["rel"] > 0:
                record("context_parallel", case, "activation memory vs CP 1 (busiest rank)", r["rel"], "x")
        if max(r["act"]) > 0:
            record("context_parallel", case, "activation memory per rank (busiest)", max(r["act"]), "MiB")
    base = fmt(r["base"]) if "base" in r else "failed"
    ratio_all = sum(r["halo"]) / (C * r["allgather"]) if C > 1 else None
    ratio_max = max(r["halo"]) / r["allgather"] if C > 1 else None
    r["ratio_all"], r["ratio_max"] = ratio_all, ratio_max
    ratio = f"{100 * ratio_all:.1f}%; {100 * ratio_max:.1f}%" if C > 1 else "-"
    print(f"| {M} | {spans} | {C} | {fmt(r['peak'])} | {base} | {act} | {rel} | {r['step_s']:.3f} | "
          f"{fmt(r['halo'], '{:.2f}')} | {fmt([100 * s for s in r['share']], '{:.1f}%')} | "
          f"{r['allgather']:.2f} | {r['ring']:.2f} | {ratio} |")
    record("context_parallel", case, "peak memory per rank (busiest)", max(r["peak"]), "MiB")
    record("context_parallel", case, "step time", r["step_s"], "s")
    if C > 1:
        record("context_parallel", case, "halo per rank (busiest)", max(r["halo"]), "MB/step")
        record("context_parallel", case, "all-gather per rank", r["allgather"], "MB/step")
        record("context_parallel", case, "halo / all-gather (all ranks)", 100 * ratio_all, "%")
        if max(r["share"]) > 0:
            record("context_parallel", case, "halo wait share of step (busiest)", 100 * max(r["share"]), "%")

outcomes = []


def goal(number, case, ok, text):
    outcomes.append((number, ok))
    print(f"{'PASS' if ok else 'FAIL'} goal {number}: {text}")
    record("context_parallel", case, f"goal {number} met (1 yes, 0 no)", 1 if ok else 0, "")


print()
Mmax = max(M for M, _, _ in rows)
for p in sorted({p for _, p, _ in rows}):
    one = rows.get((Mmax, p, 1), {})
    for C in sorted({C for _, _, C in rows if C > 1}):
        r = rows.get((Mmax, p, C), {})
        bound = 1 / C + 0.10
        case = f"M=S {Mmax}, spans {p}% of S, CP {C}"
        if "act" not in r or "act" not in one:
            goal(1, case, False, f"M {Mmax}, spans {p}% of S, CP {C}: a run or its baseline failed")
        elif max(one["act"]) <= 0:
            goal(1, case, False, f"M {Mmax}, spans {p}% of S, CP {C}: CP 1's activation memory is not above "
                 f"its baseline ({max(one['act']):.0f} MiB): not measurable at this size")
        else:
            rel = max(r["act"]) / max(one["act"])
            goal(1, case, rel <= bound,
                 f"M {Mmax}, spans {p}% of S, CP {C}: activation per rank {fmt(r['act'])} MiB, busiest "
                 f"{max(r['act']):.0f} = {rel:.3f} x CP 1's {max(one['act']):.0f} MiB (peak {max(one['peak']):.0f} "
                 f"- baseline {max(one['base']):.0f}); bound 1/{C} + 10% = {bound:.3f}")
for M in sorted({M for M, _, _ in rows}):
    for C in sorted({C for _, _, C in rows if C > 1}):
        r = rows.get((M, 10, C), {})
        case = f"M=S {M}, spans 10% of S, CP {C}"
        if not r.get("ok"):
            goal(2, case, False, f"M {M}, spans 10% of S, CP {C}: the run failed")
            continue
        goal(2, case, r["ratio_all"] <= 0.15,
             f"M {M}, spans 10% of S (windows {fmt(r['windows'])}), CP {C}: halo {sum(r['halo']):.2f} MB/step over "
             f"all ranks = {100 * r['ratio_all']:.1f}% of an all-gather's {C * r['allgather']:.2f} MB (busiest rank "
             f"{max(r['halo']):.2f} of {r['allgather']:.2f} MB = {100 * r['ratio_max']:.1f}%); bound 15%")

ladder = [json.loads(l) for l in open(f"{work}/ladder")]
limit = next((e for e in ladder if e["event"] == "limit"), None)
rungs = [e for e in ladder if e["event"] == "rung"]
need2 = next((e for e in ladder if e["event"] == "need_cp2"), None)
print()
if limit is None:
    goal(3, "memory limit", False, "the runs that set the limit failed (see the failures above)")
else:
    S, sp = setup["ladder_s"], limit["span"]
    print(f"Goal 3 (B 1, S {S}, every span {sp} = 10% of S, 2 steps): per-rank limit RLIMIT_DATA = {limit['limit_mib']} MiB, "
          f"halfway between what one rank needs at CP 1 for M {limit['mid']} ({limit['need_mid']} MiB) and for M "
          f"{2 * limit['mid']} ({limit['need_twice']} MiB), each by bisection to {setup['res']} MiB.")
    print()
    print("| CP | M | under the limit | peak RSS per rank (MiB) |")
    print("|---:|---:|---|---|")
    for e in rungs:
        recs = records(e["name"])
        peak = fmt(recs[-1]["peak_memory_mb"]) if e["rc"] == 0 and recs else ""
        outcome = "trains" if e["rc"] == 0 else f"fails (exit {e['rc']}: {e['why']})"
        print(f"| {e['cp']} | {e['M']} | {outcome} | {peak} |")
    record("context_parallel", "memory limit", "RLIMIT_DATA per rank", limit["limit_mib"], "MiB")
    one = [e for e in rungs if e["cp"] == 1]
    trained = [e["M"] for e in one if e["rc"] == 0]
    longest = max(trained) if trained else 0
    two = next((e for e in rungs if e["cp"] == 2), None)
    failed1 = next((e for e in one if e["rc"] != 0), None)
    case = "memory limit"
    if not longest:
        goal(3, case, False, f"no block of the ladder trains at CP 1 under {limit['limit_mib']} MiB")
    elif failed1 is None:
        goal(3, case, False, f"every block of the ladder, up to {longest}, trains at CP 1 under {limit['limit_mib']} MiB: "
             "the ladder does not reach the limit")
    else:
        record("context_parallel", case, "longest block at CP 1", longest, "bytes")
        ok = failed1["M"] == 2 * longest and failed1["oom"] and two is not None and two["rc"] == 0
        cp2 = "trains" if two and two["rc"] == 0 else f"fails ({two['why'] if two else 'not run'})"
        needs = f"; each rank needs {need2['need']} MiB at CP 2 for it" if need2 else ""
        goal(3, case, ok, f"under RLIMIT_DATA {limit['limit_mib']} MiB per rank the longest block at CP 1 is {longest}; "
             f"{2 * longest} fails at CP 1 ({'out of memory: ' if failed1['oom'] else 'NOT an allocation failure: '}"
             f"{failed1['why']}) and {cp2} at CP 2{needs}")
        if need2:
            record("context_parallel", case, f"per-rank need at CP 2 for M {2 * longest}", need2["need"], "MiB")

failures = open(f"{work}/failures").read().strip()
print()
met = {n: all(ok for k, ok in outcomes if k == n) for n in sorted({k for k, _ in outcomes})}
print("Goals: " + ", ".join(f"{n} {'PASS' if ok else 'FAIL'} ({sum(1 for k, o in outcomes if k == n and o)}/"
                            f"{sum(1 for k, _ in outcomes if k == n)} checks)" for n, ok in met.items()))
if failures:
    print()
    print("Runs that failed (not skipped: their rows say so):")
    for line in failures.splitlines():
        print(f"- {line}")
PY
echo
echo "Wall time: $SECONDS s."
if [[ -s "$work/failures" ]]; then exit 1; fi
