#pragma once
// The soft span mask of Sukhbaatar et al. 2019, eq. (3), in the reference code's indexing:
//   m_z(x) = clamp((R + z - x) / R, 0, 1),   x = distance - 1 (the previous token has x = 0).
// m = 1 for x <= z, a linear ramp to 0 at x = z + R. The gradient w.r.t. z is 1/R on
// z <= x <= z + R, both ends inclusive (ATen's clamp backward), exactly as in the reference.
#include <ATen/core/Tensor.h>

namespace adaspan::kernels {

// x: any shape (distances minus one); span_z: 0-dim tensor (or broadcastable to x).
at::Tensor span_mask(const at::Tensor& x, const at::Tensor& span_z, double ramp);

}  // namespace adaspan::kernels
