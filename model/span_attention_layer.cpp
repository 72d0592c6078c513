#include "model/span_attention_layer.h"

#include "kernels/attention_masks.h"
#include "kernels/banded_attention.h"
#include "kernels/span_attention.h"
#include "kernels/span_attention_rows_launch.h"
#include "kernels/span_attention_rowwise.h"
#include "model/mixed_precision.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace adaspan::model {
namespace {

constexpr int64_t kWindowGranule = 64;  // windows and caches change size in steps of 64 keys

// The last `rows` rows of t along dim 1 (all of them when t is shorter).
at::Tensor last_rows(const at::Tensor& t, int64_t rows) {
  const int64_t n = t.size(1);
  return rows >= n ? t : t.narrow(1, n - rows, rows);
}

// [B, L, d_model] -> [B, H, L, d_head]
at::Tensor split_heads(const at::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).permute({0, 2, 1, 3}).contiguous();
}

}  // namespace

SpanAttentionLayer::SpanAttentionLayer(const ModelConfig& config) : config_(config) {
  const int64_t d = config.d_model;
  proj_query_ = register_module("proj_query", std::make_shared<LinearParams>(d, d, false));
  proj_key_ = register_module("proj_key", std::make_shared<LinearParams>(d, d, false));
  proj_val_ = register_module("proj_val", std::make_shared<LinearParams>(d, d, false));
  proj_out_ = register_module("proj_out", std::make_shared<LinearParams>(d, d, false));
  at::Tensor init = at::full({config.heads}, config.span_init);
  if (!config.span_init_heads.empty()) {
    init = at::tensor(config.span_init_heads, at::kDouble).div(static_cast<double>(config.attn_span)).to(at::kFloat);
  }
  if (config.learns_spans()) {
    auto span = register_module("span", std::make_shared<torch::nn::Module>());
    if (config.span_mode == SpanMode::static_span) {
      current_val_ = span->register_parameter("current_val", init);
    } else {
      // z_t starts at the initial span for every token: v = 0, sigmoid(b) = span / S (kept off 0 and 1).
      dynamic_weight_ = span->register_parameter("dynamic_weight", at::zeros({config.heads, d}));
      dynamic_bias_ = span->register_parameter("dynamic_bias", at::logit(init.clamp(0.01, 0.99)));
    }
  }
  if (config.normalizer == NormalizerKind::asentmax) {
    auto scale = register_module("asentmax", std::make_shared<torch::nn::Module>());
    if (config.asentmax_scale == AsentmaxScale::head) {
      // The paper's 'learn' variant: beta ~ U(0.1, 1), gamma ~ N(0, 0.1) per head.
      asentmax_beta_ = scale->register_parameter("beta", at::rand({config.heads}) * 0.9 + 0.1);
      asentmax_gamma_ = scale->register_parameter("gamma", at::randn({config.heads}) * 0.1);
    } else {
      // 'adapt-softplus-tanh': beta = softplus(W_b x), gamma = 2 tanh(W_g x) from the query's input.
      asentmax_beta_proj_ = scale->register_module("beta_proj", std::make_shared<LinearParams>(d, config.heads, true));
      asentmax_gamma_proj_ = scale->register_module("gamma_proj", std::make_shared<LinearParams>(d, config.heads, true));
    }
  }
  for (int64_t h = 0; h < config.heads; ++h) heads_.push_back(h);
}

void SpanAttentionLayer::shard(const TensorParallel& tp, const std::vector<int64_t>& heads) {
  at::NoGradGuard no_grad;
  const int64_t dh = config_.head_dim();
  std::vector<int64_t> rows;
  for (int64_t h : heads) {
    for (int64_t i = 0; i < dh; ++i) rows.push_back(h * dh + i);
  }
  const at::Tensor row_index = at::tensor(rows, at::kLong).to(proj_query_->weight.device());
  const at::Tensor head_index = at::tensor(heads, at::kLong).to(proj_query_->weight.device());
  for (auto* proj : {&proj_query_, &proj_key_, &proj_val_}) {
    (*proj)->weight.set_data((*proj)->weight.index_select(0, row_index));
  }
  proj_out_->weight.set_data(proj_out_->weight.index_select(1, row_index).contiguous());
  // Every per-head parameter keeps this rank's heads' rows.
  for (at::Tensor* p : {&current_val_, &dynamic_weight_, &dynamic_bias_, &asentmax_beta_, &asentmax_gamma_}) {
    if (p->defined()) p->set_data(p->index_select(0, head_index));
  }
  for (auto* proj : {&asentmax_beta_proj_, &asentmax_gamma_proj_}) {
    if (!*proj) continue;
    (*proj)->weight.set_data((*proj)->weight.index_select(0, head_index));
    (*proj)->bias.set_data((*proj)->bias.index_select(0, head_index));
  }
  tp_ = tp;
  heads_ = heads;
  span_stats_ = {};
}

std::vector<double> SpanAttentionLayer::spans() const {
  if (!config_.learns_spans()) return std::vector<double>(heads_.size(), static_cast<double>(config_.attn_span));
  if (config_.span_mode == SpanMode::dynamic) {
    if (!span_stats_.mean.empty()) return span_stats_.mean;
    at::Tensor z = at::sigmoid(dynamic_bias_.detach()).to(at::kCPU, at::kDouble).mul(config_.attn_span).contiguous();
    return {z.data_ptr<double>(), z.data_ptr<double>() + z.numel()};
  }
  at::Tensor cv = current_val_.detach().to(at::kCPU, at::kDouble).contiguous();
  std::vector<double> out(cv.data_ptr<double>(), cv.data_ptr<double>() + cv.numel());
  for (double& z : out) z *= static_cast<double>(config_.attn_span);
  return out;
}

std::vector<int64_t> SpanAttentionLayer::head_windows() const {
  std::vector<int64_t> windows;
  if (!config_.learns_spans()) return std::vector<int64_t>(heads_.size(), config_.attn_span);
  if (config_.span_mode == SpanMode::dynamic) {
    const at::Tensor widest = std::get<0>(token_spans_.detach().reshape({-1, local_heads()}).max(0)).to(at::kCPU, at::kDouble);
    for (int64_t head = 0; head < local_heads(); ++head) {
      windows.push_back(kernels::effective_window(widest[head].item<double>(), config_.span_ramp, config_.attn_span,
                                                  kWindowGranule));
    }
    return windows;
  }
  for (double z : spans()) {
    windows.push_back(
        kernels::effective_window(z, config_.span_ramp, config_.attn_span, kWindowGranule));
  }
  return windows;
}

at::Tensor SpanAttentionLayer::span_loss() const {
  if (!config_.learns_spans()) return at::zeros({}, proj_query_->weight.options());
  if (config_.span_mode == SpanMode::dynamic) {
    return dynamic_span_loss_.defined() ? dynamic_span_loss_ : at::zeros({}, proj_query_->weight.options());
  }
  const double lambda_s = config_.span_loss_coeff * static_cast<double>(config_.attn_span);
  if (local_heads() == config_.heads) return lambda_s * current_val_.mean();
  return lambda_s * current_val_.sum() / static_cast<double>(config_.heads);
}

void SpanAttentionLayer::clamp_spans() {
  if (!current_val_.defined()) return;
  at::NoGradGuard no_grad;
  current_val_.clamp_(0.0, 1.0);
}

int64_t SpanAttentionLayer::hidden_cache_size() const {
  const int64_t S = config_.attn_span;
  if (!config_.trim_hidden_cache || !current_val_.defined()) return S;
  // Reference AdaptiveSpan: max_size = clip(ceil(max_c * S) + R, 0, S);
  // trim_len = floor(min(S - 1, S - max_size) / 64) * 64; cache = min(S, S - trim_len + 64).
  const double max_c = current_val_.detach().max().item<double>();
  const int64_t max_size = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(max_c * S)) + static_cast<int64_t>(config_.span_ramp), 0, S);
  const int64_t trim_len = std::min(S - 1, S - max_size) / kWindowGranule * kWindowGranule;
  return std::min(S, S - trim_len + kWindowGranule);
}

at::Tensor SpanAttentionLayer::attend_heads(const at::Tensor& h, const at::Tensor& q,
                                            const std::vector<at::Tensor>& keys,
                                            const std::vector<at::Tensor>& values, const at::Tensor& key_pe,
                                            const std::vector<int64_t>& windows) {
  // q: [B, H, M, d_head]; keys[h], values[h]: [B, Lc_h + M, d_head]
  const auto start = std::chrono::steady_clock::now();
  at::Tensor out;  // [B, M, H_local, d_head]
  {
    // The kernels run in the parameters' dtype (q, k, v already are), without autocast.
    const FullPrecisionRegion full_precision;
    const at::Tensor hp = in_dtype_of(h, key_pe);
    std::vector<at::Tensor> heads;
    for (int64_t head = 0; head < local_heads(); ++head) {
      heads.push_back(config_.default_attention()
                          ? attend_head_fused(q.select(1, head), keys[head], values[head], key_pe, head, windows[head])
                          : attend_head_general(hp, q.select(1, head), keys[head], values[head], key_pe, head,
                                                windows[head]));
    }
    out = at::stack(heads, 2);
  }
  attention_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // In the parameters' dtype before the sum over ranks (MPI has no bf16, and the sum is more exact).
  const at::Tensor partial = in_dtype_of(
      proj_out_->forward(out.reshape({q.size(0), q.size(2), local_heads() * config_.head_dim()})), key_pe);
  return reduce_from_tp_region(partial, tp_);  // row parallel: the heads' contributions summed
}

kernels::SpanAttentionOptions SpanAttentionLayer::span_options(int64_t window) const {
  kernels::SpanAttentionOptions options;
  options.max_span = config_.attn_span;
  options.ramp = config_.span_ramp;
  options.window = window;
  options.dropout = config_.dropout;
  options.training = is_training();
  return options;
}

at::Tensor SpanAttentionLayer::attend_head_fused(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& key_pe, int64_t head, int64_t window) {
  const at::Tensor z = current_val_.select(0, head) * static_cast<double>(config_.attn_span);
  return kernels::span_attention(q, k, v, key_pe, z, span_options(window));
}

AttentionOutput SpanAttentionLayer::forward(const at::Tensor& h, const LayerCache& cache,
                                            const at::Tensor& key_pe) {
  const at::Tensor x = copy_to_tp_region(h, tp_);  // column parallel: each rank's heads see all of h
  return config_.cache == CacheMode::hidden ? forward_hidden(x, cache, key_pe)
                                            : forward_kv(x, cache, key_pe);
}

AttentionOutput SpanAttentionLayer::forward_hidden(const at::Tensor& h, const LayerCache& cache,
                                                   const at::Tensor& key_pe) {
  const int64_t block = h.size(1);
  if (config_.span_mode == SpanMode::dynamic) token_spans_ = dynamic_spans(h);
  block_position_ = cache.stream_position;
  const std::vector<int64_t> windows = head_windows();
  const int64_t widest = *std::max_element(windows.begin(), windows.end());
  const int64_t cache_rows = std::min(cache.hidden.defined() ? cache.hidden.size(1) : 0, widest);

  // Only the cached rows some head can see are projected (the kernel zero-pads the rest).
  at::Tensor h_all = cache_rows > 0 ? at::cat({last_rows(cache.hidden, cache_rows), h}, 1) : h;
  // Projections may come back in bf16 (autocast): the kernels and the caches keep the parameters' dtype.
  const at::Tensor q = split_heads(in_dtype_of(proj_query_->forward(h), key_pe), local_heads());
  const at::Tensor k = split_heads(in_dtype_of(proj_key_->forward(h_all), key_pe), local_heads());
  const at::Tensor v = split_heads(in_dtype_of(proj_val_->forward(h_all), key_pe), local_heads());

  AttentionOutput result;
  result.out = attend_heads(h, q, k.unbind(1), v.unbind(1), key_pe, windows);

  // Reference: next = cat(cache[-(C - M):], h) if C > M else h[-C:], C sized before the update.
  const int64_t keep = hidden_cache_size();
  at::Tensor next = h.detach();
  if (keep > block && cache.hidden.defined()) {
    next = at::cat({last_rows(cache.hidden, keep - block), next}, 1);
  }
  result.next_cache.hidden = last_rows(next, keep);
  result.next_cache.stream_position = cache.stream_position + block;
  return result;
}

AttentionOutput SpanAttentionLayer::forward_kv(const at::Tensor& h, const LayerCache& cache,
                                               const at::Tensor& key_pe) {
  if (config_.span_mode == SpanMode::dynamic) token_spans_ = dynamic_spans(h);
  block_position_ = cache.stream_position;
  const std::vector<int64_t> windows = head_windows();
  // Projections may come back in bf16 (autocast): the kernels and the caches keep the parameters' dtype.
  const at::Tensor q = split_heads(in_dtype_of(proj_query_->forward(h), key_pe), local_heads());  // [B, H_local, M, dh]
  const at::Tensor k_new = split_heads(in_dtype_of(proj_key_->forward(h), key_pe), local_heads());
  const at::Tensor v_new = split_heads(in_dtype_of(proj_val_->forward(h), key_pe), local_heads());

  std::vector<at::Tensor> keys = k_new.unbind(1), values = v_new.unbind(1);  // [B, M, dh] each
  AttentionOutput result;
  for (int64_t head = 0; head < local_heads(); ++head) {
    if (!cache.keys.empty() && cache.keys[head].size(1) > 0) {
      keys[head] = at::cat({cache.keys[head], keys[head]}, 1);
      values[head] = at::cat({cache.values[head], values[head]}, 1);
    }
    // Keep the head's window plus 64 rows of slack for span growth, at most S.
    const int64_t keep = std::min(config_.attn_span, windows[head] + kWindowGranule);
    result.next_cache.keys.push_back(last_rows(keys[head].detach(), keep).contiguous());
    result.next_cache.values.push_back(last_rows(values[head].detach(), keep).contiguous());
  }
  result.next_cache.stream_position = cache.stream_position + h.size(1);
  result.out = attend_heads(h, q, keys, values, key_pe, windows);
  return result;
}

at::Tensor SpanAttentionLayer::dynamic_spans(const at::Tensor& h) {
  const double S = static_cast<double>(config_.attn_span);
  // v·x / sqrt(d): the same family as v·x, but Adagrad's ~lr step on every element of v then moves
  // v·x by O(lr·sqrt(d)) rather than O(lr·d), so per-token spans do not swing wildly early on
  // (without it, dynamic spans did not learn the d = 64 task of bench/long_range.sh).
  const double scale = 1.0 / std::sqrt(static_cast<double>(config_.d_model));
  const FullPrecisionRegion full_precision;  // a bf16 span would be quantised to S/256 bytes
  const at::Tensor z =
      at::sigmoid(at::linear(in_dtype_of(h, dynamic_weight_), dynamic_weight_) * scale + dynamic_bias_) * S;  // [B, M, H_local]
  // L1 penalty on the mean z_t, as the static spans' lambda·S·mean(span / S).
  // With tensor parallelism each rank adds its heads' share: the ranks' terms sum to the mean over all heads.
  dynamic_span_loss_ = config_.span_loss_coeff * z.sum() / static_cast<double>(z.size(0) * z.size(1) * config_.heads);
  const at::Tensor per_head = z.detach().reshape({-1, local_heads()}).to(at::kCPU, at::kDouble);  // [B·M, H]
  const at::Tensor mean = per_head.mean(0).contiguous();
  const at::Tensor p99 = at::quantile(per_head, 0.99, 0).contiguous();
  span_stats_.mean.assign(mean.data_ptr<double>(), mean.data_ptr<double>() + mean.numel());
  span_stats_.p99.assign(p99.data_ptr<double>(), p99.data_ptr<double>() + p99.numel());
  return z;
}

at::Tensor SpanAttentionLayer::asentmax_scale(const at::Tensor& h, int64_t head, int64_t first, int64_t count,
                                              int64_t cache_len, int64_t window) const {
  // n = keys the query can see + 2 (the paper's position + 2 for a query at 0-based position
  // `position` seeing `position` earlier tokens), at most the window + 2.
  const at::Tensor seen = at::clamp_max(at::arange(count, h.options()) + static_cast<double>(cache_len),
                                        static_cast<double>(window));
  const at::Tensor log_n = at::log(seen + 2).unsqueeze(0);  // [1, T]
  at::Tensor beta, gamma;                                    // [1] or [B, T]
  if (asentmax_beta_.defined()) {
    beta = asentmax_beta_.select(0, head);
    gamma = asentmax_gamma_.select(0, head);
  } else {
    const at::Tensor x = h.narrow(1, first, count);
    beta = at::softplus(at::linear(x, asentmax_beta_proj_->weight.select(0, head).unsqueeze(0),
                                   asentmax_beta_proj_->bias.narrow(0, head, 1))).squeeze(-1);
    gamma = 2 * at::tanh(at::linear(x, asentmax_gamma_proj_->weight.select(0, head).unsqueeze(0),
                                    asentmax_gamma_proj_->bias.narrow(0, head, 1))).squeeze(-1);
  }
  return (1 + beta * at::pow(log_n, gamma)).expand({h.size(0), count});
}

at::Tensor SpanAttentionLayer::attend_head_general(const at::Tensor& h, const at::Tensor& q, const at::Tensor& k,
                                                   const at::Tensor& v, const at::Tensor& key_pe, int64_t head,
                                                   int64_t window) {
  // q: [B, M, d_head]; k, v: [B, Lc + M, d_head]
  const int64_t block = q.size(1), cache_len = k.size(1) - block, S = config_.attn_span;
  const double ramp = config_.span_ramp;
  kernels::BandedAttentionOptions options;
  options.max_span = S;
  options.window = window;
  options.normalizer = config_.normalizer == NormalizerKind::softmax ? kernels::Normalizer::softmax
                                                                      : kernels::Normalizer::entmax15;
  options.dropout = config_.dropout;
  options.training = is_training();
  const bool scaled = config_.normalizer == NormalizerKind::asentmax;
  if (config_.learns_spans() && config_.span_mode == SpanMode::dynamic && !scaled &&
      options.normalizer == kernels::Normalizer::softmax && q.is_cuda() && kernels::span_rows_cuda_built() &&
      kernels::span_rows_support_head_dim(q.size(2))) {
    // On a GPU the row kernels bound every query's keys by its own span (no tiles, no host sync).
    // window: the head's widest span (head_windows)
    return kernels::span_attention_rowwise(q, k, v, key_pe, token_spans_.select(2, head), span_options(window));
  }
  if (config_.learns_spans() && config_.span_mode == SpanMode::dynamic) {
    // Query tiles of 64, each with the window of its widest span: the cost follows the per-token spans.
    std::vector<at::Tensor> tiles;
    for (int64_t first = 0; first < block; first += kWindowGranule) {
      const int64_t count = std::min(kWindowGranule, block - first);
      const at::Tensor z = token_spans_.narrow(1, first, count).select(2, head);  // [B, T]
      options.window = kernels::effective_window(z.detach().max().item<double>(), ramp, S, kWindowGranule);
      const at::Tensor scale =
          scaled ? asentmax_scale(h, head, first, count, cache_len + first, options.window) : at::Tensor();
      tiles.push_back(kernels::banded_attention(q.narrow(1, first, count), k.narrow(1, 0, cache_len + first + count),
                                                v.narrow(1, 0, cache_len + first + count), key_pe,
                                                kernels::dynamic_span_window(z, ramp, options.window), scale, options));
    }
    return at::cat(tiles, 1);
  }
  at::Tensor mask;  // the window (head_windows()) is S unless the span is learned
  if (config_.learns_spans()) {
    mask = kernels::static_span_window(current_val_.select(0, head) * static_cast<double>(S), ramp, window);
  } else if (config_.attention == AttentionKind::sparse_fixed) {
    mask = kernels::sparse_fixed_window(block, window, config_.sparse_stride, block_position_, q.options());
  } else {
    mask = kernels::full_window(window, q.options());
  }
  const at::Tensor scale = scaled ? asentmax_scale(h, head, 0, block, cache_len, window) : at::Tensor();
  return kernels::banded_attention(q, k, v, key_pe, mask, scale, options);
}

}  // namespace adaspan::model
