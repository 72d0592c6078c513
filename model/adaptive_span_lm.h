#pragma once
// Byte-level adaptive-span transformer LM (the reference's TransformerSeq, adaptive span on,
// adaptive I/O and persistent memory off):
//   h = Emb(x);  h = Layer_l(h, cache_l) for each layer;  log p = log_softmax(h W_out^T + b_out)
// key_pe [d_head, S] is one relative-position parameter shared by every layer and head.
#include "model/mixed_precision.h"
#include "model/transformer_layer.h"

#include <torch/nn/module.h>

#include <functional>
#include <map>
#include <string>

namespace adaspan::model {

struct LMOutput {
  at::Tensor log_probs;  // [B, M, vocab]
  at::Tensor span_loss;  // 0-dim: sum over layers of lambda * S * mean_h(current_val)
  ModelCache next_cache;
};

class AdaptiveSpanLM : public torch::nn::Module {
 public:
  explicit AdaptiveSpanLM(const ModelConfig& config);

  // x: [B, M] int64 bytes. An empty cache (or empty per-layer entries) means all zeros.
  LMOutput forward(const at::Tensor& x, const ModelCache& cache);

  const ModelConfig& config() const { return config_; }
  // Tensor parallelism: keep rank tp.rank's heads (a contiguous range of H / tp.size) and
  // feed-forward units of every layer; the model is built whole first (same initialisation as
  // without sharding), then cut. See model/tensor_parallel.h.
  void shard(const TensorParallel& tp);
  const TensorParallel& tensor_parallel() const { return tp_; }
  // Context parallelism (model/context_parallel.h): forward then takes chunk cp.rank of each
  // block, [B, M / C], and its cache holds this rank's chunks (--cache kv only:
  // std::invalid_argument otherwise).
  void set_context_parallel(const ContextParallel& cp);
  // spans[layer][i] in bytes, for this rank's heads; heads()[layer][i] is the canonical index.
  std::vector<std::vector<double>> spans() const;
  std::vector<std::vector<int64_t>> heads() const;
  // Every head's span [layer][canonical head] and the tensor-parallel rank holding it (collective
  // over the TP group when sharded).
  std::vector<std::vector<double>> all_spans() const;
  std::vector<std::vector<int64_t>> placement() const;
  void set_heads(size_t layer, const std::vector<int64_t>& heads) { layers_[layer]->attention().set_heads(heads); }
  void clamp_spans();
  // bf16 autocast for the forward pass (model/mixed_precision.h); the parameters keep their dtype.
  void set_precision(Precision precision) { precision_ = precision; }
  Precision precision() const { return precision_; }
  // Dynamic spans: per layer and canonical head, the mean and 99th percentile of z_t over the last
  // forward (collective over the TP group when sharded; 0 for heads not seen since they moved).
  std::vector<std::vector<double>> span_means() const;
  std::vector<std::vector<double>> span_p99s() const;
  // Seconds of attention forward over all layers so far (see SpanAttentionLayer).
  double attention_seconds() const;
  // L2 norm of all parameters (of the whole model when sharded: collective), accumulated in double.
  double parameter_norm() const;
  // Whether a parameter (by name) is cut by sharding, i.e. differs between tensor-parallel ranks.
  static bool is_sharded(const std::string& name);
  // "layers.3.attn..." -> 3; -1 for parameters outside the layers.
  static int layer_of(const std::string& name);
  // This rank's part of a whole (unsharded) tensor shaped as parameter `name` (the whole tensor
  // without tensor parallelism): its heads' rows/columns, or its feed-forward units.
  at::Tensor local_part(const std::string& name, const at::Tensor& whole) const;
  // Length extrapolation (eval --attn-span): `state` (named_parameters() names) of a model of this
  // shape trained at span trained_span <= S, mapped in place to this model's S. key_pe is zero at
  // the new far distances (content-only scores there); learned spans keep their length in bytes
  // (current_val·trained_span/S). Not for dynamic spans (z_t = S·sigmoid(..) would stretch):
  // std::invalid_argument. Parameters missing from `state` are left for the caller to report.
  void extend_span(std::map<std::string, at::Tensor>& state, int64_t trained_span) const;

 private:
  // [layer][canonical head] of a per-head value of each layer's local heads (collective with TP).
  std::vector<std::vector<double>> gather_head_values(
      const std::function<std::vector<double>(const SpanAttentionLayer&)>& values_of) const;

  // Per-head statistics of this rank's chunk -> of the block (collective over the CP group):
  // the mean (sum) or the largest (max) over the chunks.
  std::vector<std::vector<double>> over_chunks(std::vector<std::vector<double>> values, ReduceOp op) const;

  ModelConfig config_;
  TensorParallel tp_;
  ContextParallel cp_;
  Precision precision_ = Precision::fp32;
  std::shared_ptr<LinearParams> in_emb_, out_emb_;
  at::Tensor key_pe_;
  std::vector<std::shared_ptr<TransformerLayer>> layers_;
};

}  // namespace adaspan::model
