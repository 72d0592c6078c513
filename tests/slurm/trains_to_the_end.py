#!/usr/bin/env python3
"""Slurm test 1: `sbatch --wait` of the CPU template, 2 nodes x 1 task, trains to the end.

Every layer says it finished: sbatch --wait and the job (COMPLETED, 0:0, never restarted), the
batch shell (launch exited 0), launch (one attempt, exit 0), the ranks (2 in every record). Its
param_norm is the other tests' uninterrupted reference.
"""
from slurm_test import STEPS, Job, check, expect_completed_in_one_launch, require_cluster, save_reference

require_cluster()
job = Job("trains_to_the_end")
status = job.run()
expect_completed_in_one_launch(job, status)
attempts = job.attempts()
check([a["exit_code"] for a in attempts] == [0], f"launch's attempts {job.attempts_summary()}, expected one, exit 0")
check(attempts[0]["command"].startswith("srun --mpi=pmix --kill-on-bad-exit=1 "),
      f"launch ran {attempts[0]['command']!r}")
training = [r for r in job.metrics() if "bpc" in r]
check(training and training[-1]["step"] == STEPS, f"last training record at step {training[-1:]}")
check({r["ranks"] for r in training} == {2}, f"ranks in the training records: {({r['ranks'] for r in training})}")
check(not [r for r in job.metrics() if r.get("event") in ("preempted", "resumed")], "a preempted or resumed event")
param_norm = job.final_param_norm()
save_reference(param_norm)
print(f"PASS: job {job.id} COMPLETED on 2 ranks, param_norm {param_norm!r}")
