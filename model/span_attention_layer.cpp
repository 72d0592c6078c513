#include "model/span_attention_layer.h"

#include "kernels/span_attention.h"

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
  auto span = register_module("span", std::make_shared<torch::nn::Module>());
  at::Tensor init = at::full({config.heads}, config.span_init);
  if (!config.span_init_heads.empty()) {
    init = at::tensor(config.span_init_heads, at::kDouble).div(static_cast<double>(config.attn_span)).to(at::kFloat);
  }
  current_val_ = span->register_parameter("current_val", init);
  for (int64_t h = 0; h < config.heads; ++h) heads_.push_back(h);
}

void SpanAttentionLayer::shard(const TensorParallel& tp, const std::vector<int64_t>& heads) {
  at::NoGradGuard no_grad;
  const int64_t dh = config_.head_dim();
  std::vector<int64_t> rows;
  for (int64_t h : heads) {
    for (int64_t i = 0; i < dh; ++i) rows.push_back(h * dh + i);
  }
  const at::Tensor row_index = at::tensor(rows, at::kLong).to(current_val_.device());
  const at::Tensor head_index = at::tensor(heads, at::kLong).to(current_val_.device());
  for (auto* proj : {&proj_query_, &proj_key_, &proj_val_}) {
    (*proj)->weight.set_data((*proj)->weight.index_select(0, row_index));
  }
  proj_out_->weight.set_data(proj_out_->weight.index_select(1, row_index).contiguous());
  current_val_.set_data(current_val_.index_select(0, head_index));
  tp_ = tp;
  heads_ = heads;
}

std::vector<double> SpanAttentionLayer::spans() const {
  at::Tensor cv = current_val_.detach().to(at::kCPU, at::kDouble).contiguous();
  std::vector<double> out(cv.data_ptr<double>(), cv.data_ptr<double>() + cv.numel());
  for (double& z : out) z *= static_cast<double>(config_.attn_span);
  return out;
}

std::vector<int64_t> SpanAttentionLayer::head_windows() const {
  std::vector<int64_t> windows;
  for (double z : spans()) {
    windows.push_back(
        kernels::effective_window(z, config_.span_ramp, config_.attn_span, kWindowGranule));
  }
  return windows;
}

at::Tensor SpanAttentionLayer::span_loss() const {
  const double lambda_s = config_.span_loss_coeff * static_cast<double>(config_.attn_span);
  if (local_heads() == config_.heads) return lambda_s * current_val_.mean();
  return lambda_s * current_val_.sum() / static_cast<double>(config_.heads);
}

void SpanAttentionLayer::clamp_spans() {
  at::NoGradGuard no_grad;
  current_val_.clamp_(0.0, 1.0);
}

int64_t SpanAttentionLayer::hidden_cache_size() const {
  const int64_t S = config_.attn_span;
  if (!config_.trim_hidden_cache) return S;
  // Reference AdaptiveSpan: max_size = clip(ceil(max_c * S) + R, 0, S);
  // trim_len = floor(min(S - 1, S - max_size) / 64) * 64; cache = min(S, S - trim_len + 64).
  const double max_c = current_val_.detach().max().item<double>();
  const int64_t max_size = std::clamp<int64_t>(
      static_cast<int64_t>(std::ceil(max_c * S)) + static_cast<int64_t>(config_.span_ramp), 0, S);
  const int64_t trim_len = std::min(S - 1, S - max_size) / kWindowGranule * kWindowGranule;
  return std::min(S, S - trim_len + kWindowGranule);
}

at::Tensor SpanAttentionLayer::attend_heads(const at::Tensor& q, const std::vector<at::Tensor>& keys,
                                            const std::vector<at::Tensor>& values,
                                            const at::Tensor& key_pe,
                                            const std::vector<int64_t>& windows) {
  // q: [B, H, M, d_head]; keys[h], values[h]: [B, Lc_h + M, d_head]
  kernels::SpanAttentionOptions options;
  options.max_span = config_.attn_span;
  options.ramp = config_.span_ramp;
  options.dropout = config_.dropout;
  options.training = is_training();
  const at::Tensor z = current_val_ * static_cast<double>(config_.attn_span);
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> heads;
  for (int64_t h = 0; h < local_heads(); ++h) {
    options.window = windows[h];
    heads.push_back(
        kernels::span_attention(q.select(1, h), keys[h], values[h], key_pe, z.select(0, h), options));
  }
  const at::Tensor out = at::stack(heads, 2);  // [B, M, H_local, d_head]
  attention_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const at::Tensor partial = proj_out_->forward(out.reshape({q.size(0), q.size(2), local_heads() * config_.head_dim()}));
  return reduce_from_tp_region(partial, tp_);  // row parallel: the heads' contributions summed
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
  const std::vector<int64_t> windows = head_windows();
  const int64_t widest = *std::max_element(windows.begin(), windows.end());
  const int64_t cache_rows = std::min(cache.hidden.defined() ? cache.hidden.size(1) : 0, widest);

  // Only the cached rows some head can see are projected (the kernel zero-pads the rest).
  at::Tensor h_all = cache_rows > 0 ? at::cat({last_rows(cache.hidden, cache_rows), h}, 1) : h;
  const at::Tensor q = split_heads(proj_query_->forward(h), local_heads());
  const at::Tensor k = split_heads(proj_key_->forward(h_all), local_heads());
  const at::Tensor v = split_heads(proj_val_->forward(h_all), local_heads());

  AttentionOutput result;
  result.out = attend_heads(q, k.unbind(1), v.unbind(1), key_pe, windows);

  // Reference: next = cat(cache[-(C - M):], h) if C > M else h[-C:], C sized before the update.
  const int64_t keep = hidden_cache_size();
  at::Tensor next = h.detach();
  if (keep > block && cache.hidden.defined()) {
    next = at::cat({last_rows(cache.hidden, keep - block), next}, 1);
  }
  result.next_cache.hidden = last_rows(next, keep);
  return result;
}

AttentionOutput SpanAttentionLayer::forward_kv(const at::Tensor& h, const LayerCache& cache,
                                               const at::Tensor& key_pe) {
  const std::vector<int64_t> windows = head_windows();
  const at::Tensor q = split_heads(proj_query_->forward(h), local_heads());  // [B, H_local, M, dh]
  const at::Tensor k_new = split_heads(proj_key_->forward(h), local_heads());
  const at::Tensor v_new = split_heads(proj_val_->forward(h), local_heads());

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
  result.out = attend_heads(q, keys, values, key_pe, windows);
  return result;
}

}  // namespace adaspan::model
