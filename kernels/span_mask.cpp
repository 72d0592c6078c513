#include "kernels/span_mask.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace adaspan::kernels {

at::Tensor span_mask(const at::Tensor& x, const at::Tensor& span_z, double ramp) {
  return at::clamp((ramp + span_z - x) / ramp, 0.0, 1.0);
}

int64_t effective_window(double z, double ramp, int64_t max_span, int64_t granule) {
  const int64_t needed = static_cast<int64_t>(std::floor(z + ramp)) + 1;
  const int64_t rounded = (std::max<int64_t>(needed, 1) + granule - 1) / granule * granule;
  return std::min(rounded, max_span);
}

}  // namespace adaspan::kernels
