#pragma once
// Central finite differences in double precision, the yardstick for every analytic gradient.
#include <ATen/ATen.h>

#include <functional>

namespace adaspan::testing {

// d f / d input, element by element: (f(x + eps) - f(x - eps)) / (2 eps). `input` is perturbed in
// place and restored; f must read it.
inline at::Tensor numerical_gradient(const std::function<double()>& f, at::Tensor input, double eps = 1e-6) {
  at::NoGradGuard no_grad;
  at::Tensor grad = at::zeros_like(input);
  at::Tensor flat = input.view({-1});
  at::Tensor grad_flat = grad.view({-1});
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double saved = flat[i].item<double>();
    flat[i] = saved + eps;
    const double plus = f();
    flat[i] = saved - eps;
    const double minus = f();
    flat[i] = saved;
    grad_flat[i] = (plus - minus) / (2 * eps);
  }
  return grad;
}

// max |a - b| / max(|b|_inf, floor): one relative error per tensor.
inline double relative_error(const at::Tensor& a, const at::Tensor& b, double floor = 1e-12) {
  const double diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
  const double scale = std::max(b.to(at::kDouble).abs().max().item<double>(), floor);
  return diff / scale;
}

}  // namespace adaspan::testing
