#pragma once
// Attention over the last W keys of each query, for what the fused span kernel does not cover
// (per-token spans, fixed / full / sparse windows, entmax normalizers, per-query score scales);
// composed from ATen ops, so autograd does the backward. Same key conventions as span_attention:
//   x_ij = i + Lc - 1 - j  in [0, W)      (the nearest earlier key has x = 0; keys before index 0
//                                           are zero, as the reference's zero cache)
//   s_ij = λ_i (q_i·k_j + q_i·key_pe[:, S-1-x_ij]) / sqrt(d)
//   a_i  = normalize(s_i over the keys with m_ij > 0)         softmax or 1.5-entmax
//   p_ij = a_ij m_ij / Σ_j' a_ij' m_ij'                         (mask, then renormalise)
//   out_i = Σ_j p_ij v_j
// With softmax, λ = 1 and the span mask m_z(x) this is exactly span_attention.
#include "kernels/normalizer.h"

#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

struct BandedAttentionOptions {
  int64_t max_span = 0;  // S: key_pe has S columns
  int64_t window = 0;    // W, 1 <= W <= S
  Normalizer normalizer = Normalizer::softmax;
  double dropout = 0.0;  // on p, as the reference
  bool training = false;
};

// q: [B, M, d]; k, v: [B, Lc + M, d]; key_pe: [d, S];
// mask: [1 or B, 1 or M, W], weights in [0, 1] by window column (column c holds x = W - 1 - c;
//       0 = the key is not seen); every query must see at least one key;
// scale: λ as [B, M], or undefined for 1.
// Returns out: [B, M, d]. Bad shapes or values: std::invalid_argument naming them.
at::Tensor banded_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                            const at::Tensor& mask, const at::Tensor& scale, const BandedAttentionOptions& options);

// The same, query by query and key by key (entmax by bisection): the slow, obviously-correct
// reference the fast path is tested against. No dropout.
at::Tensor banded_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& key_pe, const at::Tensor& mask, const at::Tensor& scale,
                                      const BandedAttentionOptions& options);

}  // namespace adaspan::kernels
