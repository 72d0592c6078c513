#!/usr/bin/env python3
"""Slurm test 4: an allocation the run cannot use is refused at once, by every layer.

Two cases: more ranks than --batch-size streams (4 tasks, --batch-size 2), and --tp not dividing
the tasks (3 tasks, --tp 2). Each time rank 0 prints one line and every rank exits 2 before
writing anything -> launch does not retry it (exit 2) -> the batch shell does not requeue -> the
job FAILED with exit code 2, and the run dir holds no checkpoint and no metrics.
"""
import re

from slurm_test import TRAIN, Job, check, expect_lines, job_state, require_cluster


def train_with(flag, value):
    args = list(TRAIN)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


CASES = [
    ("too_many_ranks", ["--ntasks-per-node=2"], train_with("--batch-size", "2"),
     r"--batch-size 2 gives fewer streams than the 4 data-parallel ranks"),
    ("tp_not_dividing", ["--ntasks=3", "--ntasks-per-node=2"], train_with("--tp", "2"),
     r"world size 3 is not divisible by --tp 2"),
]

require_cluster()
for name, layout, train, error in CASES:
    job = Job(f"bad_allocation_{name}")
    status = job.run(layout, train, timeout=60)
    state = job_state(job.id)
    # Inside out, so that the first failure names the cause. The ranks: every one exited 2, none
    # was ended by srun's SIGTERM (--kill-on-bad-exit after the first 2), which would make srun's
    # status 143 and have launch retry a run that cannot start.
    ends = sorted(job.srun_task_ends())
    tasks = int(re.search(r"tasks (\d+)", job.log_lines()[0]).group(1))
    check(ends == [(t, "Exited with exit code 2") for t in range(tasks)], f"{name}: srun on the {tasks} tasks: {ends}")
    errors = [line for line in job.log.read_text().splitlines() if "error" in line and "adaspan" in line]
    check(len(errors) == 1 and re.fullmatch(rf"adaspan train: error: {error}", errors[0]),
          f"{name}: expected one line from rank 0 ('{error}'), got {errors}")
    written = sorted(p.name for p in job.run_dir.iterdir() if p.name not in ("attempts.jsonl", ".lock"))
    check(not written, f"{name}: the refused run wrote {written} into {job.run_dir}")
    # launch: one attempt, not retried; the batch shell: no requeue; Slurm: FAILED with exit 2.
    check([a["exit_code"] for a in job.attempts()] == [2], f"{name}: launch's attempts {job.attempts_summary()}")
    expect_lines(job, [
        job.started_line(0, tasks),
        r"adaspan launch exited 2",
        r"the run was refused \(bad usage or layout, exit 2; rank 0 says why above\): not retried",
    ])
    check(status == 2, f"{name}: sbatch --wait exited {status}, expected 2; log: {job.log}")
    check(state == {"JobState": "FAILED", "Restarts": "0", "ExitCode": "2:0"}, f"{name}: job {job.id}: {state}")
    print(f"{name}: job {job.id} FAILED (exit 2), one line from rank 0: {errors[0]}")
print("PASS: both bad allocations refused before anything was written")
