#pragma once
// Adaptive-span attention for one head: the one front door every caller goes through; it picks
// the implementation (see SpanKernel) from the call alone.
//
// Sukhbaatar et al. 2019, "Adaptive Attention Span in Transformers", eq. (2)-(4), with the
// conventions of the reference code (facebookresearch/adaptive-span):
//   x_ij = i + Lc - 1 - j            distance minus one; query i never sees itself
//   s_ij = λ_i (q_i·k_j + q_i·key_pe[:, S-1-x_ij]) / sqrt(d)      (λ = 1 unless query_scale)
//   m(x) = clamp((R + z - x) / R, 0, 1)     z: the head's span, or query i's own span z_i
//   p_ij = m(x_ij) e^{s_ij} / sum_j' m(x_ij') e^{s_ij'}     (exact masked softmax; with
//          entmax15, a = entmax15(s over the keys with m > 0), p_ij = a_ij m_ij / sum_j' a_ij' m_ij')
//   out_i = sum_j p_ij v_j
// Only keys with x < window are computed, so the cost follows the learned span, not S.
// Keys are at indices [0, Lc + M): the cache (Lc) then the current block (M). Where the window
// reaches before index 0 the keys and values are zero, as the reference's zero cache.
#include "kernels/normalizer.h"
#include "kernels/span_mask.h"

#include <ATen/core/Tensor.h>

#include <functional>

namespace adaspan::kernels {

// The implementations, and which one span_attention runs:
//   rows        the row programs (span_rows/): CUDA threads on a GPU tensor, a host loop otherwise.
//               Softmax without query scales; one span per head or per query.
//   aten_tiles  ATen ops: query tiles (span_attention_tiles.h) for one span per head and softmax;
//               banded_attention in query tiles of 64 (span_attention_banded.h) for per-query
//               spans, entmax15 or query scales.
//   automatic   rows on a GPU tensor when this build has the CUDA kernels and they take the
//               tensors (float32/float64, head dimension 8, 16, 32, 64, 96 or 128, one device and
//               dtype) and the call is softmax without scales; aten_tiles otherwise.
// Benchmarks and tests name one explicitly to compare them.
enum class SpanKernel { automatic, aten_tiles, rows };

// A run of consecutive queries computed together: queries [first, first + count) of the call,
// `keys_before` keys before the first of them (Lc + first), each reading at most `window` keys.
struct QueryTile {
  int64_t first = 0, count = 0, keys_before = 0, window = 0;
};

// Context parallelism: a call whose first `late_keys` keys and values (the halo) are still on their
// way. early_span_scores (below) computes beforehand what needs none of them: the position term
// q·key_pe of every query (half of each score's products) and q·k for the query tiles whose keys
// are all there. `scores` is the aten tiles' unscaled score buffer, [B, M rounded up to a multiple
// of 64 (M itself when under 64), window]; the call consumes it (writes into it).
struct EarlyScores {
  at::Tensor scores;
  int64_t late_keys = 0;
  int64_t keys = 0;  // Lc + M of the call they are for
};

// λ for the queries of a tile: [B, count]. ASEntmax's length scaling (the caller's business)
// depends on how many keys each query can see, hence the tile's window.
using QueryScale = std::function<at::Tensor(const QueryTile&)>;

struct SpanAttentionOptions {
  int64_t max_span = 0;  // S: key_pe has S columns; x ranges over [0, S)
  double ramp = 32.0;    // R
  int64_t window = 0;    // keys computed per query, 1 <= window <= S (see effective_window)
  double dropout = 0.0;  // on the attention probabilities, as the reference
  bool training = false;
  SpanKernel kernel = SpanKernel::automatic;
  // Row kernels: each query row's keys split into ranges of this many distances, merged by
  // log-sum-exp, so that a head at a long span spreads over more GPU threads. -1: automatic
  // (kAutoKeyChunk on a GPU when the window is longer, no split on the host); 0: no split.
  int64_t key_chunk = -1;
  Normalizer normalizer = Normalizer::softmax;
  QueryScale query_scale;  // empty: λ = 1
  // From early_span_scores for this call's q, key_pe and window (the aten tiles path only): the
  // call then adds only the late keys' scores. Bit for bit the result of a call without it.
  EarlyScores early;
};

constexpr int64_t kAutoKeyChunk = 1024;

// q: [B, M, d]; k, v: [B, Lc + M, d]; key_pe: [d, S];
// span_z: the head's span as one value (0-dim or [1]), z = S * current_val, or each query's own
// span as [B, M] (dynamic spans). With per-query spans, options.window bounds the keys any query
// reads on the row kernels; the banded tiles take each tile's own window (effective_window of
// its widest span).
// Returns out: [B, M, d]. Differentiable in q, k, v, key_pe and span_z (and through query_scale).
// Bad shapes or values: std::invalid_argument naming them.
at::Tensor span_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                          const at::Tensor& span_z, const SpanAttentionOptions& options);

// Whether a call with these arguments and one span per head runs the aten tiles, the one path
// that takes EarlyScores (q: the call's [B, M, d]; k, v: any keys of the call, for their dtype and
// device).
bool takes_early_scores(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                        const SpanAttentionOptions& options);

// The scores of span_attention(q, k, v, key_pe, span_z, options) that need none of k's first
// `late_keys` rows: k_present is k's rows from late_keys on ([B, Lc + M - late_keys, d]).
// Not differentiable (the call's backward recomputes from its own inputs).
EarlyScores early_span_scores(const at::Tensor& q, const at::Tensor& k_present, const at::Tensor& key_pe,
                              int64_t late_keys, const SpanAttentionOptions& options);

}  // namespace adaspan::kernels
