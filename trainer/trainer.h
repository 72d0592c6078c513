#pragma once
// `adaspan train` as a library call: validate the config, then run a TrainingRun
// (trainer/training_run.h) to its last step or to an agreed stop signal. One rank, or every rank
// of a DP x TP grid each calling train() with its own Parallelism.
#include "cluster/communicator.h"
#include "model/context_parallel.h"
#include "model/process_group.h"
#include "model/tensor_parallel.h"
#include "trainer/run_refused.h"
#include "trainer/train_config.h"

#include <functional>
#include <stdexcept>
#include <vector>

namespace adaspan::trainer {

// Exit statuses of `adaspan train` besides 0 (done), 1 (error) and 2 (bad usage).
constexpr int kExitPreempted = 75;  // stopped by SIGUSR1/SIGTERM/SIGINT after a checkpoint: resume with --resume auto
constexpr int kExitWatchdog = 86;   // a step or collective exceeded --step-timeout; the job was aborted
constexpr int kExitCheckpointUnwritable = 74;  // the run dir took no checkpoint (full, read-only): not restarted

// Every rank agreed that a checkpoint could not be written to the run dir (too little space, a
// failed write, a refused commit). A restart would lose the same steps again, so launch does not
// restart it: free space, then --resume auto.
struct CheckpointUnwritable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct TrainResult {
  int64_t steps = 0;           // the last step (the run's --steps)
  int64_t first_step = 1;      // > 1 when resumed
  double final_train_bpc = 0;  // over the last log window
  double param_norm = 0;
  std::vector<std::vector<double>> spans;  // [layer][head], bytes
  int64_t skipped_steps = 0;               // non-finite steps skipped
  int64_t rollbacks = 0;                   // returns to the last checkpoint after too many in a row
  bool preempted = false;                  // stopped by a signal after checkpointing step `steps`
  int stop_signal = 0;
};

// Checks what can be checked before anything is written: sizes, divisibility, data files. The
// same on every rank, so every rank refuses a bad config without talking to the others.
// Throws std::invalid_argument with one line naming the flag and the value.
void validate(const TrainConfig& config);

// This rank's place in the job (built by launcher/train_command.cpp from cluster::TrainingGroups).
// The default is a single rank.
struct Parallelism {
  model::ProcessGroup* gradients = nullptr;  // the data-parallel group (MPI or NCCL); nullptr: one replica
  model::ProcessGroup* control = nullptr;    // every rank, host scalars (MPI); nullptr: `gradients`
  cluster::Communicator files;               // every rank, collective checkpoint writes; not valid: one rank
  int dp_rank = 0, dp_size = 1;              // among the data-parallel replicas
  int world_rank = 0;                        // among all ranks (rank 0 logs)
  model::TensorParallel tp;                  // this rank's tensor-parallel group (none: TP = 1)
  model::ContextParallel cp;                 // this rank's context-parallel group (none: CP = 1)
  int ranks_on_node = 1;                     // CPU threads are shared among them
  std::function<void()> abort_collectives;   // the watchdog's last act (e.g. ncclCommAbort); may be empty
  bool mpi_thread_multiple = false;          // MPI allows a background thread's collectives (async checkpoints)
};

// Trains; rank 0 writes RUN_DIR/metrics.jsonl and progress on stdout. `quiet` silences stdout.
TrainResult train(const TrainConfig& config, const Parallelism& parallelism, bool quiet = false);
TrainResult train(const TrainConfig& config, bool quiet = false);

}  // namespace adaspan::trainer
