#pragma once
// Multi-head adaptive-span attention (Sukhbaatar et al. 2019, §3.2): each head h has its own
// span z_h = S * current_val[h], learned through the soft mask and an L1 penalty.
//   q = h W_q^T, k = h_all W_k^T, v = h_all W_v^T   (no biases, as the reference)
//   out = concat_h span_attention(q_h, k_h, v_h, key_pe, z_h) W_o^T
// Each head computes only the keys inside its own window (kernels::effective_window).
// The variants of ModelConfig are two parts, each owning its parameters: the span policy
// (span_policy.h: static or dynamic learned spans, fixed / full / sparse windows; module "span")
// and the normalizer (attention_normalizer.h: softmax, entmax15, ASEntmax; module "asentmax").
// The kernels pick the implementation (kernels::span_attention).
#include "model/attention_normalizer.h"
#include "model/context_parallel.h"
#include "model/halo_exchange.h"
#include "model/layer_cache.h"
#include "model/model_config.h"
#include "model/parameter_modules.h"
#include "model/span_policy.h"
#include "model/tensor_parallel.h"

#include <torch/nn/module.h>

#include <map>
#include <string>

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
  // Context parallelism: this layer sees chunk cp.rank of each block (--cache kv only).
  void set_context_parallel(const ContextParallel& cp) { cp_ = cp; }
  // The canonical indices of the heads this layer computes (all of them without sharding).
  const std::vector<int64_t>& heads() const { return heads_; }
  // After a rebalance has replaced the parameters' slices: the heads they now hold.
  // The last forward's per-token span statistics belonged to the old heads: dropped.
  void set_heads(const std::vector<int64_t>& heads) {
    heads_ = heads;
    span_->forget_stats();
  }

  // h: [B, M, d_model]; key_pe: [d_head, S].
  AttentionOutput forward(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);

  // Current spans z_h = S * current_val[h] of this layer's heads (heads()), in bytes. Dynamic spans:
  // the mean z_t of the last forward per head (S·sigmoid(b_h) before any); fixed windows: S.
  std::vector<double> spans() const;
  // Dynamic spans: per head, the mean and the 99th percentile of z_t over the last forward's tokens.
  using SpanStats = model::SpanStats;
  const SpanStats& span_stats() const { return span_->stats(); }
  // lambda * S * mean_h(current_val): this layer's L1 span term (with sharding, this rank's heads'
  // share of it: the sum over its heads / H).
  at::Tensor span_loss() const;
  // current_val <- clamp(current_val, 0, 1), after every optimizer step (as the reference).
  void clamp_spans();
  // Wall seconds spent in this layer's attention forward so far (a host clock: meaningful on CPU,
  // launch time only on a GPU).
  double attention_seconds() const { return attention_seconds_; }
  // Context parallelism: query positions (per stream) computed while their halo was in flight,
  // summed over heads and forwards (the overlap; see attend_chunk).
  int64_t queries_before_halo() const { return queries_before_halo_; }
  // The other queries (per stream, summed the same way) whose scores were begun while the halo was
  // in flight (kernels::EarlyScores: the position terms q·key_pe).
  int64_t scores_begun_before_halo() const { return scores_begun_before_halo_; }
  // Rows the hidden cache keeps for the next block: the reference's get_cache_size().
  int64_t hidden_cache_size() const;
  // A stored state whose parameters under `prefix` ("layers.L.attn.") were trained at span
  // trained_span, mapped to this layer's longer S (see AdaptiveSpanLM::extend_span).
  void extend_span(std::map<std::string, at::Tensor>& state, const std::string& prefix, int64_t trained_span) const;

 private:
  // Every head's attention, then W_o (summed over the tensor-parallel group). h: [B, M, d_model],
  // the layer input; q: [B, H_local, M, d_head]; keys[h], values[h]: [B, Lc_h + M, d_head].
  at::Tensor attend_heads(const at::Tensor& h, const at::Tensor& q, const std::vector<at::Tensor>& keys,
                          const std::vector<at::Tensor>& values, const at::Tensor& key_pe,
                          const std::vector<int64_t>& windows);
  // heads[h]: [B, M, d_head] -> W_o of their concatenation (summed over the tensor-parallel group).
  at::Tensor project_heads(const std::vector<at::Tensor>& heads, const at::Tensor& key_pe);
  // Context parallelism: each head's queries whose window lies inside the chunk, and what the other
  // queries' scores need of no halo key, while `exchange` brings the halo; then the rest of those
  // queries with it (heads whose policy cannot split its queries: all of them after the halo). q, k_new, v_new:
  // the chunk's [B, H_local, m, d_head]. Returns the heads' outputs; `halo` gets the halo.
  std::vector<at::Tensor> attend_chunk(const at::Tensor& h, const at::Tensor& q, const at::Tensor& k_new,
                                       const at::Tensor& v_new, HaloExchange& exchange, const at::Tensor& key_pe,
                                       const std::vector<int64_t>& windows, Halo& halo);
  // The kernels' options for local head `head` over `window` keys: dropout when training, the
  // normalizer and its query scales (hp: the layer input in the parameters' dtype).
  kernels::SpanAttentionOptions head_options(const at::Tensor& hp, int64_t head, int64_t window) const;
  AttentionOutput forward_hidden(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  AttentionOutput forward_kv(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);
  AttentionOutput forward_kv_chunk(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe);

  int64_t local_heads() const { return static_cast<int64_t>(heads_.size()); }

  ModelConfig config_;
  TensorParallel tp_;
  ContextParallel cp_;  // the halo exchange keeps its address until backward: never moved
  std::vector<int64_t> heads_;
  std::shared_ptr<LinearParams> proj_query_, proj_key_, proj_val_, proj_out_;
  std::shared_ptr<SpanPolicy> span_;
  std::shared_ptr<AttentionNormalizer> normalizer_;
  double attention_seconds_ = 0;
  int64_t queries_before_halo_ = 0;
  int64_t scores_begun_before_halo_ = 0;
};

}  // namespace adaspan::model
