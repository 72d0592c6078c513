#pragma once
// One optimizer step on one block, shared by the trainer and the benchmarks:
// forward (cache carried) -> NLL + L1 span term -> backward -> optimizer(lr) -> clamp spans.
#include "model/adaptive_span_lm.h"
#include "trainer/gradient_reducer.h"
#include "trainer/optimizer.h"

namespace adaspan::trainer {

struct StepOutput {
  double nll = 0;  // mean NLL of the block, nats
};

// inputs, targets: [B, M] int64. `cache` is replaced by the next block's cache. With a reducer,
// gradients are averaged over its data-parallel group before the update.
StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const at::Tensor& inputs,
                      const at::Tensor& targets, model::ModelCache& cache, double lr,
                      GradientReducer* reducer = nullptr);

}  // namespace adaspan::trainer
