#pragma once
// Which keys each head of a SpanAttentionLayer attends to (--attention, --span-mode), with the
// parameters that learn it:
//   StaticSpan   one learned span per head, z_h = S·current_val[h] (Sukhbaatar et al. 2019), "current_val"
//   DynamicSpan  one span per token, z_t = S·sigmoid(v_h·x_t / sqrt(d_model) + b_h) (ibid. §3.3),
//                "dynamic_weight" (v: [H, d_model]) and "dynamic_bias" (b: [H])
//   FixedWindow  the last S keys, no learning (--attention fixed and full: the same computation)
//   SparseFixed  the Sparse Transformer's fixed pattern within S (--attention sparse_fixed)
// A policy picks each head's key window, runs one head through the kernels, and gives the span
// loss, the spans reported and the rows the hidden cache keeps. The layer registers it as its
// "span" module when it has parameters, so their names stay "layers.L.attn.span.<name>".
#include "kernels/span_attention.h"
#include "model/model_config.h"

#include <torch/nn/module.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace adaspan::model {

constexpr int64_t kWindowGranule = 64;  // windows and caches change size in steps of 64 keys

// Dynamic spans: per head, the mean and the 99th percentile of z_t over the last forward's tokens.
struct SpanStats {
  std::vector<double> mean, p99;
};

class SpanPolicy : public torch::nn::Module {
 public:
  explicit SpanPolicy(const ModelConfig& config) : config_(config) {}

  // Once per forward, before windows() and attend(): h: [B, M, d_model], the layer's input;
  // `stream_position`: the stream position of the block's first query.
  virtual void begin_block(const at::Tensor& /*h*/, int64_t /*stream_position*/) {}
  // Spans in bytes of the `local_heads` heads this layer computes (see SpanAttentionLayer::spans).
  virtual std::vector<double> spans(int64_t local_heads) const;
  // Keys each local head needs this block.
  virtual std::vector<int64_t> windows(int64_t local_heads) const;
  // Of those, the nearest keys that can get weight (mask > 0, or the ramp's end where dz needs it):
  // the window before its rounding up to 64 keys. A context-parallel halo sends only these; the
  // rest of the window reads as zero rows, which the mask gives no weight either way.
  virtual std::vector<int64_t> reaches(int64_t local_heads) const { return windows(local_heads); }
  // One local head: q: [B, n, d_head], the queries [first_query, first_query + n) of the block
  // begin_block saw (all M of them, or a split's part); k, v: [B, Lc + n, d_head]; key_pe:
  // [d_head, S]; options: the head's window, normalizer and query scales. Returns [B, n, d_head].
  virtual at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                            int64_t head, int64_t first_query, const kernels::SpanAttentionOptions& options) = 0;
  // Whether attend's queries are independent of one another given their keys and computed in the
  // same tiles of 64 whatever the call (one span per head with softmax; per-token spans without
  // query scales): then a call on some of the queries from a multiple of 64, with the keys they
  // see, computes exactly their rows of the whole call (context parallelism computes the queries
  // whose windows lie inside the chunk while the halo is in flight).
  virtual bool splits_queries(const kernels::SpanAttentionOptions& /*options*/) const { return false; }
  // Whether attend can take kernels::EarlyScores for a call on q with keys like k (one span per
  // head on the ATen tiles).
  virtual bool takes_early_scores(const at::Tensor& /*q*/, const at::Tensor& /*k*/, const at::Tensor& /*key_pe*/,
                                  const kernels::SpanAttentionOptions& /*options*/) const {
    return false;
  }
  // The L1 span term of these heads (zero unless spans are learned), a 0-dim tensor with `options`.
  virtual at::Tensor loss(int64_t local_heads, const at::TensorOptions& options) const;
  // Spans back into their range after an optimizer step.
  virtual void clamp() {}
  // Rows the hidden cache keeps for the next block.
  virtual int64_t hidden_cache_size() const { return config_.attn_span; }
  // Keep only the heads at `head_index` ([H_local] int64) of every per-head parameter.
  virtual void shard(const at::Tensor& /*head_index*/) {}
  // Per-token statistics of the last forward (empty unless dynamic) and forgetting them when the
  // heads change.
  virtual const SpanStats& stats() const;
  virtual void forget_stats() {}
  // A stored state whose parameters under `prefix` (e.g. "layers.0.attn.span.") were trained at
  // span trained_span, mapped to this config's longer S: learned spans keep their length in bytes.
  virtual void extend_span(std::map<std::string, at::Tensor>& /*state*/, const std::string& /*prefix*/,
                           int64_t /*trained_span*/) const {}

 protected:
  ModelConfig config_;
};

// The policy of `config` (its parameters initialised; no random draws).
std::shared_ptr<SpanPolicy> make_span_policy(const ModelConfig& config);

}  // namespace adaspan::model
