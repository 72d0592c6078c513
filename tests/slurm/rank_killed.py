#!/usr/bin/env python3
"""Slurm test 3: a rank killed mid-run (SIGKILL: what a lost node or the OOM killer does).

srun sees task 1 die and, with --kill-on-bad-exit, ends the step -> launch records the failed
attempt and starts the step again with --resume auto (no requeue: the job keeps its allocation)
-> it resumes from the last periodic checkpoint -> the final param_norm is the uninterrupted
run's, exactly.

Why kill -9 from outside rather than `--fail-at-step N --fail-mode crash`: the rank gets no chance
to flush or say goodbye, its peer only sees a broken connection, and the job runs the very same
command line as the reference run (a fault-injection flag would be stored in its checkpoints).
"""
import os
import signal

from slurm_test import BINARY, CHECKPOINT_EVERY, Job, check, expect_completed_in_one_launch, reference_param_norm, \
    require_cluster


def rank_pid(job_id, rank):
    """The pid of `adaspan train` rank `rank` of the job's step (both virtual nodes are this host)."""
    wanted = {f"SLURM_JOB_ID={job_id}".encode(), f"SLURM_PROCID={rank}".encode()}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/exe") != str(BINARY):
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = set(f.read().split(b"\0"))
        except OSError:
            continue
        if wanted <= env and any(v.startswith(b"SLURM_STEP_ID=") for v in env):
            return int(pid)
    return None


require_cluster()
job = Job("rank_killed").submit()
try:
    # Past the second checkpoint, so the restart has one to resume from that is not step 0.
    killed_at = job.wait_for_step(2 * CHECKPOINT_EVERY + 50)
    pid = rank_pid(job.id, 1)
    check(pid, f"no process of rank 1 of job {job.id} found")
    os.kill(pid, signal.SIGKILL)
    status = job.wait()
except BaseException:
    job.cancel()
    raise

# The batch shell saw none of it: one launch, exit 0, no requeue.
expect_completed_in_one_launch(job, status)
# srun: task 1 killed, then the step ended (task 0 killed too, after KillWait).
ends = job.srun_task_ends()
check((1, "Killed") in ends, f"srun on the tasks: {ends}, expected task 1 Killed")
# launch: attempt 1 failed (srun's status), attempt 2 resumed and finished.
attempts = job.attempts()
check(len(attempts) == 2 and attempts[0]["exit_code"] not in (0, 2, 75, None) and attempts[1]["exit_code"] == 0,
      f"launch's attempts {job.attempts_summary()}, expected a failed one, then a finished one; log: {job.log}")
check(attempts[1]["command"].endswith("--resume auto"), f"attempt 2 ran {attempts[1]['command']!r}")
# The ranks: attempt 2 resumed from the newest checkpoint written before the kill.
events = [r for r in job.metrics() if "event" in r]
resumed = [e for e in events if e["event"] == "resumed"]
check(len(resumed) == 1, f"resumed events: {resumed}")
step = resumed[0]["step"]
check(step % CHECKPOINT_EVERY == 0 and 2 * CHECKPOINT_EVERY <= step <= killed_at + CHECKPOINT_EVERY,
      f"resumed at step {step}; rank 1 was killed after step {killed_at}")
check(not [e for e in events if e["event"] == "preempted"], "a preempted event: nothing signalled the ranks")
param_norm, reference = job.final_param_norm(), reference_param_norm()
check(param_norm == reference, f"final param_norm {param_norm!r} != uninterrupted {reference!r}")
print(f"PASS: job {job.id}: rank 1 killed after step {killed_at}, srun exit {attempts[0]['exit_code']}, "
      f"launch resumed at step {step}; param_norm {param_norm!r} as uninterrupted")
