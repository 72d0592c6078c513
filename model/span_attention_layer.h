#pragma once
// Multi-head adaptive-span attention (Sukhbaatar et al. 2019, §3.2): each head h has its own
// span z_h = S * current_val[h], learned through the soft mask and an L1 penalty.
//   q = h W_q^T, k = h_all W_k^T, v = h_all W_v^T   (no biases, as the reference)
//   out = concat_h span_attention(q_h, k_h, v_h, key_pe, z_h) W_o^T
// Each head computes only the keys inside its own window (kernels::effective_window).
#include "model/layer_cache.h"
#include "model/model_config.h"
#include "model/parameter_modules.h"
#include "model/tensor_parallel.h"

#include <torch/nn/module.h>

namespace adaspan::model {

struct AttentionOutput {
  at::Tensor out;         // [B, M, d_model]
  LayerCache next_cache;  // for the next block (detached)
};

class SpanAttentionLayer : public torch::nn::Module {
 public:
  explicit SpanAttentionLayer(const ModelConfig& config);

  // Keeps only `heads` (canonical indices): their rows of W_q, W_k, W_v, their columns of W_o,
  // their spans; the output is then summed over the tensor-parallel group.
  void shard(const TensorParallel& tp, const std::vector<int64_t>& heads);
  // The canonical indices of the heads this layer computes (all of them without sharding).
  const std::vector<int64_t>& heads() const { return heads_; }
  // After a rebalance has replaced the parameters' slices: the heads they now hold.
  void set_heads(const std::vector<int64_t>& heads) { heads_ = heads; }

  // h: [B, M, d_model]; key_pe: [d_head, S].
  AttentionOutput forward(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);

  // Current spans z_h = S * current_val[h] of this layer's heads (heads()), in bytes.
  std::vector<double> spans() const;
  // lambda * S * mean_h(current_val): this layer's L1 span term (with sharding, this rank's heads'
  // share of it: the sum over its heads / H).
  at::Tensor span_loss() const;
  // current_val <- clamp(current_val, 0, 1), after every optimizer step (as the reference).
  void clamp_spans();
  // Wall seconds spent in this layer's attention forward so far (a host clock: meaningful on CPU,
  // launch time only on a GPU).
  double attention_seconds() const { return attention_seconds_; }
  // Rows the hidden cache keeps for the next block: the reference's get_cache_size().
  int64_t hidden_cache_size() const;


 private:
  at::Tensor attend_heads(const at::Tensor& q, const std::vector<at::Tensor>& keys,
                          const std::vector<at::Tensor>& values, const at::Tensor& key_pe,
                          const std::vector<int64_t>& windows);
  AttentionOutput forward_hidden(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  AttentionOutput forward_kv(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  std::vector<int64_t> head_windows() const;

  int64_t local_heads() const { return static_cast<int64_t>(heads_.size()); }

  ModelConfig config_;
  TensorParallel tp_;
  std::vector<int64_t> heads_;
  std::shared_ptr<LinearParams> proj_query_, proj_key_, proj_val_, proj_out_;
  at::Tensor current_val_;  // [H], span / S
  double attention_seconds_ = 0;
};

}  // namespace adaspan::model
