#pragma once
// Slow, obviously-correct span attention: a dense [M, S + Lc + M] score matrix with an explicit
// mask matrix built in a loop, the full S window, no tiling, no trimming. Tests hold
// kernels::span_attention to it. Same arguments and semantics as span_attention (keys before
// index 0 are zero vectors, as the reference's zero cache), with one span for the head.
#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

at::Tensor span_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                    const at::Tensor& key_pe, const at::Tensor& span_z, int64_t max_span, double ramp);

}  // namespace adaspan::kernels
