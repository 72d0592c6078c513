#pragma once
// Shape and regularisation of an adaptive-span byte LM. Defaults are a small model that learns
// on CPU in minutes; the reference's enwik8_small is layers 8, d_model 256, heads 4, ff 1024,
// attn_span 1024.
#include <cstdint>
#include <string>
#include <vector>

namespace adaspan::model {

// What each layer keeps between blocks.
//  kv:     each head keeps its own projected keys/values, trimmed to its span (+64 slack), so
//          memory follows the learned spans and the cache is never re-projected. The cached
//          K/V were projected with the weights of the step that produced them (one step stale)
//          and carry no gradient into W_k/W_v.
//  hidden: the reference's cache: layer inputs, re-projected with the current weights every
//          step (gradients reach W_k/W_v through cached positions). Kept for exact parity.
enum class CacheMode { kv, hidden };

CacheMode parse_cache_mode(const std::string& name);  // throws std::invalid_argument
std::string to_string(CacheMode mode);

// Which keys a head attends to.
//  adaptive:     a learned span per head (or per token with SpanMode::dynamic) through the soft mask.
//  fixed, full:  every head sees the last S keys, no learning (the comparison table's "sliding
//                window" and "full transformer" rows; the same computation at the same S).
//  sparse_fixed: the Sparse Transformer's fixed pattern within S: the sparse_stride nearest keys
//                plus every sparse_stride-th position.
enum class AttentionKind { adaptive, fixed, full, sparse_fixed };
// static: one span per head (the reference); dynamic: z_t = S·sigmoid(v_h·x_t / sqrt(d) + b_h) per token.
enum class SpanMode { static_span, dynamic };
// softmax; entmax15 (exact 1.5-entmax); asentmax (1.5-entmax of scores scaled per query by
// 1 + beta·(log n)^gamma, Vasylenko et al. 2025).
enum class NormalizerKind { softmax, entmax15, asentmax };
// ASEntmax's beta and gamma: learned per head, or from the query's hidden state.
enum class AsentmaxScale { head, hidden };

AttentionKind parse_attention_kind(const std::string& name);
std::string to_string(AttentionKind kind);
SpanMode parse_span_mode(const std::string& name);
std::string to_string(SpanMode mode);
NormalizerKind parse_normalizer(const std::string& name);
std::string to_string(NormalizerKind kind);
AsentmaxScale parse_asentmax_scale(const std::string& name);
std::string to_string(AsentmaxScale scale);

struct ModelConfig {
  int64_t vocab = 256;  // bytes
  int64_t layers = 4;
  int64_t d_model = 128;
  int64_t heads = 4;
  int64_t ff_size = 512;
  int64_t attn_span = 512;              // S, the largest span a head can learn
  double span_ramp = 32.0;              // R
  double span_init = 0.0;               // initial current_val (span = S * current_val)
  std::vector<double> span_init_heads;  // if set: initial span (bytes) of each head, every layer
  double span_loss_coeff = 2e-6;        // lambda of the L1 span term
  double dropout = 0.0;
  CacheMode cache = CacheMode::kv;
  // hidden mode only: store min(S, L' + 64) rows (the reference's --adapt-span-cache) or all S.
  bool trim_hidden_cache = true;
  AttentionKind attention = AttentionKind::adaptive;
  SpanMode span_mode = SpanMode::static_span;
  NormalizerKind normalizer = NormalizerKind::softmax;
  AsentmaxScale asentmax_scale = AsentmaxScale::head;
  int64_t sparse_stride = 32;  // c of sparse_fixed

  // The fused span kernel covers this; everything else takes the general banded path.
  bool default_attention() const {
    return attention == AttentionKind::adaptive && span_mode == SpanMode::static_span &&
           normalizer == NormalizerKind::softmax;
  }
  bool learns_spans() const { return attention == AttentionKind::adaptive; }

  int64_t head_dim() const { return d_model / heads; }
};

}  // namespace adaspan::model
