#pragma once
// The training loop: stream sampler -> model -> loss (NLL + L1 span term) -> backward ->
// warmup LR -> optimizer -> clamp spans -> metrics. One rank for now; caches carried across
// blocks, per stream.
#include "model/process_group.h"
#include "trainer/train_config.h"

#include <mpi.h>

#include <vector>

namespace adaspan::trainer {

struct TrainResult {
  int64_t steps = 0;               // the last step (the run's --steps)
  int64_t first_step = 1;          // > 1 when resumed
  double final_train_bpc = 0;     // over the last log window
  double param_norm = 0;
  std::vector<std::vector<double>> spans;  // [layer][head], bytes
};

// Checks what can be checked before anything is written: sizes, divisibility, data files. The
// same on every rank, so every rank refuses a bad config without talking to the others.
// Throws std::invalid_argument with one line naming the flag and the value.
void validate(const TrainConfig& config);

// This rank's place in data parallelism. group == nullptr: a single rank.
struct DataParallel {
  model::ProcessGroup* group = nullptr;    // gradients and parameters (MPI or NCCL)
  model::ProcessGroup* control = nullptr;  // host scalars: metrics, agreement (MPI); default: group
  MPI_Comm comm = MPI_COMM_NULL;           // the same ranks, for collective checkpoint writes
  int rank = 0, size = 1;
  int ranks_on_node = 1;  // CPU threads are shared among them
};

// Trains; rank 0 writes RUN_DIR/metrics.jsonl and progress on stdout. `quiet` silences stdout.
TrainResult train(const TrainConfig& config, const DataParallel& dp, bool quiet = false);
TrainResult train(const TrainConfig& config, bool quiet = false);

}  // namespace adaspan::trainer
