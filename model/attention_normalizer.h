#pragma once
// What turns a head's scores into attention weights (--normalizer, --asentmax-scale), with the
// parameters that learn it:
//   softmax, entmax15   no parameters
//   ASEntmax            1.5-entmax of scores scaled per query by λ = 1 + β·(log n)^γ, n = the keys
//                       the query can see + 2 (Vasylenko et al. 2025). β, γ per head ("beta",
//                       "gamma": [H]; the paper's 'learn': β ~ U(0.1, 1), γ ~ N(0, 0.1)) or from
//                       the query's hidden state ("beta_proj", "gamma_proj": d_model -> H;
//                       'adapt-softplus-tanh': β = softplus(W_b x), γ = 2 tanh(W_g x)).
// The layer registers it as its "asentmax" module when it has parameters, so their names stay
// "layers.L.attn.asentmax.<name>".
#include "kernels/span_attention.h"
#include "model/model_config.h"

#include <torch/nn/module.h>

#include <memory>

namespace adaspan::model {

class AttentionNormalizer : public torch::nn::Module {
 public:
  explicit AttentionNormalizer(kernels::Normalizer kind) : kind_(kind) {}

  kernels::Normalizer kind() const { return kind_; }
  // λ of local head `head`'s queries for the kernels; empty for λ = 1. h: [B, M, d_model], the
  // layer's input in the parameters' dtype (kept by the returned function).
  virtual kernels::QueryScale query_scale(const at::Tensor& /*h*/, int64_t /*head*/) const { return {}; }
  // Keep only the heads at `head_index` ([H_local] int64) of every per-head parameter.
  virtual void shard(const at::Tensor& /*head_index*/) {}

 private:
  kernels::Normalizer kind_;
};

// The normalizer of `config`, its parameters initialised (ASEntmax draws from ATen's generator:
// construct it where the reference draws them, after the layer's projections).
std::shared_ptr<AttentionNormalizer> make_attention_normalizer(const ModelConfig& config);

}  // namespace adaspan::model
