#pragma once
// The banded layout shared by the attention kernels. Query r of a tile of T queries sees the W keys
// of a band of W + T - 1 consecutive keys starting at its own row: band column r + c is its window
// column c (c = 0 the farthest key, c = W - 1 the nearest, x = W - 1 - c).
#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

// [.., T, W + T - 1] -> [.., T, W]: out[r, c] = in[r, r + c] (the reference's _unskew).
at::Tensor unskew(const at::Tensor& band, int64_t window);

// [.., T, W] -> [.., T, W + T - 1]: out[r, r + c] = in[r, c], zero elsewhere. Inverse of unskew.
at::Tensor skew(const at::Tensor& window_rows);

// Rows [first, first + count) of t along dim 1, zero rows where that range leaves [0, t.size(1)).
at::Tensor rows_zero_padded(const at::Tensor& t, int64_t first, int64_t count);

}  // namespace adaspan::kernels
