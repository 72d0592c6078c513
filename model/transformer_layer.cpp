#include "model/transformer_layer.h"

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

LayerOutput TransformerLayer::forward(const at::Tensor& h, const LayerCache& cache,
                                      const at::Tensor& key_pe) {
  AttentionOutput attn = attn_->forward(h, cache, key_pe);
  at::Tensor x = norm1_->forward(h + attn.out);
  at::Tensor inner = at::relu(fc1_->forward(x));
  if (dropout_ > 0 && is_training()) inner = at::dropout(inner, dropout_, true);
  return {norm2_->forward(x + fc2_->forward(inner)), std::move(attn.next_cache)};
}

}  // namespace adaspan::model
