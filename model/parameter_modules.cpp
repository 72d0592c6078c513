#include "model/parameter_modules.h"

#include <ATen/ATen.h>

#include <cmath>

namespace adaspan::model {

LinearParams::LinearParams(int64_t in, int64_t out, bool with_bias) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", at::empty({out, in}).uniform_(-bound, bound));
  if (with_bias) bias = register_parameter("bias", at::empty({out}).uniform_(-bound, bound));
}

at::Tensor LinearParams::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

LayerNormParams::LayerNormParams(int64_t dim) {
  weight = register_parameter("weight", at::ones({dim}));
  bias = register_parameter("bias", at::zeros({dim}));
}

at::Tensor LayerNormParams::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, 1e-5);
}

}  // namespace adaspan::model
