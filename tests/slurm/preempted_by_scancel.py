#!/usr/bin/env python3
"""Slurm test 2: `scancel --signal=USR1 --batch` mid-run, followed through every layer.

batch shell (passes USR1 on) -> launch -> srun -> both ranks checkpoint at the same step and exit
75 -> srun, then launch, exit 75 -> the shell requeues the job -> the requeued job (restart count
1) resumes from that checkpoint -> the final param_norm is the uninterrupted run's, exactly.
"""
import subprocess

from slurm_test import Job, check, require_cluster
from preemption import check_preempted_and_resumed

require_cluster()
job = Job("preempted_by_scancel").submit()
try:
    seen = job.wait_for_step(300)
    signal = subprocess.run(["scancel", "--signal=USR1", "--batch", str(job.id)], capture_output=True, text=True)
    check(signal.returncode == 0, f"scancel --signal=USR1 --batch {job.id}: {signal.stderr.strip()}")
    status = job.wait()
except BaseException:
    job.cancel()
    raise
check_preempted_and_resumed(job, status, first_step=seen)
