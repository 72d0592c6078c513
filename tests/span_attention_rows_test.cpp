// The row programs (kernels/span_rows/row_program.h), run on the host exactly as the CUDA kernels run
// them on a GPU, held to the float64 dense reference and to finite differences.
#include "kernels/span_rows/span_attention_rows.h"
#include "kernels/philox.h"
#include "kernels/span_attention.h"
#include "kernels/span_attention_reference.h"
#include "kernels/span_mask.h"
#include "tests/finite_difference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>

namespace adaspan {
namespace {

using testing::numerical_gradient;
using testing::relative_error;

TEST(Philox, KnownAnswerVectors) {
  // Random123's kat_vectors for philox4x32_10.
  struct Kat {
    kernels::Philox4x32 counter;
    uint32_t key0, key1;
    kernels::Philox4x32 expected;
  };
  const Kat kats[] = {
      {{{0, 0, 0, 0}}, 0, 0, {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
      {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
       0xffffffffu,
       0xffffffffu,
       {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
      {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
       0xa4093822u,
       0x299f31d0u,
       {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
  };
  for (const Kat& k : kats) {
    const kernels::Philox4x32 out = kernels::philox4x32_10(k.counter, k.key0, k.key1);
    for (int w = 0; w < 4; ++w) EXPECT_EQ(out.v[w], k.expected.v[w]) << "word " << w;
  }
}

TEST(Philox, UniformDrawsAreUniform) {
  constexpr int kDraws = 200000;
  int below_tenth = 0, below_half = 0;
  double sum = 0;
  for (int i = 0; i < kDraws; ++i) {
    const float u = kernels::philox_uniform(12345, static_cast<uint64_t>(i / 100), static_cast<uint64_t>(i % 100));
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    below_tenth += u < 0.1f;
    below_half += u < 0.5f;
    sum += u;
  }
  // Binomial standard deviations: 0.00067 and 0.0011; 5 sigma.
  EXPECT_NEAR(below_tenth / double(kDraws), 0.1, 0.0034);
  EXPECT_NEAR(below_half / double(kDraws), 0.5, 0.0056);
  EXPECT_NEAR(sum / kDraws, 0.5, 0.0033);
}

struct RowCase {
  int64_t batch, block, cache, dim, span;
  double ramp, z;
  bool full_window;
};

void PrintTo(const RowCase& c, std::ostream* os) {
  *os << "B" << c.batch << " M" << c.block << " Lc" << c.cache << " d" << c.dim << " S" << c.span << " R" << c.ramp
      << " z" << c.z << (c.full_window ? " full" : " trimmed");
}

struct Inputs {
  at::Tensor q, k, v, key_pe, z;
  std::vector<at::Tensor*> all() { return {&q, &k, &v, &key_pe, &z}; }
};

Inputs make_inputs(const RowCase& c, uint64_t seed, bool per_query_span = false) {
  at::manual_seed(seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  Inputs in{at::randn({c.batch, c.block, c.dim}, opt), at::randn({c.batch, c.cache + c.block, c.dim}, opt),
            at::randn({c.batch, c.cache + c.block, c.dim}, opt), at::randn({c.dim, c.span}, opt),
            at::full({}, c.z, opt)};
  // Per-query spans spread over [0, z] with fractional parts (no finite difference on a clamp kink).
  if (per_query_span) in.z = at::rand({c.batch, c.block}, opt) * c.z + 0.37;
  return in;
}

kernels::SpanAttentionOptions options_for(const RowCase& c, double widest_z) {
  kernels::SpanAttentionOptions o;
  o.max_span = c.span;
  o.ramp = c.ramp;
  o.window = c.full_window ? c.span : kernels::effective_window(widest_z, c.ramp, c.span);
  return o;
}

// Per-query spans through the dense reference one query at a time: query i of the block is the
// single query of a block whose cache is everything before it.
at::Tensor per_query_reference(const Inputs& in, const RowCase& c) {
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < c.batch; ++b) {
    std::vector<at::Tensor> queries;
    for (int64_t i = 0; i < c.block; ++i) {
      const int64_t keys = c.cache + i + 1;
      queries.push_back(kernels::span_attention_reference(
          in.q.narrow(0, b, 1).narrow(1, i, 1), in.k.narrow(0, b, 1).narrow(1, 0, keys),
          in.v.narrow(0, b, 1).narrow(1, 0, keys), in.key_pe, in.z.select(0, b).select(0, i), c.span, c.ramp));
    }
    rows.push_back(at::cat(queries, 1));
  }
  return at::cat(rows, 0);
}

const char* const kInputNames[] = {"q", "k", "v", "key_pe", "z"};

// The gradients of every input of `a` against those of `b`, relative error below `tolerance`.
void expect_same_gradients(Inputs& a, Inputs& b, double tolerance, const std::string& what = "") {
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_LT(relative_error(a.all()[i]->grad(), b.all()[i]->grad()), tolerance) << what << " " << kInputNames[i];
  }
}

// The analytic gradients of every input (already back-propagated from loss()) against central
// finite differences of loss().
void expect_gradients_match_finite_differences(Inputs& in, const std::function<at::Tensor()>& loss) {
  for (size_t i = 0; i < 5; ++i) {
    const at::Tensor numeric = numerical_gradient([&] { return loss().item<double>(); }, in.all()[i]->detach());
    EXPECT_LT(relative_error(in.all()[i]->grad(), numeric), 1e-6) << kInputNames[i];
  }
}

class SpanRowsVsDense : public ::testing::TestWithParam<RowCase> {};

TEST_P(SpanRowsVsDense, ForwardAndGradientsMatchDenseFloat64) {
  const RowCase c = GetParam();
  Inputs a = make_inputs(c, 7), b = make_inputs(c, 7);
  for (auto* in : {&a, &b}) {
    for (at::Tensor* t : in->all()) t->requires_grad_(true);
  }
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  const at::Tensor rows = kernels::span_attention_rows(a.q, a.k, a.v, a.key_pe, a.z, options_for(c, c.z));
  const at::Tensor dense = kernels::span_attention_reference(b.q, b.k, b.v, b.key_pe, b.z, c.span, c.ramp);
  EXPECT_LT((rows - dense).abs().max().item<double>(), 1e-12);
  (rows * w).sum().backward();
  (dense * w).sum().backward();
  expect_same_gradients(a, b, 1e-11);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SpanRowsVsDense,
    ::testing::Values(RowCase{2, 8, 16, 8, 16, 4.0, 5.3, true},          // small, full window
                      RowCase{2, 70, 100, 8, 128, 8.0, 40.7, false},     // M not a multiple of anything
                      RowCase{1, 20, 0, 16, 32, 4.0, 9.5, false},        // no cache: zero keys before index 0
                      RowCase{2, 16, 5, 8, 96, 32.0, 0.0, false},        // z = 0 (init), cache shorter than window
                      RowCase{1, 33, 200, 16, 200, 16.0, 200.0, false},  // z = S: all of S
                      RowCase{1, 9, 40, 8, 64, 4.0, 12.0, false},        // integer z: m = 0 key still in dz
                      RowCase{2, 3, 300, 32, 256, 32.0, 150.2, false}));

TEST(SpanRows, EqualsTheFusedCpuKernelFloat32) {
  const RowCase c{2, 130, 257, 64, 512, 32.0, 77.3, false};
  Inputs in = make_inputs(c, 3);
  for (at::Tensor* t : in.all()) *t = t->to(at::kFloat).requires_grad_(true);
  const auto options = options_for(c, c.z);
  const at::Tensor rows = kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options);
  const at::Tensor fused = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options);
  EXPECT_LT(relative_error(rows, fused), 1e-5);
}

TEST(SpanRows, GradientsMatchFiniteDifferences) {
  const RowCase c{1, 5, 6, 8, 8, 2.0, 3.5, false};
  Inputs in = make_inputs(c, 3);
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  const auto options = options_for(c, c.z);
  auto loss = [&] { return (kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options) * w).sum(); };
  for (at::Tensor* t : in.all()) t->requires_grad_(true);
  loss().backward();
  expect_gradients_match_finite_differences(in, loss);
  EXPECT_NE(in.z.grad().item<double>(), 0.0);
}

TEST(SpanRows, PerQuerySpansMatchQueryByQueryReference) {
  const RowCase c{2, 12, 20, 8, 32, 4.0, 20.0, false};
  Inputs a = make_inputs(c, 5, true), b = make_inputs(c, 5, true);
  for (auto* in : {&a, &b}) {
    for (at::Tensor* t : in->all()) t->requires_grad_(true);
  }
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  const double widest = a.z.max().item<double>();
  const at::Tensor rows = kernels::span_attention_rows(a.q, a.k, a.v, a.key_pe, a.z, options_for(c, widest));
  const at::Tensor dense = per_query_reference(b, c);
  EXPECT_LT((rows - dense).abs().max().item<double>(), 1e-12);
  (rows * w).sum().backward();
  (dense * w).sum().backward();
  expect_same_gradients(a, b, 1e-11);
  // Each query's span gets its own gradient, and it is not zero where the ramp sees keys.
  EXPECT_EQ(a.z.grad().sizes(), a.z.sizes());
  EXPECT_GT(a.z.grad().abs().gt(0).sum().item<int64_t>(), c.batch * c.block / 2);
}

TEST(SpanRows, PerQuerySpanGradientsMatchFiniteDifferences) {
  const RowCase c{1, 6, 4, 8, 16, 3.0, 9.0, false};
  Inputs in = make_inputs(c, 8, true);
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  const auto options = options_for(c, in.z.max().item<double>());
  auto loss = [&] { return (kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options) * w).sum(); };
  in.z.requires_grad_(true);
  in.q.requires_grad_(true);
  loss().backward();
  EXPECT_LT(relative_error(in.z.grad(), numerical_gradient([&] { return loss().item<double>(); }, in.z.detach())),
            1e-6);
  EXPECT_LT(relative_error(in.q.grad(), numerical_gradient([&] { return loss().item<double>(); }, in.q.detach())),
            1e-6);
}

TEST(SpanRows, DropoutMaskIsRegeneratedInBackward) {
  // Finite differences see one fixed keep-mask per seed: the analytic gradient matches them only
  // if backward regenerates exactly the forward's mask.
  const RowCase c{2, 17, 10, 8, 32, 4.0, 12.5, false};
  Inputs in = make_inputs(c, 9);
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  auto options = options_for(c, c.z);
  options.dropout = 0.3;
  options.training = true;
  auto loss = [&] {
    at::manual_seed(42);
    return (kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options) * w).sum();
  };
  for (at::Tensor* t : in.all()) t->requires_grad_(true);
  loss().backward();
  expect_gradients_match_finite_differences(in, loss);
  at::NoGradGuard no_grad;
  const double dropped = loss().item<double>();
  options.dropout = 0;
  EXPECT_GT(std::abs(dropped - loss().item<double>()), 1e-3);  // something was dropped
}

TEST(SpanRows, KeysPastTheSpanAreNeverRead) {
  // NaN in every key and value the span cannot reach: the output and gradients stay finite.
  const RowCase c{1, 8, 64, 8, 64, 4.0, 6.5, false};  // query i reads x <= 10: j >= i + 53
  Inputs in = make_inputs(c, 4);
  in.k.narrow(1, 0, 50).fill_(NAN);
  in.v.narrow(1, 0, 50).fill_(NAN);
  for (at::Tensor* t : in.all()) t->requires_grad_(true);
  auto options = options_for(c, c.z);
  options.window = c.span;  // the buffer is wider than the span: the bound comes from z alone
  const at::Tensor out = kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options);
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  out.sum().backward();
  EXPECT_TRUE(at::isfinite(in.q.grad()).all().item<bool>());
  EXPECT_TRUE(at::isfinite(in.z.grad()).all().item<bool>());
  EXPECT_TRUE(at::isfinite(in.k.grad().narrow(1, 50, 22)).all().item<bool>());
}

// A row's keys split into ranges (merged by log-sum-exp; gradients summed) give what one range
// gives: per-head and per-query spans, ranges past some rows' spans, dropout on.
TEST(SpanRows, KeyRangeSplitEqualsOneRange) {
  const RowCase c{2, 37, 90, 16, 128, 8.0, 70.4, false};
  for (const bool per_query : {false, true}) {
    for (const int64_t chunk : {1, 7, 32, 100}) {
      Inputs a = make_inputs(c, 12, per_query), b = make_inputs(c, 12, per_query);
      for (auto* in : {&a, &b}) {
        for (at::Tensor* t : in->all()) t->requires_grad_(true);
      }
      const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
      auto options = options_for(c, per_query ? a.z.max().item<double>() : c.z);
      options.dropout = 0.2;
      options.training = true;
      options.key_chunk = 0;
      at::manual_seed(77);
      const at::Tensor whole = kernels::span_attention_rows(a.q, a.k, a.v, a.key_pe, a.z, options);
      options.key_chunk = chunk;
      at::manual_seed(77);
      const at::Tensor split = kernels::span_attention_rows(b.q, b.k, b.v, b.key_pe, b.z, options);
      const std::string what = "chunk " + std::to_string(chunk) + (per_query ? ", per-query spans" : "");
      EXPECT_LT((whole - split).abs().max().item<double>(), 1e-13) << what;
      (whole * w).sum().backward();
      (split * w).sum().backward();
      expect_same_gradients(b, a, 1e-12, what);
    }
  }
}

TEST(SpanRows, BitwiseReproducible) {
  const RowCase c{2, 40, 30, 16, 64, 8.0, 30.5, false};
  at::Tensor grads[2][2];
  for (int run = 0; run < 2; ++run) {
    Inputs in = make_inputs(c, 6);
    for (at::Tensor* t : in.all()) *t = t->to(at::kFloat).requires_grad_(true);
    kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options_for(c, c.z)).pow(2).sum().backward();
    grads[run][0] = in.k.grad();
    grads[run][1] = in.z.grad();
  }
  EXPECT_TRUE(at::equal(grads[0][0], grads[1][0]));
  EXPECT_TRUE(at::equal(grads[0][1], grads[1][1]));
}

TEST(SpanRows, RefusesWhatItCannotRun) {
  const RowCase c{1, 4, 4, 12, 16, 4.0, 3.0, false};  // head dimension 12: no instantiation
  Inputs in = make_inputs(c, 1);
  EXPECT_THROW(kernels::span_attention_rows(in.q, in.k, in.v, in.key_pe, in.z, options_for(c, c.z)),
               std::invalid_argument);
  const RowCase ok{1, 4, 4, 8, 16, 4.0, 3.0, false};
  Inputs in8 = make_inputs(ok, 1);
  EXPECT_THROW(kernels::span_attention_rows(in8.q, in8.k, in8.v, in8.key_pe, at::zeros({1, 3}, at::kDouble),
                                            options_for(ok, ok.z)),
               std::invalid_argument);
}

}  // namespace
}  // namespace adaspan
