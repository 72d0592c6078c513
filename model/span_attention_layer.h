#pragma once
// Multi-head adaptive-span attention (Sukhbaatar et al. 2019, §3.2): each head h has its own
// span z_h = S * current_val[h], learned through the soft mask and an L1 penalty.
//   q = h W_q^T, k = h_all W_k^T, v = h_all W_v^T   (no biases, as the reference)
//   out = concat_h span_attention(q_h, k_h, v_h, key_pe, z_h) W_o^T
// Each head computes only the keys inside its own window (kernels::effective_window).
// The variants of ModelConfig (dynamic per-token spans, fixed / full / sparse windows, entmax
// normalizers) go through kernels::banded_attention; the default through the fused span kernel.
#include "kernels/span_attention.h"
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
  // The last forward's per-token span statistics belonged to the old heads: dropped.
  void set_heads(const std::vector<int64_t>& heads) {
    heads_ = heads;
    span_stats_ = {};
  }

  // h: [B, M, d_model]; key_pe: [d_head, S].
  AttentionOutput forward(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);

  // Current spans z_h = S * current_val[h] of this layer's heads (heads()), in bytes. Dynamic spans:
  // the mean z_t of the last forward per head (S·sigmoid(b_h) before any); fixed windows: S.
  std::vector<double> spans() const;
  // Dynamic spans: per head, the mean and the 99th percentile of z_t over the last forward's tokens.
  struct SpanStats {
    std::vector<double> mean, p99;
  };
  const SpanStats& span_stats() const { return span_stats_; }
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
  // Every head's attention, then W_o (summed over the tensor-parallel group). h: [B, M, d_model],
  // the layer input; q: [B, H_local, M, d_head]; keys[h], values[h]: [B, Lc_h + M, d_head].
  at::Tensor attend_heads(const at::Tensor& h, const at::Tensor& q, const std::vector<at::Tensor>& keys,
                          const std::vector<at::Tensor>& values, const at::Tensor& key_pe,
                          const std::vector<int64_t>& windows);
  // One head (local index `head`) over `window` keys: the fused span kernel (the default variant)...
  // The span kernels' options for a window of `window` keys (dropout when training).
  kernels::SpanAttentionOptions span_options(int64_t window) const;
  at::Tensor attend_head_fused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& key_pe, int64_t head, int64_t window);
  // ... or the general banded path (every other variant; dynamic spans and ASEntmax's hidden-state
  // scales read h).
  at::Tensor attend_head_general(const at::Tensor& h, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_pe, int64_t head, int64_t window);
  // ASEntmax's per-query scale 1 + beta·(log n)^gamma for `head` and queries [first, first + T) of
  // a call that sees `cache_len` keys before its first query in a window of W: [B, T].
  at::Tensor asentmax_scale(const at::Tensor& h, int64_t head, int64_t first, int64_t count, int64_t cache_len,
                            int64_t window) const;
  // Dynamic spans z_t = S·sigmoid(v_h·x_t / sqrt(d_model) + b_h): [B, M, H_local]; also sets the
  // span loss and stats.
  at::Tensor dynamic_spans(const at::Tensor& h);
  AttentionOutput forward_hidden(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  AttentionOutput forward_kv(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  // Keys each head needs this block (the widest query's window with dynamic spans).
  std::vector<int64_t> head_windows() const;

  int64_t local_heads() const { return static_cast<int64_t>(heads_.size()); }

  ModelConfig config_;
  TensorParallel tp_;
  std::vector<int64_t> heads_;
  std::shared_ptr<LinearParams> proj_query_, proj_key_, proj_val_, proj_out_;
  at::Tensor current_val_;  // [H], span / S (adaptive, static spans only)
  at::Tensor dynamic_weight_, dynamic_bias_;  // v_h: [H, d_model], b_h: [H] (dynamic spans only)
  at::Tensor asentmax_beta_, asentmax_gamma_;  // [H] each (--asentmax-scale head)
  std::shared_ptr<LinearParams> asentmax_beta_proj_, asentmax_gamma_proj_;  // d_model -> H (hidden)
  at::Tensor token_spans_;        // dynamic: z of the current forward, [B, M, H_local]
  int64_t block_position_ = 0;    // stream position of the current forward's first query (LayerCache)
  at::Tensor dynamic_span_loss_;  // dynamic: lambda * mean(z_t) of the last forward
  SpanStats span_stats_;
  double attention_seconds_ = 0;
};

}  // namespace adaspan::model
