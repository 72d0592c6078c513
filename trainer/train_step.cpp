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

StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const std::vector<MicroBatch>& micro,
                      std::vector<model::ModelCache>& caches, double lr, GradientReducer* reducer,
                      const std::function<bool(bool)>& agree, double loss_factor) {
  const std::vector<at::Tensor> params = model.parameters();
  const int64_t parts = static_cast<int64_t>(micro.size());
  if (reducer) {
    reducer->prepare(parts);
  } else {
    for (auto& p : params) {
      if (p.grad().defined()) p.mutable_grad().zero_();
    }
  }
  std::vector<model::ModelCache> next(micro.size());
  at::Tensor nll_sum = at::zeros({}, at::kDouble);
  for (size_t k = 0; k < micro.size(); ++k) {
    model::LMOutput out = model.forward(micro[k].inputs, caches[k]);
    at::Tensor nll = at::nll_loss(out.log_probs.reshape({-1, out.log_probs.size(-1)}), micro[k].targets.reshape({-1}));
    if (loss_factor != 1.0) nll = nll * loss_factor;
    ((nll + out.span_loss) / static_cast<double>(parts)).backward();
    nll_sum += nll.detach().to(at::kCPU, at::kDouble);
    next[k] = std::move(out.next_cache);
  }
  if (reducer) reducer->finish();
  StepOutput result;
  result.nll = nll_sum.item<double>() / static_cast<double>(parts);
  result.finite = std::isfinite(result.nll) && gradients_finite(params);
  result.applied = agree ? agree(result.finite) : result.finite;
  if (result.applied) {
    optimizer.step(lr);
    model.clamp_spans();
    caches = std::move(next);
  } else {
    for (auto& c : caches) c.clear();
  }
  return result;
}

StepOutput train_step(model::AdaptiveSpanLM& model, Optimizer& optimizer, const at::Tensor& inputs,
                      const at::Tensor& targets, model::ModelCache& cache, double lr, GradientReducer* reducer) {
  std::vector<model::ModelCache> caches{std::move(cache)};
  const StepOutput out = train_step(model, optimizer, {{inputs, targets}}, caches, lr, reducer);
  cache = std::move(caches[0]);
  return out;
}

}  // namespace adaspan::trainer
