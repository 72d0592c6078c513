#include "trainer/train_step.h"

#include <ATen/ATen.h>

#include <cmath>

namespace adaspan::trainer {
namespace {

// Whether every gradient is finite: one pass and one host read (a NaN or Inf anywhere makes the
// double sum non-finite).
bool gradients_finite(const std::vector<at::Tensor>& params) {
  at::Tensor total;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    const at::Tensor s = p.grad().sum(at::kDouble);
    total = total.defined() ? total + s : s;
  }
  return !total.defined() || std::isfinite(total.item<double>());
}

}  // namespace

StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const at::Tensor& inputs,
                      const at::Tensor& targets, model::ModelCache& cache, double lr,
                      GradientReducer* reducer, const std::function<bool(bool)>& agree, double loss_factor) {
  model::LMOutput out = model.forward(inputs, cache);
  at::Tensor nll =
      at::nll_loss(out.log_probs.reshape({-1, out.log_probs.size(-1)}), targets.reshape({-1}));
  if (loss_factor != 1.0) nll = nll * loss_factor;
  const std::vector<at::Tensor> params = model.parameters();
  if (reducer) {
    reducer->prepare();
  } else {
    for (auto& p : params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
  }
  (nll + out.span_loss).backward();
  if (reducer) reducer->finish();
  StepOutput result;
  result.nll = nll.item<double>();
  result.finite = std::isfinite(result.nll) && gradients_finite(params);
  result.applied = agree ? agree(result.finite) : result.finite;
  if (result.applied) {
    optimizer.step(lr);
    model.clamp_spans();
    cache = std::move(out.next_cache);
  } else {
    cache.clear();
  }
  return result;
}

}  // namespace adaspan::trainer
