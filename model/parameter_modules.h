#pragma once
// Parameter holders with the reference's names ("weight", "bias"), so that named_parameters()
// reads like the reference's state_dict. The math is in the callers (at::linear, at::layer_norm).
#include <torch/nn/module.h>

namespace adaspan::model {

// y = x W^T (+ b); W: [out, in], U(+-1/sqrt(in)) init as nn.Linear.
struct LinearParams : torch::nn::Module {
  LinearParams(int64_t in, int64_t out, bool with_bias);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight, bias;
};

// LayerNorm over the last dim, eps 1e-5, gamma = 1, beta = 0.
struct LayerNormParams : torch::nn::Module {
  explicit LayerNormParams(int64_t dim);
  at::Tensor forward(const at::Tensor& x) const;
  at::Tensor weight, bias;
};

}  // namespace adaspan::model
