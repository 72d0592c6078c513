#!/usr/bin/env python3
"""Runs one fixed small training command with two adaspan binaries and compares their metrics.

    scripts/compare_metrics.py OLD_BINARY NEW_BINARY [WORK_DIR]

A refactoring that claims "behaviour unchanged" must give the same metrics.jsonl for the same
command: every record and every field, except what a clock measures (throughput, times, memory).
The commands: one rank (adaptive spans, kv cache, validation, checkpoints, a planted NaN step that
is skipped), one rank with ASEntmax, and, when mpirun is found, TP 2 with head rebalancing and
DP 2 with ZeRO-1, gradient accumulation and dynamic spans. Exit status 1 and the
first differing field when they differ.
"""
import json
import os
import shutil
import subprocess
import sys

CLOCK_FIELDS = {"tokens_per_s", "elapsed_s", "step_time_max_s", "step_time_min_s", "comm_wait_s",
                "peak_memory_mb", "attention_s_per_step", "attention_s_per_step_before", "seconds",
                "stall_seconds", "run_id"}  # (run_id: a new one each run)
SMALL = ["--layers", "2", "--d-model", "32", "--heads", "4", "--ff-size", "64", "--attn-span", "64",
         "--block-size", "32", "--batch-size", "4", "--steps", "24", "--log-every", "4", "--eval-every", "8",
         "--eval-steps", "2", "--threads", "1", "--warmup-steps", "4"]


def setting(args, flag, value):
    """args with `flag value` (replacing the flag's value when present)."""
    if flag in args:
        i = args.index(flag)
        return args[:i + 1] + [value] + args[i + 2:]
    return args + [flag, value]


COMMANDS = {
    "one-rank": ([], SMALL + ["--checkpoint-every", "8", "--fail-at-step", "11", "--fail-mode", "nan"]),
    # Windows are multiples of 64 bytes: spans of 5 and 10 cost 64 keys, 200 and 150 cost 256 and 192.
    "tp2-rebalance": (["-np", "2"], setting(SMALL, "--attn-span", "256") +
                      ["--tp", "2", "--rebalance-every", "4", "--span-init-heads", "5,10,200,150"]),
    "dp2-zero-accum-dynamic": (["-np", "2"], SMALL + ["--zero", "1", "--grad-accum", "2", "--span-mode", "dynamic",
                                                      "--checkpoint-every", "12"]),
    # Three NaN steps in a row, two tolerated: back to step 8 at half the LR.
    "rollback": ([], SMALL + ["--checkpoint-every", "8", "--fail-at-step", "10", "--fail-mode", "nan",
                              "--fail-count", "3", "--max-bad-steps", "2"]),
    "asentmax-hidden": ([], SMALL + ["--normalizer", "asentmax", "--asentmax-scale", "hidden", "--attention", "adaptive"]),
}


def mpirun():
    found = shutil.which("mpirun")
    if not found:
        return None
    return [found, "--allow-run-as-root", "--oversubscribe"]


def run(binary, launcher, args, run_dir):
    shutil.rmtree(run_dir, ignore_errors=True)
    command = (launcher if launcher else []) + [binary, "train"] + args + ["--run-dir", run_dir]
    env = dict(os.environ, OMP_NUM_THREADS="1", ADASPAN_ATTEMPT="1")
    subprocess.run(command, check=True, capture_output=True, env=env)
    records = []
    for line in open(os.path.join(run_dir, "metrics.jsonl")):
        record = json.loads(line)
        records.append({k: v for k, v in record.items() if k not in CLOCK_FIELDS})
    return records


def main(argv):
    if len(argv) not in (2, 3):
        sys.exit(__doc__)
    old, new = argv[0], argv[1]
    work = argv[2] if len(argv) == 3 else "compare-metrics"
    failed = False
    for name, (np_args, args) in COMMANDS.items():
        launcher = None
        if np_args:
            launcher = mpirun()
            if launcher is None:
                print(f"{name}: skipped (no mpirun)")
                continue
            launcher = launcher + np_args
        a = run(old, launcher, args, os.path.join(work, name))
        b = run(new, launcher, args, os.path.join(work, name))
        if len(a) != len(b):
            print(f"{name}: {len(a)} records with the old binary, {len(b)} with the new")
            failed = True
            continue
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                keys = sorted(set(x) | set(y))
                diff = [k for k in keys if x.get(k) != y.get(k)]
                print(f"{name}: record {i} differs in {diff}: {[x.get(k) for k in diff]} vs {[y.get(k) for k in diff]}")
                failed = True
                break
        else:
            print(f"{name}: {len(a)} records identical (clock fields aside)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
