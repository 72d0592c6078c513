"""What the Slurm tests share: the private cluster they run on (tests/slurm/cluster.sh), the job
they submit (scripts/adaspan-cpu.sbatch, which runs the same scripts/slurm_job.sh as the GPU
template), and reading what each layer left behind.

Environment: ADASPAN (the binary), ADASPAN_SOURCE_DIR, ADASPAN_SLURM_DIR (the cluster's directory,
default build/slurm-cluster). Exit status: 0 pass, 1 fail, 77 skip (no Slurm here, except under
CI=true, where that fails).
"""
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("ADASPAN_SOURCE_DIR") or Path(__file__).resolve().parents[2])
BINARY = Path(os.environ.get("ADASPAN") or SOURCE_DIR / "build/adaspan").resolve()
CLUSTER_DIR = Path(os.environ.get("ADASPAN_SLURM_DIR") or SOURCE_DIR / "build/slurm-cluster").resolve()
TEMPLATE = SOURCE_DIR / "scripts/adaspan-cpu.sbatch"

STEPS = 3200
# A tiny model: 3200 steps take 6 s on 2 ranks of 1 thread on an idle 2-core machine (25 s on a
# busy one): long enough to be interrupted past its second checkpoint.
TRAIN = ["--layers", "1", "--d-model", "32", "--heads", "2", "--ff-size", "64", "--attn-span", "64",
         "--block-size", "32", "--batch-size", "4", "--log-every", "50", "--eval-every", "0",
         "--steps", str(STEPS)]
# The tests' layout: 2 virtual nodes x 1 task x 1 CPU.
LAYOUT = ["--nodes=2", "--ntasks-per-node=1", "--cpus-per-task=1"]
CHECKPOINT_EVERY = 500


def fail(message):
    print(f"FAIL: {message}", flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def unavailable(message):
    """No Slurm to test with: a skip (77), or a failure under CI=true."""
    if os.environ.get("CI") == "true":
        fail(f"{message} (CI=true: the Slurm tests must run; scripts/setup.sh installs Slurm)")
    print(f"SKIP: {message}", flush=True)
    sys.exit(77)


def require_cluster():
    """Points the Slurm clients at the private cluster, or skips / fails without one."""
    missing = [t for t in ("sbatch", "scontrol", "scancel", "squeue", "sinfo") if not shutil.which(t)]
    if missing:
        unavailable(f"no Slurm here ({', '.join(missing)} not found)")
    conf = CLUSTER_DIR / "slurm.conf"
    if not (CLUSTER_DIR / "pids").exists():
        unavailable(f"no cluster running in {CLUSTER_DIR}: tests/slurm/cluster.sh up {CLUSTER_DIR}")
    os.environ["SLURM_CONF"] = str(conf)
    check(BINARY.is_file(), f"adaspan binary {BINARY} not found (set ADASPAN)")
    nodes = subprocess.run(["sinfo", "-h", "-o", "%D %T"], capture_output=True, text=True, timeout=20)
    check(nodes.returncode == 0, f"the cluster in {CLUSTER_DIR} does not answer: {nodes.stderr.strip()}")
    # A test killed at its timeout leaves its job behind: cancel it, so this one has the nodes.
    deadline = time.monotonic() + 30
    while jobs := subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout.split():
        check(time.monotonic() < deadline, f"jobs {jobs} still in the queue after scancel")
        subprocess.run(["scancel", "--full", *jobs], capture_output=True)
        time.sleep(0.5)


def corpus():
    """~300 KB of seeded pseudo-English, the same bytes on every machine (no external input)."""
    path = CLUSTER_DIR / "tests/corpus.txt"
    if not path.exists():
        rng = random.Random(21)
        words = ["".join(rng.choices("etaoinshrdlucmfwypvbgkjqxz", k=rng.randint(1, 9))) for _ in range(3000)]
        text, size = [], 0
        while size < 300_000:
            sentence = " ".join(rng.choice(words) for _ in range(rng.randint(4, 16))).capitalize() + ".\n"
            text.append(sentence)
            size += len(sentence)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(text))
        tmp.rename(path)
    return path


def read_jsonl(path):
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job_state(job_id):
    """JobState, Restarts and ExitCode ("0:0") from `scontrol show job` (there is no sacct)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True).stdout
    fields = dict(re.findall(r"\b(JobState|Restarts|ExitCode)=(\S+)", out))
    check(fields, f"job {job_id} is not known to slurmctld any more (scontrol show job: {out.strip()!r})")
    return fields


class Job:
    """One batch job of the CPU template in a fresh directory CLUSTER_DIR/tests/NAME."""

    def __init__(self, name):
        self.dir = CLUSTER_DIR / "tests" / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.run_dir = self.dir / "run"
        self.log = self.dir / "job.out"
        self.id = None
        self.env = dict(os.environ, ADASPAN=str(BINARY), RUN_DIR=str(self.run_dir), BACKOFF="1",
                        CHECKPOINT_EVERY=str(CHECKPOINT_EVERY), OMP_NUM_THREADS="1",
                        # Two virtual nodes on one host: Open MPI's shared-memory transport crashes
                        # between them (scripts/adaspan-cpu.sbatch).
                        OMPI_MCA_btl="self,tcp")

    def command(self, sbatch_options=(), train=None):
        """The sbatch line (README.md shows it): --wait returns the job's exit status at its end."""
        train = TRAIN if train is None else train
        return (["sbatch", "--wait", "--parsable", f"--job-name={self.dir.name}", f"--output={self.log}",
                 *LAYOUT, *sbatch_options, str(TEMPLATE), "--data", str(corpus()), *train])

    def submit(self, sbatch_options=(), train=None):
        """Starts `sbatch --wait` in the background; returns once the job id is known."""
        self.process = subprocess.Popen(self.command(sbatch_options, train), cwd=self.dir, env=self.env,
                                        stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()
        if not line.strip():
            fail(f"sbatch did not submit the job (exit {self.process.wait()}; its error above)")
        self.id = int(line.split(";")[0])
        self.started = time.monotonic()
        return self

    def wait(self, timeout=100):
        """sbatch's exit status (the job's, at its very end: after any requeue)."""
        try:
            return self.process.wait(timeout=max(1, timeout - (time.monotonic() - self.started)))
        except subprocess.TimeoutExpired:
            self.cancel()
            fail(f"job {self.id} did not end within {timeout} s; log: {self.log}")

    def run(self, sbatch_options=(), train=None, timeout=100):
        return self.submit(sbatch_options, train).wait(timeout)

    def cancel(self):
        if self.id is not None:
            subprocess.run(["scancel", "--full", str(self.id)], capture_output=True)

    def metrics(self):
        return read_jsonl(self.run_dir / "metrics.jsonl")

    def attempts(self):
        return read_jsonl(self.run_dir / "attempts.jsonl")

    def attempts_summary(self):
        """launch's attempts as "[attempt: exit code (cause)]", for failure messages."""
        return [f"{a['attempt']}: {a['exit_code']} ({a['cause']})" for a in self.attempts()]

    def started_line(self, restart_count, tasks=2):
        """The regex of the batch shell's first line in each run of the job."""
        return (rf"job {self.id} restart_count {restart_count} nodes n\[1-2\] tasks {tasks} "
                rf"run_dir {re.escape(str(self.run_dir))}")

    def finished_line(self):
        return rf"run finished: {re.escape(str(self.run_dir))}"

    def log_lines(self, prefix="adaspan-slurm: "):
        """The job log's lines of one layer: the batch shell's by default."""
        text = self.log.read_text() if self.log.exists() else ""
        return [line[len(prefix):] for line in text.splitlines() if line.startswith(prefix)]

    def srun_task_ends(self):
        """[(task, how it ended)] from srun's lines in the log, in order: srun names only the tasks
        that did not exit 0 ("srun: error: n1: tasks 0-1: Exited with exit code 2")."""
        ends = []
        for tasks, how in re.findall(r"^srun: error: \S+: tasks? ([\d,-]+): (.*)$", self.log.read_text(), re.M):
            for part in tasks.split(","):
                first, _, last = part.partition("-")
                ends += [(task, how) for task in range(int(first), int(last or first) + 1)]
        return ends

    def wait_for_step(self, step, timeout=60):
        """Blocks until rank 0 has logged a training record at `step` or later; returns that step."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail(f"job {self.id} ended (sbatch {self.process.returncode}) before step {step}; log: {self.log}")
            steps = [r["step"] for r in self.metrics() if "bpc" in r]
            if steps and steps[-1] >= step:
                return steps[-1]
            time.sleep(0.1)
        self.cancel()
        fail(f"job {self.id} did not reach step {step} within {timeout} s; log: {self.log}")

    def final_param_norm(self):
        done = [r for r in self.metrics() if r.get("event") == "done"]
        check(len(done) == 1, f"{len(done)} 'done' records in {self.run_dir}/metrics.jsonl, expected 1")
        check(done[0]["step"] == STEPS, f"the run ended at step {done[0]['step']}, not {STEPS}")
        return done[0]["param_norm"]


def expect_lines(job, expected):
    """The batch shell's lines, in order, each matching its regex (and nothing else between)."""
    lines = job.log_lines()
    check(len(lines) == len(expected),
          f"job log has {len(lines)} 'adaspan-slurm:' lines, expected {len(expected)}: {lines}")
    for line, pattern in zip(lines, expected):
        check(re.fullmatch(pattern, line), f"job log line {line!r} does not match {pattern!r}")


REFERENCE = CLUSTER_DIR / "tests/reference.json"


def expect_completed(job, status, restarts):
    """sbatch --wait exited 0 and the job COMPLETED (exit 0:0) after `restarts` requeues."""
    state = job_state(job.id)
    check(status == 0, f"sbatch --wait exited {status}, expected 0 (the job's end, after {restarts} requeues); "
                       f"log: {job.log}")
    check(state == {"JobState": "COMPLETED", "Restarts": str(restarts), "ExitCode": "0:0"}, f"job {job.id}: {state}")


def expect_completed_in_one_launch(job, status):
    """sbatch --wait exited 0, the job COMPLETED without a requeue, and the batch shell ran launch once,
    which exited 0."""
    expect_completed(job, status, 0)
    expect_lines(job, [
        job.started_line(0),
        r"adaspan launch exited 0",
        job.finished_line(),
    ])


def _reference_key():
    return {"train": TRAIN, "layout": LAYOUT, "checkpoint_every": CHECKPOINT_EVERY,
            "binary": [str(BINARY), BINARY.stat().st_mtime_ns, BINARY.stat().st_size]}


def save_reference(param_norm):
    """Test 1's uninterrupted run is the others' reference."""
    REFERENCE.write_text(json.dumps({"key": _reference_key(), "param_norm": param_norm}))


def reference_param_norm():
    """param_norm of an uninterrupted run of the same job: test 1's, else run here once per
    cluster and binary. Resuming on the same layout is bit-exact, so the tests compare exactly."""
    if REFERENCE.exists():
        saved = json.loads(REFERENCE.read_text())
        if saved["key"] == _reference_key():
            return saved["param_norm"]
    job = Job("reference")
    status = job.run()
    check(status == 0, f"the uninterrupted reference job {job.id} exited {status}; log: {job.log}")
    save_reference(job.final_param_norm())
    return job.final_param_norm()
