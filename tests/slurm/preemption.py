"""The path of a preempted job, the same whoever sent the USR1 (scancel or the time limit)."""
from slurm_test import STEPS, check, expect_completed, expect_lines, reference_param_norm


def check_preempted_and_resumed(job, status, first_step):
    """Asserts every layer's part; `first_step`: a step the first run had reached before the signal."""
    expect_completed(job, status, 1)
    expect_lines(job, [
        job.started_line(0),
        r"received SIGUSR1: passing it to adaspan launch",
        r"adaspan launch exited 75",
        rf"requeued job {job.id} \(restart_count 0 -> 1\)",
        job.started_line(1),
        r"adaspan launch exited 0",
        job.finished_line(),
    ])
    # srun: both ranks exited 75. (The first 75 makes srun end the step, --kill-on-bad-exit, but
    # its SIGTERM only sets the other rank's stop flag again.)
    ends = sorted(job.srun_task_ends())
    check(ends == [(0, "Exited with exit code 75"), (1, "Exited with exit code 75")], f"srun on the tasks: {ends}")
    # launch: one attempt per job, the first preempted (75), the resumed one finished.
    attempts = [(a["attempt"], a["exit_code"]) for a in job.attempts()]
    check(attempts == [(1, 75), (1, 0)], f"launch's attempts {job.attempts_summary()}, expected 1: 75, then 1: 0")
    # The ranks: one checkpoint at the step they stopped at, and the requeued job resumed from it.
    events = [r for r in job.metrics() if "event" in r]
    preempted = [e for e in events if e["event"] == "preempted"]
    resumed = [e for e in events if e["event"] == "resumed"]
    check(len(preempted) == 1 and preempted[0]["signal"] == 10, f"preempted events: {preempted}")
    step = preempted[0]["step"]
    check(first_step <= step < STEPS, f"preempted at step {step}: not after step {first_step} and before {STEPS}")
    check(preempted[0]["checkpoint"] == step, f"preempted event {preempted[0]}: no checkpoint at its step")
    check(any(e["event"] == "checkpoint" and e["step"] == step for e in events), f"no checkpoint record at {step}")
    check(len(resumed) == 1 and resumed[0]["step"] == step and resumed[0]["ranks"] == 2,
          f"resumed events {resumed}, expected one at step {step} on 2 ranks")
    check(resumed[0]["path"].endswith(f"/ckpt-{step}.h5"), f"resumed from {resumed[0]['path']}")
    param_norm, reference = job.final_param_norm(), reference_param_norm()
    check(param_norm == reference, f"final param_norm {param_norm!r} != uninterrupted {reference!r}")
    print(f"PASS: job {job.id} preempted at step {step}, requeued, resumed there; "
          f"param_norm {param_norm!r} as uninterrupted")
