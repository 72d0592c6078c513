#include "kernels/entmax.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace adaspan::kernels {
namespace {

// tau of [x - tau]_+^2 summing to 1 (x already halved), along the last dim: [..., 1].
// With the k largest values in the support, tau_k = mean_k - sqrt((1 - ss_k)/k), where
// ss_k = k·(mean of squares - squared mean); the support size is the largest k with tau_k <= x_(k).
// Entries of -inf (keys a query may not see) sort last and stay out of every prefix.
at::Tensor threshold(const at::Tensor& x) {
  const int64_t n = x.size(-1);
  const at::Tensor sorted = std::get<0>(x.sort(-1, /*descending=*/true));
  const at::Tensor finite = at::isfinite(sorted);
  const at::Tensor values = at::where(finite, sorted, at::zeros_like(sorted));
  const at::Tensor k = at::arange(1, n + 1, x.options());
  const at::Tensor mean = values.cumsum(-1) / k;
  const at::Tensor mean_sq = (values * values).cumsum(-1) / k;
  const at::Tensor ss = k * (mean_sq - mean * mean);
  const at::Tensor delta = at::clamp_min((1 - ss) / k, 0);
  const at::Tensor tau = mean - at::sqrt(delta);
  const at::Tensor support = ((tau <= sorted) & finite).sum(-1, true);  // >= 1: the largest value is in
  return tau.gather(-1, support - 1);
}

class Entmax15Function : public torch::autograd::Function<Entmax15Function> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x) {
    at::Tensor half = x / 2;
    half = half - std::get<0>(half.max(-1, true));  // shift-invariant; keeps the numbers small
    const at::Tensor p = at::clamp_min(half - threshold(half), 0).pow(2);
    ctx->save_for_backward({p});
    return p;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const at::Tensor p = ctx->get_saved_variables()[0];
    const at::Tensor g = p.sqrt();  // d p_i / d x_i on the support (the 1/2 of x/2 cancels the 2)
    at::Tensor dx = grad_outputs[0] * g;
    dx = dx - g * (dx.sum(-1, true) / g.sum(-1, true));
    return {dx};
  }
};

}  // namespace

at::Tensor entmax15(const at::Tensor& x) { return Entmax15Function::apply(x); }

at::Tensor entmax15_bisection(const at::Tensor& x) {
  const at::Tensor half = x.to(at::kDouble) / 2;
  const at::Tensor top = std::get<0>(half.max(-1, true));
  at::Tensor lo = top - 1, hi = top;  // sum at tau = max - 1 is >= 1, at tau = max it is 0
  for (int i = 0; i < 100; ++i) {
    const at::Tensor mid = (lo + hi) / 2;
    const at::Tensor mass = at::clamp_min(half - mid, 0).pow(2).sum(-1, true);  // -inf entries add 0
    lo = at::where(mass >= 1, mid, lo);
    hi = at::where(mass >= 1, hi, mid);
  }
  return at::clamp_min(half - (lo + hi) / 2, 0).pow(2).to(x.scalar_type());
}

}  // namespace adaspan::kernels
