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

struct ModelConfig {
  int64_t vocab = 256;             // bytes
  int64_t layers = 4;
  int64_t d_model = 128;
  int64_t heads = 4;
  int64_t ff_size = 512;
  int64_t attn_span = 512;         // S, the largest span a head can learn
  double span_ramp = 32.0;         // R
  double span_init = 0.0;          // initial current_val (span = S * current_val)
  std::vector<double> span_init_heads;  // if set: initial span (bytes) of each head, every layer
  double span_loss_coeff = 2e-6;   // lambda of the L1 span term
  double dropout = 0.0;
  CacheMode cache = CacheMode::kv;
  // hidden mode only: store min(S, L' + 64) rows (the reference's --adapt-span-cache) or all S.
  bool trim_hidden_cache = true;

  int64_t head_dim() const { return d_model / heads; }
};

}  // namespace adaspan::model
