#include "kernels/entmax.h"
#include "tests/finite_difference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace adaspan {
namespace {

const auto kDouble = at::TensorOptions().dtype(at::kDouble);

TEST(Entmax15, KnownValues) {
  const at::Tensor p = kernels::entmax15(at::tensor({-2.0, 0.0, 0.5}, kDouble));
  EXPECT_EQ(p[0].item<double>(), 0.0);  // an exact zero
  EXPECT_NEAR(p[1].item<double>(), 0.3260, 1e-4);
  EXPECT_NEAR(p[2].item<double>(), 0.6740, 1e-4);
}

TEST(Entmax15, MatchesBisectionAndSumsToOne) {
  at::manual_seed(3);
  const at::Tensor x = at::randn({64, 37}, kDouble) * 3;
  const at::Tensor p = kernels::entmax15(x);
  EXPECT_LT((p - kernels::entmax15_bisection(x)).abs().max().item<double>(), 1e-12);
  EXPECT_LT((p.sum(-1) - 1).abs().max().item<double>(), 1e-12);
  EXPECT_GT((p == 0).sum().item<int64_t>(), 0);  // sparse
  EXPECT_TRUE((p >= 0).all().item<bool>());
}

TEST(Entmax15, GradientMatchesFiniteDifferences) {
  at::manual_seed(4);
  at::Tensor x = (at::randn({3, 9}, kDouble) * 2).requires_grad_(true);
  const at::Tensor w = at::randn({3, 9}, kDouble);
  (kernels::entmax15(x) * w).sum().backward();
  const at::Tensor numeric =
      testing::numerical_gradient([&] { return (kernels::entmax15(x) * w).sum().item<double>(); }, x.detach());
  EXPECT_LT(testing::relative_error(x.grad(), numeric), 1e-6);
}

TEST(Entmax15, ShiftInvariantAndFloat32Stable) {
  const at::Tensor x = at::tensor({1.0f, 2.0f, 3.5f, -1.0f});
  const at::Tensor p = kernels::entmax15(x), shifted = kernels::entmax15(x + 1000.0f);
  EXPECT_LT((p - shifted).abs().max().item<double>(), 1e-5);
}

}  // namespace
}  // namespace adaspan
