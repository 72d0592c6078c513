#include "model/span_attention_layer.h"

#include "kernels/span_attention.h"
#include "model/halo_exchange.h"
#include "model/mixed_precision.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>

namespace adaspan::model {
namespace {

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
  // Registered only when they hold parameters, after the projections and in this order, as the
  // parameters always were: the checkpoint's names and the random draws of initialisation
  // (the normalizer's, after the projections') stay those of the reference.
  span_ = make_span_policy(config);
  if (!span_->parameters().empty()) register_module("span", span_);
  normalizer_ = make_attention_normalizer(config);
  if (!normalizer_->parameters().empty()) register_module("asentmax", normalizer_);
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
  span_->shard(head_index);
  normalizer_->shard(head_index);
  tp_ = tp;
  heads_ = heads;
  span_->forget_stats();
}

std::vector<double> SpanAttentionLayer::spans() const { return span_->spans(local_heads()); }

at::Tensor SpanAttentionLayer::span_loss() const { return span_->loss(local_heads(), proj_query_->weight.options()); }

void SpanAttentionLayer::clamp_spans() { span_->clamp(); }

int64_t SpanAttentionLayer::hidden_cache_size() const { return span_->hidden_cache_size(); }

void SpanAttentionLayer::extend_span(std::map<std::string, at::Tensor>& state, const std::string& prefix,
                                     int64_t trained_span) const {
  span_->extend_span(state, prefix + "span.", trained_span);
}

at::Tensor SpanAttentionLayer::attend_heads(const at::Tensor& h, const at::Tensor& q,
                                            const std::vector<at::Tensor>& keys, const std::vector<at::Tensor>& values,
                                            const at::Tensor& key_pe, const std::vector<int64_t>& windows) {
  // q: [B, H, M, d_head]; keys[h], values[h]: [B, Lc_h + M, d_head]
  const auto start = std::chrono::steady_clock::now();
  std::vector<at::Tensor> heads;
  {
    // The kernels run in the parameters' dtype (q, k, v already are), without autocast.
    const FullPrecisionRegion full_precision;
    const at::Tensor hp = in_dtype_of(h, key_pe);
    for (int64_t head = 0; head < local_heads(); ++head) {
      heads.push_back(span_->attend(q.select(1, head), keys[head], values[head], key_pe, head, 0,
                                    head_options(hp, head, windows[head])));
    }
  }
  attention_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return project_heads(heads, key_pe);
}

at::Tensor SpanAttentionLayer::project_heads(const std::vector<at::Tensor>& heads, const at::Tensor& key_pe) {
  const at::Tensor out = at::stack(heads, 2);  // [B, M, H_local, d_head]
  // In the parameters' dtype before the sum over ranks (MPI has no bf16, and the sum is more exact).
  const at::Tensor partial = in_dtype_of(
      proj_out_->forward(out.reshape({out.size(0), out.size(1), local_heads() * config_.head_dim()})), key_pe);
  return reduce_from_tp_region(partial, tp_);  // row parallel: the heads' contributions summed
}

std::vector<at::Tensor> SpanAttentionLayer::attend_chunk(const at::Tensor& h, const at::Tensor& q,
                                                         const at::Tensor& k_new, const at::Tensor& v_new,
                                                         HaloExchange& exchange, const at::Tensor& key_pe,
                                                         const std::vector<int64_t>& windows, Halo& halo) {
  const auto start = std::chrono::steady_clock::now();
  const FullPrecisionRegion full_precision;  // as attend_heads
  const at::Tensor hp = in_dtype_of(h, key_pe);
  const int64_t chunk = q.size(2);
  // While the halo travels: each head's queries from its window on, whose keys all lie in the
  // chunk (query i reads keys i - W .. i - 1), as the last rows of the whole call would compute
  // them (the window is a multiple of the 64-query tiles, so the tiles are the same).
  std::vector<kernels::SpanAttentionOptions> options;
  std::vector<at::Tensor> far;  // [B, m - W_h, d_head], or undefined: the head waits for its halo
  std::vector<int64_t> near;    // the queries left for after the halo: [0, near)
  for (int64_t head = 0; head < local_heads(); ++head) {
    const int64_t window = windows[static_cast<size_t>(head)];
    options.push_back(head_options(hp, head, window));
    far.emplace_back();
    if (window < chunk && span_->splits_queries(options.back())) {
      far.back() = span_->attend(q.select(1, head).narrow(1, window, chunk - window), k_new.select(1, head),
                                 v_new.select(1, head), key_pe, head, window, options.back());
      queries_before_halo_ += chunk - window;
    }
    exchange.poll();
    // The other queries' scores, as far as they need no halo key (kernels::EarlyScores): here
    // their position terms q·key_pe (each of their tiles reads some halo key). All a head whose
    // window covers the chunk can do before the halo. Only with gradients: then every head's score
    // buffer is kept for backward anyway, while without them holding them all at once would add
    // the heads' [B, m, W] to the peak.
    near.push_back(far.back().defined() ? window : chunk);
    const at::Tensor near_q = q.select(1, head).narrow(1, 0, near.back());
    const at::Tensor own_keys = k_new.select(1, head).narrow(1, 0, near.back());
    if (at::GradMode::is_enabled() && span_->takes_early_scores(near_q, own_keys, key_pe, options.back())) {
      const int64_t late = exchange.lengths()[static_cast<size_t>(head)];
      options.back().early = kernels::early_span_scores(near_q, own_keys, key_pe, late, options.back());
      scores_begun_before_halo_ += near.back();
      exchange.poll();
    }
  }
  const auto waiting = std::chrono::steady_clock::now();  // the wait is the halo's, not attention's
  halo = exchange.finish();
  const auto resumed = std::chrono::steady_clock::now();
  std::vector<at::Tensor> heads;
  for (int64_t head = 0; head < local_heads(); ++head) {
    const size_t h = static_cast<size_t>(head);
    at::Tensor keys = halo.own_keys.select(1, head).narrow(1, 0, near[h]);
    at::Tensor values = halo.own_values.select(1, head).narrow(1, 0, near[h]);
    const int64_t length = halo.lengths[h];
    if (length > 0) {
      keys = at::cat({last_rows(halo.keys.select(1, head), length), keys}, 1);
      values = at::cat({last_rows(halo.values.select(1, head), length), values}, 1);
    }
    at::Tensor out = span_->attend(q.select(1, head).narrow(1, 0, near[h]), keys, values, key_pe, head, 0, options[h]);
    heads.push_back(far[h].defined() ? at::cat({out, far[h]}, 1) : out);
  }
  attention_seconds_ += std::chrono::duration<double>(waiting - start).count() +
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - resumed).count();
  return heads;
}

kernels::SpanAttentionOptions SpanAttentionLayer::head_options(const at::Tensor& hp, int64_t head,
                                                               int64_t window) const {
  kernels::SpanAttentionOptions options;
  options.max_span = config_.attn_span;
  options.ramp = config_.span_ramp;
  options.window = window;
  options.dropout = config_.dropout;
  options.training = is_training();
  options.normalizer = normalizer_->kind();
  options.query_scale = normalizer_->query_scale(hp, head);
  return options;
}

AttentionOutput SpanAttentionLayer::forward(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe) {
  const at::Tensor x = copy_to_tp_region(h, tp_);  // column parallel: each rank's heads see all of h
  if (config_.cache == CacheMode::hidden) return forward_hidden(x, cache, key_pe);
  return cp_.enabled() ? forward_kv_chunk(x, cache, key_pe) : forward_kv(x, cache, key_pe);
}

AttentionOutput SpanAttentionLayer::forward_hidden(const at::Tensor& h, const LayerCache& cache,
                                                   const at::Tensor& key_pe) {
  const int64_t block = h.size(1);
  span_->begin_block(h, cache.stream_position);
  const std::vector<int64_t> windows = span_->windows(local_heads());
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

AttentionOutput SpanAttentionLayer::forward_kv(const at::Tensor& h, const LayerCache& cache, const at::Tensor& key_pe) {
  span_->begin_block(h, cache.stream_position);
  const std::vector<int64_t> windows = span_->windows(local_heads());
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

// Context parallelism: h is chunk c of the block. The keys and values before it come from the
// halo (model/halo_exchange.h); the cache is this rank's own chunks of the last blocks that any
// window can reach, [B, history_blocks·m, dh] per head, oldest first.
AttentionOutput SpanAttentionLayer::forward_kv_chunk(const at::Tensor& h, const LayerCache& cache,
                                                     const at::Tensor& key_pe) {
  const int64_t chunk = h.size(1), block = chunk * cp_.size;
  span_->begin_block(h, cache.stream_position + cp_.rank * chunk);
  const std::vector<int64_t> windows = span_->windows(local_heads());
  // The halo holds the keys that can get weight (the window less its rounding up to 64), except
  // under ASEntmax, whose query scale counts the keys present. Both ends of every halo must plan
  // the same rows: each chunk's lengths (per-token spans: its widest query's) go to every rank,
  // one small all-gather per layer.
  const std::vector<int64_t> halos =
      config_.normalizer == NormalizerKind::asentmax ? windows : span_->reaches(local_heads());
  at::Tensor every_chunk = at::empty({cp_.size * local_heads()}, at::kLong);
  cp_.group->all_gather(at::tensor(halos, at::kLong), every_chunk);
  const std::vector<int64_t> windows_by_chunk(every_chunk.data_ptr<int64_t>(),
                                              every_chunk.data_ptr<int64_t>() + every_chunk.numel());
  const at::Tensor q = split_heads(in_dtype_of(proj_query_->forward(h), key_pe), local_heads());
  const at::Tensor k_new = split_heads(in_dtype_of(proj_key_->forward(h), key_pe), local_heads());
  const at::Tensor v_new = split_heads(in_dtype_of(proj_val_->forward(h), key_pe), local_heads());

  const int64_t reach = (config_.attn_span + block - 1) / block;  // blocks a window of S can reach back
  at::Tensor history_k, history_v;
  if (cache.keys.empty()) {
    history_k = history_v = k_new.narrow(2, 0, 0).detach();
  } else {
    history_k = at::stack(cache.keys, 1);
    history_v = at::stack(cache.values, 1);
  }
  HaloExchange exchange(k_new, v_new, history_k, history_v, windows_by_chunk, cp_);
  Halo halo;
  const std::vector<at::Tensor> heads = attend_chunk(h, q, k_new, v_new, exchange, key_pe, windows, halo);

  AttentionOutput result;
  const int64_t kept = std::min(reach, history_k.size(2) / chunk + 1) * chunk;
  for (int64_t head = 0; head < local_heads(); ++head) {
    const at::Tensor own_k = at::cat({history_k.select(1, head), k_new.select(1, head).detach()}, 1);
    const at::Tensor own_v = at::cat({history_v.select(1, head), v_new.select(1, head).detach()}, 1);
    result.next_cache.keys.push_back(last_rows(own_k, kept).contiguous());
    result.next_cache.values.push_back(last_rows(own_v, kept).contiguous());
  }
  result.next_cache.stream_position = cache.stream_position + block;
  result.out = project_heads(heads, key_pe);
  return result;
}

}  // namespace adaspan::model
