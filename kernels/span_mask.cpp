#include "kernels/span_mask.h"

#include <ATen/ATen.h>

namespace adaspan::kernels {

at::Tensor span_mask(const at::Tensor& x, const at::Tensor& span_z, double ramp) {
  return at::clamp((ramp + span_z - x) / ramp, 0.0, 1.0);
}

}  // namespace adaspan::kernels
