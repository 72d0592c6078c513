#!/usr/bin/env bash
# The body of the Slurm templates (adaspan.sbatch for GPUs, adaspan-cpu.sbatch for CPUs): they set
# the #SBATCH lines and ADASPAN_DEVICE, then exec this with the `adaspan train` flags. The layers:
#
#   sbatch -> this batch shell -> adaspan launch -> srun -> one `adaspan train` rank per task
#
# - A stop signal (the time-limit warning `--signal=B:USR1@N`, `scancel --signal=USR1 --batch`, a
#   preemption's SIGTERM) reaches this shell; it is passed to launch, launch passes it to srun, srun
#   to every rank: the ranks finish the step, checkpoint together and exit 75. srun, then launch,
#   exit 75, and this shell requeues the job. The requeued job runs this script again with the same
#   RUN_DIR (the job id stays) and `--resume auto` continues from that checkpoint.
# - A rank that dies (a node lost, the OOM killer): srun --kill-on-bad-exit=1 ends the others and
#   exits non-zero, and launch starts the step again with --resume auto (MAX_RESTARTS times).
# - A bad layout (more ranks than --batch-size streams, --tp not dividing the ranks): rank 0 says
#   why in one line and every rank exits 2 before writing anything; launch does not retry it and
#   the job fails.
# In the job log: this shell's `adaspan-slurm:` lines (job id, SLURM_RESTART_COUNT, signals, launch's
# exit status, the requeue), launch's lines on each srun attempt (also RUN_DIR/attempts.jsonl), and
# srun's on each rank that did not exit 0.
#
# Environment (all optional): ADASPAN (binary), ADASPAN_DEVICE (cuda|cpu), RUN_DIR, THREADS,
# CHECKPOINT_MINUTES (30), CHECKPOINT_EVERY (steps; unset: by the clock only), STEP_TIMEOUT,
# MAX_RESTARTS, BACKOFF (launch's first wait in seconds).
set -uo pipefail  # not -e: every exit status below is looked at

log() { echo "adaspan-slurm: $*"; }

: "${SLURM_JOB_ID:?run this through sbatch (scripts/adaspan.sbatch or scripts/adaspan-cpu.sbatch)}"
ADASPAN=${ADASPAN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/build/adaspan}
# On the shared file system (every rank writes its share of each checkpoint; rank 0 the metrics),
# never node-local /tmp; the same after a requeue (the job id stays), so the run continues there.
RUN_DIR=${RUN_DIR:-$SLURM_SUBMIT_DIR/runs/$SLURM_JOB_NAME-$SLURM_JOB_ID}
export OMP_NUM_THREADS=${THREADS:-${SLURM_CPUS_PER_TASK:-1}}

log "job $SLURM_JOB_ID restart_count ${SLURM_RESTART_COUNT:-0} nodes $SLURM_JOB_NODELIST" \
  "tasks ${SLURM_NTASKS:-1} run_dir $RUN_DIR"

# Stop signals go on to launch. bash runs a trap only between commands, so `$!` is already
# launch's pid whenever one can have started; one that comes earlier is sent right after the start.
stop_signal=
forwarded=
interrupted=
forward() {
  stop_signal=$1 interrupted=1
  log "received SIG$1: passing it to adaspan launch"
  if [ -n "${!:-}" ]; then
    forwarded=1
    kill -s "$1" "$!" 2>/dev/null
  fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

# Checkpoints by the clock (agreed across ranks at a step boundary), so a preemption or a lost node
# costs at most CHECKPOINT_MINUTES of work whatever a step takes; CHECKPOINT_EVERY steps too if set.
checkpoints=(--checkpoint-minutes "${CHECKPOINT_MINUTES:-30}")
[ -n "${CHECKPOINT_EVERY:-}" ] && checkpoints+=(--checkpoint-every "$CHECKPOINT_EVERY")

# srun: --mpi=pmix (Debian's Open MPI has no PMI-1/2, so --mpi=pmi2 fails); --kill-on-bad-exit=1
# so that one dead rank ends the step instead of leaving the others blocked in a collective.
"$ADASPAN" launch --max-restarts "${MAX_RESTARTS:-3}" --backoff "${BACKOFF:-30}" -- \
  srun --mpi=pmix --kill-on-bad-exit=1 \
  "$ADASPAN" train --device "${ADASPAN_DEVICE:-cuda}" --threads "$OMP_NUM_THREADS" --run-dir "$RUN_DIR" \
  "${checkpoints[@]}" --step-timeout "${STEP_TIMEOUT:-900}" --resume auto "$@" &
[ -n "$stop_signal" ] && [ -z "$forwarded" ] && kill -s "$stop_signal" "$!" 2>/dev/null

# A trapped signal ends `wait` early (status > 128) with launch still running: wait again.
while :; do
  interrupted=
  wait "$!"
  status=$?
  [ -z "$interrupted" ] && break
done

# The forwarded signal came before launch could handle it (in the first fraction of a second):
# launch died of it before any attempt started, which is a preemption like any other.
if [ -n "$stop_signal" ] && [ "$status" -eq $((128 + $(kill -l "$stop_signal"))) ]; then
  log "adaspan launch was ended by SIG$stop_signal before it started the run"
  status=75
fi
log "adaspan launch exited $status"

case $status in
  0) log "run finished: $RUN_DIR" ;;
  75)
    # Preempted: back in the queue (the job needs --requeue); the next start, cred_expire seconds
    # later, resumes from the newest checkpoint. A job already cancelled cannot be requeued: it ends.
    if scontrol requeue "$SLURM_JOB_ID"; then
      log "requeued job $SLURM_JOB_ID (restart_count ${SLURM_RESTART_COUNT:-0} -> $((${SLURM_RESTART_COUNT:-0} + 1)))"
      exit 0
    fi
    log "requeue of job $SLURM_JOB_ID refused: resume with the same RUN_DIR and --resume auto"
    ;;
  2) log "the run was refused (bad usage or layout, exit 2; rank 0 says why above): not retried" ;;
  74) log "the run dir took no checkpoint (exit 74: full or read-only): free space, then submit again" ;;
  *) log "the run failed (exit $status); its attempts are in $RUN_DIR/attempts.jsonl" ;;
esac
exit "$status"
