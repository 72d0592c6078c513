#include "kernels/attention_masks.h"

#include "kernels/span_mask.h"

#include <ATen/ATen.h>

namespace adaspan::kernels {
namespace {

at::Tensor window_distances(int64_t window, const at::TensorOptions& options) {
  return at::arange(window - 1, -1, -1, options);  // column c: x = W - 1 - c
}

}  // namespace

at::Tensor static_span_window(const at::Tensor& z, double ramp, int64_t window) {
  return span_mask(window_distances(window, z.options()), z, ramp).view({1, 1, window});
}

at::Tensor dynamic_span_window(const at::Tensor& z, double ramp, int64_t window) {
  return span_mask(window_distances(window, z.options()).view({1, 1, window}), z.unsqueeze(-1), ramp);
}

at::Tensor full_window(int64_t window, const at::TensorOptions& options) { return at::ones({1, 1, window}, options); }

at::Tensor sparse_fixed_window(int64_t block, int64_t window, int64_t stride, int64_t first_position,
                               const at::TensorOptions& options) {
  const at::TensorOptions integers = options.dtype(at::kLong);
  const at::Tensor x = window_distances(window, integers).view({1, window});
  const at::Tensor query = at::arange(block, integers).view({block, 1}) + first_position % stride;
  const at::Tensor position = query - 1 - x;  // [M, W], stream positions of the keys (up to a multiple of c)
  const at::Tensor summary = at::remainder(position, stride) == stride - 1;
  return ((x < stride) | summary).to(options.dtype()).unsqueeze(0);
}

}  // namespace adaspan::kernels
