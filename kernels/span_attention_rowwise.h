#pragma once
// Adaptive-span attention through the row programs of span_attention_rows.h: the CUDA kernels on a
// GPU tensor (when built with them), the same programs looped on the host otherwise. Same
// semantics as span_attention (span_attention.h), plus per-query spans.
#include "kernels/span_attention.h"

#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

// q: [B, M, d]; k, v: [B, Lc + M, d]; key_pe: [d, S]; span_z: 0-dim (the head's span, bytes) or
// [B, M] (each query's own span). options.window bounds the keys any query reads (x < window).
// Differentiable in q, k, v, key_pe and span_z. d must be one of 8, 16, 32, 64, 96, 128.
at::Tensor span_attention_rowwise(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                  const at::Tensor& key_pe, const at::Tensor& span_z,
                                  const SpanAttentionOptions& options);

// Whether this build has the CUDA kernels (otherwise CUDA tensors are refused).
bool span_rows_cuda_built();

}  // namespace adaspan::kernels
