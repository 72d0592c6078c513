#include "kernels/span_mask.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace adaspan {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

TEST(SpanMask, ValuesMatchReferenceTemplate) {
  // Reference check: S = 8, z = 2, R = 2 gives [0,0,0,0,0.5,1,1,1] by column; column c is x = 7 - c.
  const at::Tensor x = at::arange(7, -1, -1, kDouble);
  const at::Tensor m = kernels::span_mask(x, at::full({}, 2.0, kDouble), 2.0);
  const std::vector<double> expected{0, 0, 0, 0, 0.5, 1, 1, 1};
  for (int64_t c = 0; c < 8; ++c) EXPECT_DOUBLE_EQ(m[c].item<double>(), expected[c]) << "column " << c;
}

TEST(SpanMask, NonIntegerSpan) {
  const at::Tensor x = at::tensor({0.0, 3.0, 3.25, 5.0, 7.25, 8.0}, kDouble);
  const at::Tensor m = kernels::span_mask(x, at::full({}, 3.25, kDouble), 4.0);
  const std::vector<double> expected{1, 1, 1, (4 + 3.25 - 5) / 4, 0, 0};
  for (int64_t i = 0; i < 6; ++i) EXPECT_NEAR(m[i].item<double>(), expected[i], 1e-15);
}

TEST(SpanMask, GradientIsInverseRampOnInclusiveRamp) {
  // z = 2 (integer), R = 4: dm/dz = 1/R for 2 <= x <= 6 (both ends, where m = 1 and m = 0 exactly).
  const at::Tensor x = at::arange(0, 9, kDouble);
  for (int64_t i = 0; i < 9; ++i) {
    at::Tensor z = at::full({}, 2.0, kDouble).requires_grad_(true);
    kernels::span_mask(x[i], z, 4.0).backward();
    const double expected = (i >= 2 && i <= 6) ? 0.25 : 0.0;
    EXPECT_DOUBLE_EQ(z.grad().item<double>(), expected) << "x = " << i;
  }
}

}  // namespace
}  // namespace adaspan
