#include "model/adaptive_span_lm.h"

#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>
#include <string>

namespace adaspan::model {

AdaptiveSpanLM::AdaptiveSpanLM(const ModelConfig& config) : config_(config) {
  in_emb_ = register_module("in_emb", std::make_shared<LinearParams>(config.d_model, config.vocab, false));
  {
    at::NoGradGuard no_grad;
    in_emb_->weight.normal_();  // nn.Embedding init N(0, 1)
  }
  key_pe_ = register_parameter("key_pe", at::randn({config.head_dim(), config.attn_span}));
  auto stack = register_module("layers", std::make_shared<torch::nn::Module>());
  for (int64_t l = 0; l < config.layers; ++l) {
    layers_.push_back(stack->register_module(std::to_string(l), std::make_shared<TransformerLayer>(config)));
  }
  out_emb_ = register_module("out_emb", std::make_shared<LinearParams>(config.d_model, config.vocab, true));
}

void AdaptiveSpanLM::shard(const TensorParallel& tp) {
  if (!tp.active()) return;
  for (auto& layer : layers_) layer->shard(tp, contiguous_heads(config_.heads, tp.rank, tp.size));
  tp_ = tp;
}

bool AdaptiveSpanLM::is_sharded(const std::string& name) {
  for (const char* part : {".attn.proj_", ".attn.span.", ".attn.asentmax.", ".ff.fc1.", ".ff.fc2.weight"}) {
    if (name.find(part) != std::string::npos) return true;
  }
  return false;
}

int AdaptiveSpanLM::layer_of(const std::string& name) {
  if (name.rfind("layers.", 0) != 0) return -1;
  return std::stoi(name.substr(7, name.find('.', 7) - 7));
}

at::Tensor AdaptiveSpanLM::local_part(const std::string& name, const at::Tensor& whole) const {
  if (!tp_.active() || !is_sharded(name)) return whole;
  const HeadSplit split = head_split_of(name, config_.head_dim());
  if (split.dim >= 0) {
    std::vector<int64_t> rows;
    for (int64_t h : layers_[static_cast<size_t>(layer_of(name))]->attention().heads()) {
      for (int64_t i = 0; i < split.per_head; ++i) rows.push_back(h * split.per_head + i);
    }
    return whole.index_select(split.dim, at::tensor(rows, at::kLong).to(whole.device()));
  }
  const int dim = name.find(".ff.fc2.weight") != std::string::npos ? 1 : 0;  // fc1 rows, fc2 columns
  const int64_t units = whole.size(dim) / tp_.size;
  return whole.narrow(dim, tp_.rank * units, units);
}

void AdaptiveSpanLM::extend_span(std::map<std::string, at::Tensor>& state, int64_t trained_span) const {
  const auto key_pe = state.find("key_pe");
  if (key_pe != state.end()) {
    // key_pe column S-1-x holds distance x: the trained columns become the last ones, zeros before.
    const at::Tensor trained = key_pe->second;
    key_pe->second =
        at::cat({at::zeros({trained.size(0), config_.attn_span - trained_span}, trained.options()), trained}, 1);
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    layers_[l]->attention().extend_span(state, "layers." + std::to_string(l) + ".attn.", trained_span);
  }
}

std::vector<std::vector<double>> AdaptiveSpanLM::gather_head_values(
    const std::function<std::vector<double>(const SpanAttentionLayer&)>& values_of) const {
  std::vector<double> triples;  // (layer, canonical head, value) for this rank's heads
  for (size_t l = 0; l < layers_.size(); ++l) {
    const auto& attn = layers_[l]->attention();
    const std::vector<double> z = values_of(attn);
    for (size_t i = 0; i < z.size(); ++i)
      triples.insert(triples.end(), {static_cast<double>(l), static_cast<double>(attn.heads()[i]), z[i]});
  }
  return gather_by_head(triples, tp_, layers_.size(), config_.heads);
}

std::vector<std::vector<double>> AdaptiveSpanLM::all_spans() const {
  auto spans = gather_head_values([](const SpanAttentionLayer& attn) { return attn.spans(); });
  // Per-token spans are statistics of this rank's tokens: over context-parallel chunks of equal
  // size, the block's mean is the mean of the chunks' means.
  return config_.span_mode == SpanMode::dynamic ? over_chunks(spans, ReduceOp::sum) : spans;
}

std::vector<std::vector<int64_t>> AdaptiveSpanLM::placement() const {
  std::vector<double> triples;
  for (size_t l = 0; l < layers_.size(); ++l) {
    for (int64_t h : layers_[l]->attention().heads()) {
      triples.insert(triples.end(), {static_cast<double>(l), static_cast<double>(h), static_cast<double>(tp_.rank)});
    }
  }
  std::vector<std::vector<int64_t>> out;
  for (const auto& layer : gather_by_head(triples, tp_, layers_.size(), config_.heads))
    out.emplace_back(layer.begin(), layer.end());
  return out;
}

std::vector<std::vector<int64_t>> AdaptiveSpanLM::heads() const {
  std::vector<std::vector<int64_t>> out;
  for (const auto& layer : layers_) out.push_back(layer->attention().heads());
  return out;
}

LMOutput AdaptiveSpanLM::forward(const at::Tensor& x, const ModelCache& cache) {
  const AutocastScope autocast(precision_, x.device().type());
  LMOutput result;
  at::Tensor h = at::embedding(in_emb_->weight, x);           // [B, M, d_model]
  const at::Tensor key_pe = copy_to_tp_region(key_pe_, tp_);  // every rank's heads add to its gradient
  result.span_loss = at::zeros({}, h.options());
  const LayerCache empty;
  for (size_t l = 0; l < layers_.size(); ++l) {
    LayerOutput out = layers_[l]->forward(h, l < cache.size() ? cache[l] : empty, key_pe);
    h = out.hidden;
    result.next_cache.push_back(std::move(out.next_cache));
    result.span_loss = result.span_loss + layers_[l]->attention().span_loss();
  }
  // The output distribution in the parameters' dtype, whatever autocast did to the logits.
  result.log_probs = at::log_softmax(in_dtype_of(out_emb_->forward(h), key_pe_), -1);
  return result;
}

std::vector<std::vector<double>> AdaptiveSpanLM::spans() const {
  std::vector<std::vector<double>> out;
  for (const auto& layer : layers_) out.push_back(layer->attention().spans());
  return out;
}

double AdaptiveSpanLM::attention_seconds() const {
  double total = 0;
  for (const auto& layer : layers_) total += layer->attention().attention_seconds();
  return total;
}

std::vector<std::vector<double>> AdaptiveSpanLM::span_means() const {
  return over_chunks(gather_head_values([](const SpanAttentionLayer& attn) { return attn.span_stats().mean; }),
                     ReduceOp::sum);
}

std::vector<std::vector<double>> AdaptiveSpanLM::span_p99s() const {
  // Over context-parallel chunks: the largest chunk's 99th percentile, an upper bound of the block's.
  return over_chunks(gather_head_values([](const SpanAttentionLayer& attn) { return attn.span_stats().p99; }),
                     ReduceOp::max);
}

std::vector<std::vector<double>> AdaptiveSpanLM::over_chunks(std::vector<std::vector<double>> values,
                                                             ReduceOp op) const {
  if (!cp_.enabled()) return values;
  std::vector<double> flat;
  for (const auto& row : values) flat.insert(flat.end(), row.begin(), row.end());
  at::Tensor t = at::tensor(flat, at::kDouble);
  cp_.group->all_reduce(t, op);
  if (op == ReduceOp::sum) t = t / static_cast<double>(cp_.size);
  const double* v = t.data_ptr<double>();
  for (auto& row : values) {
    for (double& x : row) x = *v++;
  }
  return values;
}

void AdaptiveSpanLM::set_context_parallel(const ContextParallel& cp) {
  if (cp.enabled() && config_.cache != CacheMode::kv) {
    throw std::invalid_argument(
        "context parallelism needs --cache kv (a hidden cache would need every position's "
        "layer input on every rank)");
  }
  cp_ = cp;
  for (auto& layer : layers_) layer->attention().set_context_parallel(cp);
}

void AdaptiveSpanLM::clamp_spans() {
  for (auto& layer : layers_) layer->attention().clamp_spans();
}

double AdaptiveSpanLM::parameter_norm() const {
  double replicated = 0, sharded = 0;
  for (const auto& p : named_parameters()) {
    const double sq = p.value().detach().to(at::kDouble).pow(2).sum().item<double>();
    (tp_.active() && is_sharded(p.key()) ? sharded : replicated) += sq;
  }
  if (tp_.active()) {
    at::Tensor total = at::full({1}, sharded, at::kDouble);
    tp_.group->all_reduce(total, ReduceOp::sum);
    sharded = total.item<double>();
  }
  return std::sqrt(replicated + sharded);
}

}  // namespace adaspan::model
