#!/usr/bin/env python3
"""Slurm test 2b: the time-limit warning, `--time=1 --signal=B:USR1@29`, mid-run.

The same path as `scancel --signal=USR1 --batch` (preemption.py), the signal sent by slurmctld this
time. slurmctld looks at time limits only every 30 s (its log at debug2: "Testing job time
limits") and warns at the first look with `end - now <= N + 30`: with a 60 s limit and N = 29, the
first look while the job runs, 1 s or more after its start. The run trains for 6 s on an idle
machine, 25 s on a busy one, so the look has to be brought to the training: the job is submitted
20 s or more before a look, suspended (`scontrol suspend`: SIGSTOP, its time limit stopped too)
once it trains, and resumed 2 s before a look. The requeued job would be warned again at its first
look: it is given 5 minutes while it waits in the queue, as if the next allocation had the time
it needs.
"""
import re
import subprocess
import time
from datetime import datetime

from slurm_test import CLUSTER_DIR, Job, check, fail, job_state, require_cluster
from preemption import check_preempted_and_resumed

PERIOD = 30  # slurmctld's PERIODIC_TIMEOUT
LOG = CLUSTER_DIR / "log/slurmctld.log"


def looks():
    """Times (epoch s) of slurmctld's time-limit looks so far."""
    stamps = re.findall(r"^\[([0-9T:.-]+)\] debug2: Testing job time limits", LOG.read_text(), re.M)
    return [datetime.fromisoformat(s).timestamp() for s in stamps]


def scontrol(*args):
    subprocess.run(["scontrol", *args], check=True)


require_cluster()
deadline = time.time() + PERIOD + 5
while not looks():  # a fresh slurmctld looks first 30 s after its start
    check(time.time() < deadline, f"no 'Testing job time limits' in {LOG} (SlurmctldDebug=debug2?)")
    time.sleep(0.5)
while looks()[-1] + PERIOD - time.time() < 20:  # no look while the ranks start: 20 s for that
    time.sleep(0.2)

job = Job("preempted_by_time_limit").submit(["--time=1", "--signal=B:USR1@29"])
try:
    job.wait_for_step(300)
    scontrol("suspend", str(job.id))
    warning_at = looks()[-1] + PERIOD
    while warning_at - 2 < time.time() + 1:
        warning_at += PERIOD
    time.sleep(warning_at - 2 - time.time())
    scontrol("resume", str(job.id))
    while job.process.poll() is None and job_state(job.id)["Restarts"] == "0":
        time.sleep(0.2)
    if job.process.poll() is None:
        scontrol("update", f"JobId={job.id}", "TimeLimit=5")
    status = job.wait()
except BaseException:
    job.cancel()
    raise
if not any(line.startswith("received SIGUSR1") for line in job.log_lines()):
    fail(f"the warning never came: expected at the look at {datetime.fromtimestamp(warning_at):%T}, "
         f"looks at {[f'{datetime.fromtimestamp(t):%T}' for t in looks()[-3:]]}; log: {job.log}")
check_preempted_and_resumed(job, status, first_step=300)
