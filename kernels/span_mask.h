#pragma once
// The soft span mask of Sukhbaatar et al. 2019, eq. (3), in the reference code's indexing:
//   m_z(x) = clamp((R + z - x) / R, 0, 1),   x = distance - 1 (the previous token has x = 0).
// m = 1 for x <= z, a linear ramp to 0 at x = z + R. The gradient w.r.t. z is 1/R on
// z <= x <= z + R, both ends inclusive (ATen's clamp backward), exactly as in the reference.
// effective_window: how many keys a span needs, the mask's support rounded up.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace adaspan::kernels {

// x: any shape (distances minus one); span_z: 0-dim tensor (or broadcastable to x).
at::Tensor span_mask(const at::Tensor& x, const at::Tensor& span_z, double ramp);

// Keys a head with span z needs: x <= floor(z + R) (the clamp's gradient is inclusive at m = 0),
// rounded up to a multiple of `granule` so that windows change rarely; at most S.
int64_t effective_window(double z, double ramp, int64_t max_span, int64_t granule = 64);

}  // namespace adaspan::kernels
