#include "model/transformer_layer.h"

#include "model/mixed_precision.h"

#include <ATen/ATen.h>

namespace adaspan::model {

TransformerLayer::TransformerLayer(const ModelConfig& config) : dropout_(config.dropout) {
  attn_ = register_module("attn", std::make_shared<SpanAttentionLayer>(config));
  norm1_ = register_module("norm1", std::make_shared<LayerNormParams>(config.d_model));
  auto ff = register_module("ff", std::make_shared<torch::nn::Module>());
  fc1_ = ff->register_module("fc1", std::make_shared<LinearParams>(config.d_model, config.ff_size, true));
  fc2_ = ff->register_module("fc2", std::make_shared<LinearParams>(config.ff_size, config.d_model, true));
  norm2_ = register_module("norm2", std::make_shared<LayerNormParams>(config.d_model));
}

LayerOutput TransformerLayer::forward(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe) {
  AttentionOutput attn = attn_->forward(h, cache, key_pe);
  at::Tensor x = norm1_->forward(h + attn.out);
  at::Tensor inner = at::relu(fc1_->forward(copy_to_tp_region(x, tp_)));  // [B, M, ff / TP]
  if (dropout_ > 0 && is_training()) inner = at::dropout(inner, dropout_, true);
  // Row parallel: the partial products are summed over ranks in the parameters' dtype (autocast
  // may have computed them in bf16; MPI has no bf16).
  const at::Tensor ff =
      tp_.active() ? reduce_from_tp_region(in_dtype_of(at::linear(inner, fc2_->weight), fc2_->weight), tp_) + fc2_->bias
                   : fc2_->forward(inner);
  return {norm2_->forward(x + ff), std::move(attn.next_cache)};
}

void TransformerLayer::shard(const TensorParallel& tp, const std::vector<int64_t>& heads) {
  attn_->shard(tp, heads);
  tp_ = tp;
  at::NoGradGuard no_grad;
  const int64_t units = fc1_->weight.size(0) / tp.size, first = tp.rank * units;
  fc1_->weight.set_data(fc1_->weight.narrow(0, first, units).clone());
  fc1_->bias.set_data(fc1_->bias.narrow(0, first, units).clone());
  fc2_->weight.set_data(fc2_->weight.narrow(1, first, units).contiguous());
}

}  // namespace adaspan::model
