#pragma once
// Adaptive-span attention for one head: the math every caller goes through.
//
// Sukhbaatar et al. 2019, "Adaptive Attention Span in Transformers", eq. (2)-(4), with the
// conventions of the reference code (facebookresearch/adaptive-span):
//   x_ij = i + Lc - 1 - j            distance minus one; query i never sees itself
//   s_ij = (q_i·k_j + q_i·key_pe[:, S-1-x_ij]) / sqrt(d)
//   m(x) = clamp((R + z - x) / R, 0, 1)
//   p_ij = m(x_ij) e^{s_ij} / sum_j' m(x_ij') e^{s_ij'}     (exact masked softmax)
//   out_i = sum_j p_ij v_j
// Only keys with x < window are computed, so the cost follows the learned span, not S.
// Keys are at indices [0, Lc + M): the cache (Lc) then the current block (M). Where the window
// reaches before index 0 the keys and values are zero, as the reference's zero cache.
#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

// Which implementation runs: automatic = the CUDA row kernels on a GPU tensor (when built with
// them), the ATen query-tile path otherwise. Benchmarks name one explicitly to compare them.
enum class SpanKernel { automatic, aten_tiles, rows };

struct SpanAttentionOptions {
  int64_t max_span = 0;      // S: key_pe has S columns; x ranges over [0, S)
  double ramp = 32.0;        // R
  int64_t window = 0;        // keys computed per query, 1 <= window <= S (see effective_window)
  double dropout = 0.0;      // on the attention probabilities, as the reference
  bool training = false;
  SpanKernel kernel = SpanKernel::automatic;
  // Row kernels: each query row's keys split into ranges of this many distances, merged by
  // log-sum-exp, so that a head at a long span spreads over more GPU threads. -1: automatic
  // (kAutoKeyChunk on a GPU when the window is longer, no split on the host); 0: no split.
  int64_t key_chunk = -1;
};

constexpr int64_t kAutoKeyChunk = 1024;

// Keys a head with span z needs: x <= floor(z + R) (the clamp's gradient is inclusive at m = 0),
// rounded up to a multiple of `granule` so that windows change rarely; at most S.
int64_t effective_window(double z, double ramp, int64_t max_span, int64_t granule = 64);

// q: [B, M, d]; k, v: [B, Lc + M, d]; key_pe: [d, S]; span_z: 0-dim tensor, z = S * current_val.
// Returns out: [B, M, d]. Differentiable in q, k, v, key_pe and span_z.
at::Tensor span_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const at::Tensor& key_pe, const at::Tensor& span_z,
                          const SpanAttentionOptions& options);

}  // namespace adaspan::kernels
