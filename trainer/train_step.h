#pragma once
// One optimizer step on one block, shared by the trainer and the benchmarks:
// forward (cache carried) -> NLL + L1 span term -> backward -> optimizer(lr) -> clamp spans.
#include "model/adaptive_span_lm.h"
#include "trainer/gradient_reducer.h"
#include "trainer/optimizer.h"

namespace adaspan::trainer {

#include <functional>

struct StepOutput {
  double nll = 0;        // mean NLL of the block, nats
  bool finite = true;    // loss and gradients finite on this rank
  bool applied = true;   // the update was made
};

// inputs, targets: [B, M] int64. `cache` is replaced by the next block's cache. With a reducer,
// gradients are averaged over its data-parallel group before the update. A step whose loss or
// gradients are not finite is skipped (no update; the cache is cleared, it may hold NaNs).
// `agree(finite)` returns whether every rank's step is finite (one collective), so that all ranks
// skip together; none: this rank decides alone. `loss_factor` scales the loss (fault injection).
StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const at::Tensor& inputs,
                      const at::Tensor& targets, model::ModelCache& cache, double lr,
                      GradientReducer* reducer = nullptr, const std::function<bool(bool)>& agree = {},
                      double loss_factor = 1.0);

}  // namespace adaspan::trainer
