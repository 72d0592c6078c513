#pragma once
// Live training objects <-> checkpointing::TrainingState. Capturing shares the live tensors (no
// copy); restoring checks every piece first and changes nothing if one is missing or misshapen.
#include "checkpointing/training_state.h"
#include "data/stream_sampler.h"
#include "model/adaptive_span_lm.h"
#include "trainer/optimizer.h"

#include <ATen/core/Tensor.h>

namespace adaspan::trainer {

// The metrics window open since the last record: this rank's sum of step NLLs (nats) and their count.
struct MetricsWindow {
  double nll = 0;
  int64_t steps = 0;
};

// What the loop carries across a checkpoint besides the model, optimizer, data and caches.
struct CheckpointedProgress {
  MetricsWindow window;         // so a resumed run's first record covers the same steps
  int64_t halved_lr_until = 0;  // a rollback's halved-LR period, so a resume continues it
};

struct LiveTraining {
  model::AdaptiveSpanLM& model;
  Optimizer& optimizer;
  data::StreamSampler& sampler;
  // This rank's streams' caches, one per micro-batch (--grad-accum) of equal row ranges; the
  // checkpoint holds them stacked, so any number of micro-batches can resume.
  std::vector<model::ModelCache>& caches;
  CheckpointedProgress& progress;
  int rank = 0, ranks = 1;   // among all ranks (RNG states and metrics windows are per rank)
  int dp_rank = 0;           // among the replicas of this shard (DP x CP): replica 0 writes the sharded tensors
  bool writes_cache = true;  // false on context-parallel ranks but the first: they hold the same logical cache
};

checkpointing::TrainingState capture_state(const LiveTraining& live, int64_t step, int64_t tokens_seen,
                                           const std::string& config_json);

// Throws std::runtime_error naming the first missing or misshapen tensor; then nothing changed.
// RNG states are restored when the state carries them (same data-parallel layout).
void restore_state(const checkpointing::TrainingState& state, const LiveTraining& live);

}  // namespace adaspan::trainer
