#include "model/span_policy.h"

#include "kernels/attention_masks.h"
#include "kernels/banded_attention.h"
#include "model/mixed_precision.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace adaspan::model {
namespace {

std::vector<double> to_doubles(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU, at::kDouble).contiguous();
  return {c.data_ptr<double>(), c.data_ptr<double>() + c.numel()};
}

// One head over a fixed mask through the banded kernel; ASEntmax's scales (if any) for all queries.
at::Tensor banded_head(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                       const at::Tensor& mask, const kernels::SpanAttentionOptions& options) {
  // q: [B, M, d_head]; k, v: [B, Lc + M, d_head]; mask: [1, 1 or M, W]
  const int64_t block = q.size(1), cache_len = k.size(1) - block;
  kernels::BandedAttentionOptions banded;
  banded.max_span = options.max_span;
  banded.window = options.window;
  banded.normalizer = options.normalizer;
  banded.dropout = options.dropout;
  banded.training = options.training;
  const at::Tensor scale =
      options.query_scale ? options.query_scale({0, block, cache_len, options.window}) : at::Tensor();
  return kernels::banded_attention(q, k, v, key_pe, mask, scale, banded);
}

// z_h = S·current_val[h], learned through the soft mask and an L1 penalty (the reference).
class StaticSpan final : public SpanPolicy {
 public:
  StaticSpan(const ModelConfig& config, const at::Tensor& init) : SpanPolicy(config) {
    current_val_ = register_parameter("current_val", init);  // [H], span / S
  }

  std::vector<double> spans(int64_t /*local_heads*/) const override {
    std::vector<double> out = to_doubles(current_val_.detach());
    for (double& z : out) z *= static_cast<double>(config_.attn_span);
    return out;
  }

  std::vector<int64_t> windows(int64_t local_heads) const override { return windows_of(local_heads, kWindowGranule); }
  std::vector<int64_t> reaches(int64_t local_heads) const override { return windows_of(local_heads, 1); }

  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                    int64_t head, int64_t /*first_query*/, const kernels::SpanAttentionOptions& options) override {
    return kernels::span_attention(q, k, v, key_pe, span_of(head), options);
  }

  // Not entmax15: its one banded call over all queries multiplies matrices of another shape when
  // split, which BLAS may sum in another order.
  bool splits_queries(const kernels::SpanAttentionOptions& options) const override {
    return options.normalizer == kernels::Normalizer::softmax && !options.query_scale;
  }

  bool takes_early_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& key_pe,
                          const kernels::SpanAttentionOptions& options) const override {
    return splits_queries(options) && kernels::takes_early_scores(q, k, k, key_pe, options);
  }

  // lambda * S * mean_h(current_val); with sharding, this rank's heads' share: the sum over its heads / H.
  at::Tensor loss(int64_t local_heads, const at::TensorOptions& /*options*/) const override {
    const double lambda_s = config_.span_loss_coeff * static_cast<double>(config_.attn_span);
    if (local_heads == config_.heads) return lambda_s * current_val_.mean();
    return lambda_s * current_val_.sum() / static_cast<double>(config_.heads);
  }

  // current_val <- clamp(current_val, 0, 1), as the reference.
  void clamp() override {
    at::NoGradGuard no_grad;
    current_val_.clamp_(0.0, 1.0);
  }

  int64_t hidden_cache_size() const override {
    const int64_t S = config_.attn_span;
    if (!config_.trim_hidden_cache) return S;
    // Reference AdaptiveSpan: max_size = clip(ceil(max_c * S) + R, 0, S);
    // trim_len = floor(min(S - 1, S - max_size) / 64) * 64; cache = min(S, S - trim_len + 64).
    const double max_c = current_val_.detach().max().item<double>();
    const int64_t max_size =
        std::clamp<int64_t>(static_cast<int64_t>(std::ceil(max_c * S)) + static_cast<int64_t>(config_.span_ramp), 0, S);
    const int64_t trim_len = std::min(S - 1, S - max_size) / kWindowGranule * kWindowGranule;
    return std::min(S, S - trim_len + kWindowGranule);
  }

  void shard(const at::Tensor& head_index) override { current_val_.set_data(current_val_.index_select(0, head_index)); }

  // current_val·S_trained = current_val'·S: current_val' = current_val·S_trained / S.
  void extend_span(std::map<std::string, at::Tensor>& state, const std::string& prefix,
                   int64_t trained_span) const override {
    const auto it = state.find(prefix + "current_val");
    if (it == state.end()) return;  // the caller reports the missing parameter
    const double stretch = static_cast<double>(trained_span) / static_cast<double>(config_.attn_span);
    it->second = it->second * stretch;
  }

 private:
  at::Tensor span_of(int64_t head) const {
    return current_val_.select(0, head) * static_cast<double>(config_.attn_span);
  }

  std::vector<int64_t> windows_of(int64_t local_heads, int64_t granule) const {
    std::vector<int64_t> out;
    for (double z : spans(local_heads)) {
      out.push_back(kernels::effective_window(z, config_.span_ramp, config_.attn_span, granule));
    }
    return out;
  }

  at::Tensor current_val_;
};

// z_t = S·sigmoid(v_h·x_t / sqrt(d_model) + b_h) for every token of the block.
class DynamicSpan final : public SpanPolicy {
 public:
  DynamicSpan(const ModelConfig& config, const at::Tensor& init) : SpanPolicy(config) {
    // z_t starts at the initial span for every token: v = 0, sigmoid(b) = span / S (kept off 0 and 1).
    dynamic_weight_ = register_parameter("dynamic_weight", at::zeros({config.heads, config.d_model}));
    dynamic_bias_ = register_parameter("dynamic_bias", at::logit(init.clamp(0.01, 0.99)));
  }

  void begin_block(const at::Tensor& h, int64_t /*stream_position*/) override { token_spans_ = token_spans(h); }

  // The mean z_t of the last forward per head; S·sigmoid(b_h) before any.
  std::vector<double> spans(int64_t /*local_heads*/) const override {
    if (!stats_.mean.empty()) return stats_.mean;
    return to_doubles(at::sigmoid(dynamic_bias_.detach()).to(at::kCPU, at::kDouble).mul(config_.attn_span));
  }

  // The window of each head's widest token span.
  std::vector<int64_t> windows(int64_t local_heads) const override { return windows_of(local_heads, kWindowGranule); }
  std::vector<int64_t> reaches(int64_t local_heads) const override { return windows_of(local_heads, 1); }

  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                    int64_t head, int64_t first_query, const kernels::SpanAttentionOptions& options) override {
    const at::Tensor z = token_spans_.select(2, head).narrow(1, first_query, q.size(1));  // [B, n]
    return kernels::span_attention(q, k, v, key_pe, z, options);
  }

  // The kernels take per-token spans in tiles of 64 queries, each tile's keys its own widest
  // span's window, on the ATen path as on the row kernels. Query scales index their queries from
  // the call's first, so not with them.
  bool splits_queries(const kernels::SpanAttentionOptions& options) const override { return !options.query_scale; }

  at::Tensor loss(int64_t /*local_heads*/, const at::TensorOptions& options) const override {
    return span_loss_.defined() ? span_loss_ : at::zeros({}, options);
  }

  void shard(const at::Tensor& head_index) override {
    dynamic_weight_.set_data(dynamic_weight_.index_select(0, head_index));
    dynamic_bias_.set_data(dynamic_bias_.index_select(0, head_index));
  }

  const SpanStats& stats() const override { return stats_; }
  void forget_stats() override { stats_ = {}; }

  void extend_span(std::map<std::string, at::Tensor>& /*state*/, const std::string& /*prefix*/,
                   int64_t /*trained_span*/) const override {
    throw std::invalid_argument("dynamic spans cannot move to a longer S (z_t = S*sigmoid(...) would stretch)");
  }

 private:
  // z_t: [B, M, H_local]; also sets the span loss and the statistics.
  at::Tensor token_spans(const at::Tensor& h) {
    const double S = static_cast<double>(config_.attn_span);
    // v·x / sqrt(d): the same family as v·x, but Adagrad's ~lr step on every element of v then moves
    // v·x by O(lr·sqrt(d)) rather than O(lr·d), so per-token spans do not swing wildly early on
    // (without it, dynamic spans did not learn the d = 64 task of bench/long_range.sh).
    const double scale = 1.0 / std::sqrt(static_cast<double>(config_.d_model));
    const FullPrecisionRegion full_precision;  // a bf16 span would be quantised to S/256 bytes
    const at::Tensor z =
        at::sigmoid(at::linear(in_dtype_of(h, dynamic_weight_), dynamic_weight_) * scale + dynamic_bias_) * S;
    // L1 penalty on the mean z_t, as the static spans' lambda·S·mean(span / S).
    // With tensor parallelism each rank adds its heads' share: the ranks' terms sum to the mean over all heads.
    span_loss_ = config_.span_loss_coeff * z.sum() / static_cast<double>(z.size(0) * z.size(1) * config_.heads);
    const at::Tensor per_head = z.detach().reshape({-1, z.size(2)}).to(at::kCPU, at::kDouble);  // [B·M, H_local]
    stats_.mean = to_doubles(per_head.mean(0));
    stats_.p99 = to_doubles(at::quantile(per_head, 0.99, 0));
    return z;
  }

  std::vector<int64_t> windows_of(int64_t local_heads, int64_t granule) const {
    const at::Tensor widest =
        std::get<0>(token_spans_.detach().reshape({-1, local_heads}).max(0)).to(at::kCPU, at::kDouble);
    std::vector<int64_t> out;
    for (int64_t head = 0; head < local_heads; ++head) {
      out.push_back(
          kernels::effective_window(widest[head].item<double>(), config_.span_ramp, config_.attn_span, granule));
    }
    return out;
  }

  at::Tensor dynamic_weight_, dynamic_bias_;  // v_h: [H, d_model], b_h: [H]
  at::Tensor token_spans_;                    // z of the current forward, [B, M, H_local]
  at::Tensor span_loss_;                      // lambda * mean(z_t) of the last forward
  SpanStats stats_;
};

// Every head sees its last S keys, all with weight 1 (--attention fixed, full).
class FixedWindow final : public SpanPolicy {
 public:
  using SpanPolicy::SpanPolicy;

  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                    int64_t /*head*/, int64_t /*first_query*/, const kernels::SpanAttentionOptions& options) override {
    return banded_head(q, k, v, key_pe, kernels::full_window(options.window, q.options()), options);
  }
};

// The Sparse Transformer's fixed pattern with stride c within the last S keys, by stream position.
class SparseFixed final : public SpanPolicy {
 public:
  using SpanPolicy::SpanPolicy;

  void begin_block(const at::Tensor& /*h*/, int64_t stream_position) override { block_position_ = stream_position; }

  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                    int64_t /*head*/, int64_t first_query, const kernels::SpanAttentionOptions& options) override {
    const at::Tensor mask = kernels::sparse_fixed_window(q.size(1), options.window, config_.sparse_stride,
                                                         block_position_ + first_query, q.options());
    return banded_head(q, k, v, key_pe, mask, options);
  }

 private:
  int64_t block_position_ = 0;  // stream position of the current forward's first query
};

}  // namespace

std::vector<double> SpanPolicy::spans(int64_t local_heads) const {
  return std::vector<double>(static_cast<size_t>(local_heads), static_cast<double>(config_.attn_span));
}

std::vector<int64_t> SpanPolicy::windows(int64_t local_heads) const {
  return std::vector<int64_t>(static_cast<size_t>(local_heads), config_.attn_span);
}

at::Tensor SpanPolicy::loss(int64_t /*local_heads*/, const at::TensorOptions& options) const {
  return at::zeros({}, options);
}

const SpanStats& SpanPolicy::stats() const {
  static const SpanStats none;
  return none;
}

std::shared_ptr<SpanPolicy> make_span_policy(const ModelConfig& config) {
  if (!config.learns_spans()) {
    if (config.attention == AttentionKind::sparse_fixed) return std::make_shared<SparseFixed>(config);
    return std::make_shared<FixedWindow>(config);
  }
  at::Tensor init = at::full({config.heads}, config.span_init);
  if (!config.span_init_heads.empty()) {
    init = at::tensor(config.span_init_heads, at::kDouble).div(static_cast<double>(config.attn_span)).to(at::kFloat);
  }
  if (config.span_mode == SpanMode::static_span) return std::make_shared<StaticSpan>(config, init);
  return std::make_shared<DynamicSpan>(config, init);
}

}  // namespace adaspan::model
