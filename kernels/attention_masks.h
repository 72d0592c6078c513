#pragma once
// Which keys each query sees, and with what weight: the `mask` of banded_attention, by window
// column (column c holds the key at x = W - 1 - c; x = 0 is the nearest earlier key).
#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

// One head's span z (0-dim): m_z(x) = clamp((R + z - x) / R, 0, 1) (Sukhbaatar et al. 2019). [1, 1, W]
at::Tensor static_span_window(const at::Tensor& z, double ramp, int64_t window);

// Per-token spans z: [B, M] (dynamic attention span, ibid. §3.3): m_{z_i}(x) per query. [B, M, W]
at::Tensor dynamic_span_window(const at::Tensor& z, double ramp, int64_t window);

// Every key of the window. [1, 1, W]
at::Tensor full_window(int64_t window, const at::TensorOptions& options);

// The fixed pattern of the Sparse Transformer (Child et al. 2019, §4.2) with stride c: the c nearest
// keys, plus every key at a stream position p with p mod c = c - 1. `first_position`: the stream
// position of the block's first query (only its value mod c matters), so that one long block and
// the same bytes fed in shorter blocks (generation: one at a time) see the same keys. [1, M, W]
at::Tensor sparse_fixed_window(int64_t block, int64_t window, int64_t stride, int64_t first_position,
                               const at::TensorOptions& options);

}  // namespace adaspan::kernels
