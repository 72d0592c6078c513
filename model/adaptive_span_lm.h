#pragma once
// Byte-level adaptive-span transformer LM (the reference's TransformerSeq, adaptive span on,
// adaptive I/O and persistent memory off):
//   h = Emb(x);  h = Layer_l(h, cache_l) for each layer;  log p = log_softmax(h W_out^T + b_out)
// key_pe [d_head, S] is one relative-position parameter shared by every layer and head.
#include "model/transformer_layer.h"

#include <torch/nn/module.h>

namespace adaspan::model {

struct LMOutput {
  at::Tensor log_probs;   // [B, M, vocab]
  at::Tensor span_loss;   // 0-dim: sum over layers of lambda * S * mean_h(current_val)
  ModelCache next_cache;
};

class AdaptiveSpanLM : public torch::nn::Module {
 public:
  explicit AdaptiveSpanLM(const ModelConfig& config);

  // x: [B, M] int64 bytes. An empty cache (or empty per-layer entries) means all zeros.
  LMOutput forward(const at::Tensor& x, const ModelCache& cache);

  const ModelConfig& config() const { return config_; }
  // spans[layer][head] in bytes.
  std::vector<std::vector<double>> spans() const;
  void clamp_spans();
  // L2 norm of all parameters, accumulated in double.
  double parameter_norm() const;

 private:
  ModelConfig config_;
  std::shared_ptr<LinearParams> in_emb_, out_emb_;
  at::Tensor key_pe_;
  std::vector<std::shared_ptr<TransformerLayer>> layers_;
};

}  // namespace adaspan::model
