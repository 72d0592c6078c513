#include "trainer/train_step.h"

#include <ATen/ATen.h>

namespace adaspan::trainer {

StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const at::Tensor& inputs,
                      const at::Tensor& targets, model::ModelCache& cache, double lr,
                      GradientReducer* reducer) {
  model::LMOutput out = model.forward(inputs, cache);
  const at::Tensor nll =
      at::nll_loss(out.log_probs.reshape({-1, out.log_probs.size(-1)}), targets.reshape({-1}));
  if (reducer) {
    reducer->prepare();
  } else {
    for (auto& p : model.parameters()) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
  }
  (nll + out.span_loss).backward();
  if (reducer) reducer->finish();
  optimizer.step(lr);
  model.clamp_spans();
  cache = std::move(out.next_cache);
  return {nll.item<double>()};
}

}  // namespace adaspan::trainer
