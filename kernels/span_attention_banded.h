#pragma once
// span_attention (span_attention.h) through banded_attention, for what the row kernels and the
// ATen tiles do not cover: 1.5-entmax, per-query score scales, and per-query spans off the row
// kernels. One span per head: one banded call over the head's window with the mask m_z(x).
// Per-query spans: queries in tiles of 64, each over the window of its widest span
// (effective_window, granule 64), so the cost follows the per-token spans. Callers go through
// span_attention, which has checked the arguments.
#include "kernels/span_attention.h"

namespace adaspan::kernels {

// span_z: one value (0-dim or [1]) or [B, M] (`per_query`). Same shapes and result as span_attention.
at::Tensor span_attention_banded(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& key_pe, const at::Tensor& span_z, bool per_query,
                                 const SpanAttentionOptions& options);

}  // namespace adaspan::kernels
