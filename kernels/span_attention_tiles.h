#pragma once
// span_attention (span_attention.h) in ATen ops, for one span per head and softmax: queries in
// tiles of 64, each tile's scores against the band of W + 63 keys it needs, forward and backward
// written out (FlashAttention-2 algebra). The path off the GPU row kernels. Callers go through
// span_attention, which has checked the arguments.
#include "kernels/span_attention.h"

namespace adaspan::kernels {

// span_z: one value (0-dim or [1]). Same shapes and result as span_attention.
at::Tensor span_attention_tiles(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& key_pe,
                                const at::Tensor& span_z, const SpanAttentionOptions& options);

// early_span_scores (span_attention.h) for this path: the position term of every query and the
// band scores of the keys present, unscaled, in the forward's score buffer.
EarlyScores span_attention_tiles_early(const at::Tensor& q, const at::Tensor& k_present, const at::Tensor& key_pe,
                                       int64_t late_keys, const SpanAttentionOptions& options);

}  // namespace adaspan::kernels
