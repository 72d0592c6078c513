#pragma once
// One post-norm layer, as the reference's TransformerSeqLayer:
//   h = LN1(h + Attn(h, cache));  h = LN2(h + FF(h)),  FF(h) = fc2(dropout(relu(fc1(h)))).
#include "model/span_attention_layer.h"

namespace adaspan::model {

struct LayerOutput {
  at::Tensor hidden;  // [B, M, d_model]
  LayerCache next_cache;
};

class TransformerLayer : public torch::nn::Module {
 public:
  explicit TransformerLayer(const ModelConfig& config);
  LayerOutput forward(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  // Tensor parallelism: `heads` of the attention, rank tp.rank's ff / tp.size units of the
  // feed-forward (rows of fc1, columns of fc2; fc2's bias is added once, after the sum).
  void shard(const TensorParallel& tp, const std::vector<int64_t>& heads);
  SpanAttentionLayer& attention() { return *attn_; }
  const SpanAttentionLayer& attention() const { return *attn_; }

 private:
  double dropout_;
  TensorParallel tp_;
  std::shared_ptr<SpanAttentionLayer> attn_;
  std::shared_ptr<LayerNormParams> norm1_, norm2_;
  std::shared_ptr<LinearParams> fc1_, fc2_;
};

}  // namespace adaspan::model
