#pragma once
// One optimizer step, shared by the trainer and the benchmarks: for each of K micro-batches,
// forward (its own cache carried) -> (NLL + L1 span term) / K -> backward, gradients accumulating;
// then the data-parallel average (once per step, overlapped with the last micro-batch's backward),
// optimizer(lr), clamp spans. With equal micro-batches the mean of their mean NLLs is the batch's
// mean NLL, so K micro-batches compute what one batch of all their streams computes.
#include "model/adaptive_span_lm.h"
#include "trainer/gradient_reducer.h"
#include "trainer/optimizer.h"

#include <functional>
#include <vector>

namespace adaspan::trainer {

struct StepOutput {
  double nll = 0;       // mean NLL over the step's bytes, nats
  bool finite = true;   // loss and gradients finite on this rank
  bool applied = true;  // the update was made
};

struct MicroBatch {
  at::Tensor inputs, targets;  // [b, M] int64
};

// caches[k] belongs to micro[k] and is replaced by its next block's cache. With a reducer,
// gradients are averaged over its data-parallel group before the update. A step whose loss or
// gradients are not finite is skipped (no update; the caches are cleared, they may hold NaNs).
// `agree(finite)` returns whether every rank's step is finite (one collective), so that all ranks
// skip together; none: this rank decides alone. `loss_factor` scales the loss (fault injection).
StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const std::vector<MicroBatch>& micro,
                      std::vector<model::ModelCache>& caches, double lr, GradientReducer* reducer = nullptr,
                      const std::function<bool(bool)>& agree = {}, double loss_factor = 1.0);

// One batch, no accumulation.
StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const at::Tensor& inputs,
                      const at::Tensor& targets, model::ModelCache& cache, double lr,
                      GradientReducer* reducer = nullptr);

}  // namespace adaspan::trainer
