#include "kernels/span_attention.h"
#include "kernels/span_attention_reference.h"
#include "kernels/span_mask.h"
#include "tests/finite_difference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace adaspan {
namespace {

using testing::numerical_gradient;
using testing::relative_error;

struct Case {
  int64_t batch, block, cache, dim, span;
  double ramp, z;
  bool full_window;  // window = S instead of the effective (trimmed) window
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << "B" << c.batch << " M" << c.block << " Lc" << c.cache << " d" << c.dim << " S" << c.span << " R" << c.ramp
      << " z" << c.z << (c.full_window ? " full" : " trimmed");
}

struct Inputs {
  at::Tensor q, k, v, key_pe, z;
};

Inputs make_inputs(const Case& c, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(seed);
  const auto opt = at::TensorOptions().dtype(dtype);
  return {at::randn({c.batch, c.block, c.dim}, opt), at::randn({c.batch, c.cache + c.block, c.dim}, opt),
          at::randn({c.batch, c.cache + c.block, c.dim}, opt), at::randn({c.dim, c.span}, opt), at::full({}, c.z, opt)};
}

kernels::SpanAttentionOptions options_for(const Case& c) {
  kernels::SpanAttentionOptions o;
  o.max_span = c.span;
  o.ramp = c.ramp;
  o.window = c.full_window ? c.span : kernels::effective_window(c.z, c.ramp, c.span);
  return o;
}

class SpanAttentionVsDense : public ::testing::TestWithParam<Case> {};

TEST_P(SpanAttentionVsDense, ForwardMatchesDenseFloat64) {
  const Case c = GetParam();
  const Inputs in = make_inputs(c, at::kDouble, 7);
  const at::Tensor fast = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options_for(c));
  const at::Tensor dense = kernels::span_attention_reference(in.q, in.k, in.v, in.key_pe, in.z, c.span, c.ramp);
  ASSERT_EQ(fast.sizes(), dense.sizes());
  EXPECT_LT((fast - dense).abs().max().item<double>(), 1e-12);
}

TEST_P(SpanAttentionVsDense, GradientsMatchDenseFloat64) {
  const Case c = GetParam();
  Inputs a = make_inputs(c, at::kDouble, 11), b = make_inputs(c, at::kDouble, 11);
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  for (auto* in : {&a, &b}) {
    for (auto* t : {&in->q, &in->k, &in->v, &in->key_pe, &in->z}) t->requires_grad_(true);
  }
  (kernels::span_attention(a.q, a.k, a.v, a.key_pe, a.z, options_for(c)) * w).sum().backward();
  (kernels::span_attention_reference(b.q, b.k, b.v, b.key_pe, b.z, c.span, c.ramp) * w).sum().backward();
  EXPECT_LT(relative_error(a.q.grad(), b.q.grad()), 1e-12);
  EXPECT_LT(relative_error(a.k.grad(), b.k.grad()), 1e-12);
  EXPECT_LT(relative_error(a.v.grad(), b.v.grad()), 1e-12);
  EXPECT_LT(relative_error(a.key_pe.grad(), b.key_pe.grad()), 1e-12);
  EXPECT_NEAR(a.z.grad().item<double>(), b.z.grad().item<double>(), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SpanAttentionVsDense,
    ::testing::Values(Case{2, 8, 16, 4, 16, 4.0, 5.3, true},         // small, full window
                      Case{2, 70, 100, 8, 128, 8.0, 40.7, false},    // M not a multiple of the tile
                      Case{1, 20, 0, 4, 32, 4.0, 9.5, false},        // no cache: zero keys before index 0
                      Case{2, 16, 5, 4, 96, 32.0, 0.0, false},       // z = 0 (init), cache shorter than window
                      Case{1, 65, 200, 4, 200, 16.0, 200.0, false},  // z = S: window is all of S
                      Case{2, 3, 300, 4, 256, 32.0, 150.2, false}));

TEST(SpanAttention, GradientsMatchFiniteDifferences) {
  const Case c{1, 5, 6, 3, 8, 2.0, 3.5, false};
  Inputs in = make_inputs(c, at::kDouble, 3);
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  const auto options = options_for(c);
  auto loss = [&] {
    return (kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options) * w).sum().item<double>();
  };
  std::vector<at::Tensor*> inputs{&in.q, &in.k, &in.v, &in.key_pe, &in.z};
  for (auto* t : inputs) t->requires_grad_(true);
  (kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options) * w).sum().backward();
  const char* names[] = {"q", "k", "v", "key_pe", "z"};
  for (size_t i = 0; i < inputs.size(); ++i) {
    const at::Tensor analytic = inputs[i]->grad().clone();
    const at::Tensor numeric = numerical_gradient(loss, inputs[i]->detach());
    EXPECT_LT(relative_error(analytic, numeric), 1e-6) << names[i];
  }
  EXPECT_NE(in.z.grad().item<double>(), 0.0);  // the span does learn through the ramp
}

TEST(SpanAttention, DropoutGradientsMatchFiniteDifferences) {
  // The same keep-mask every call (generator reseeded), so the function is deterministic.
  const Case c{2, 70, 20, 3, 64, 4.0, 20.5, false};
  Inputs in = make_inputs(c, at::kDouble, 9);
  const at::Tensor w = at::randn({c.batch, c.block, c.dim}, at::kDouble);
  auto options = options_for(c);
  options.dropout = 0.3;
  options.training = true;
  auto run = [&] {
    at::manual_seed(42);
    return (kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options) * w).sum();
  };
  std::vector<at::Tensor*> inputs{&in.q, &in.k, &in.v, &in.key_pe, &in.z};
  for (auto* t : inputs) t->requires_grad_(true);
  run().backward();
  const char* names[] = {"q", "k", "v", "key_pe", "z"};
  for (size_t i = 0; i < inputs.size(); ++i) {
    const at::Tensor numeric = numerical_gradient([&] { return run().item<double>(); }, inputs[i]->detach());
    EXPECT_LT(relative_error(inputs[i]->grad(), numeric), 1e-6) << names[i];
  }
  // Dropout really dropped something: the output differs from the no-dropout one.
  at::NoGradGuard no_grad;
  const double with_dropout = run().item<double>();
  options.dropout = 0;
  EXPECT_GT(std::abs(with_dropout - run().item<double>()), 1e-3);
}

// A key past the ramp but inside the 64-rounded window, with a score far above the visible ones:
// masked keys must not overflow exp() (inf·0 = NaN); the result is as if the key were zero.
TEST(SpanAttention, HugeScoreOnAMaskedKeyChangesNothing) {
  const Case c{1, 4, 60, 4, 128, 4.0, 3.0, false};  // window 64 keys, visible x <= 7
  Inputs in = make_inputs(c, at::kFloat, 13);
  at::Tensor zeroed = in.k.clone();
  const int64_t far = c.cache - 40;  // x = 39 + i for query i: masked for every query
  in.k[0][far] = in.q[0][0] * 1000.0f;
  zeroed[0][far] = 0.0f;
  for (auto* t : {&in.q, &in.k, &in.v, &in.key_pe, &in.z}) t->requires_grad_(true);
  const at::Tensor out = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options_for(c));
  const at::Tensor expected = kernels::span_attention(in.q, zeroed, in.v, in.key_pe, in.z, options_for(c));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_LT((out - expected).abs().max().item<double>(), 1e-6);
  out.sum().backward();
  EXPECT_TRUE(at::isfinite(in.q.grad()).all().item<bool>());
  EXPECT_TRUE(at::isfinite(in.z.grad()).all().item<bool>());
}

// The key at x = z + R exactly has m = 0 but stays in the softmax's window for dz's sake, and the
// LSE leaves it out: a huge score there must not overflow e^{s - LSE} (inf·0 = NaN in dq, dk). The
// other gradients are as if the key were zero (its m = 0); dz, large there, stays finite.
TEST(SpanAttention, HugeScoreWhereTheRampEndsStaysFinite) {
  for (const auto kernel : {kernels::SpanKernel::aten_tiles, kernels::SpanKernel::rows}) {
    const Case c{1, 4, 60, 8, 128, 4.0, 3.0, false};  // query 0 sees the key at x = 7 = z + R
    Inputs in = make_inputs(c, at::kFloat, 13);
    at::Tensor zeroed = in.k.clone();
    const int64_t end_of_ramp = c.cache - 1 - 7;  // x = 7 for query 0, past the ramp for the others
    in.k[0][end_of_ramp] = in.q[0][0] * 1000.0f;
    zeroed[0][end_of_ramp] = 0.0f;
    kernels::SpanAttentionOptions options = options_for(c);
    options.kernel = kernel;
    auto run = [&](const at::Tensor& keys) {
      Inputs leaf{in.q.clone().requires_grad_(true), keys.clone().requires_grad_(true),
                  in.v.clone().requires_grad_(true), in.key_pe.clone().requires_grad_(true),
                  in.z.clone().requires_grad_(true)};
      const at::Tensor out = kernels::span_attention(leaf.q, leaf.k, leaf.v, leaf.key_pe, leaf.z, options);
      (out * at::linspace(-1, 1, out.numel()).view(out.sizes())).sum().backward();
      return std::make_pair(out.detach(), leaf);
    };
    const auto [out, grads] = run(in.k);
    const auto [expected, expected_grads] = run(zeroed);
    const std::string which = kernel == kernels::SpanKernel::rows ? "rows" : "aten tiles";
    EXPECT_LT((out - expected).abs().max().item<double>(), 1e-6) << which;
    EXPECT_LT((grads.q.grad() - expected_grads.q.grad()).abs().max().item<double>(), 1e-5) << which;
    EXPECT_LT((grads.v.grad() - expected_grads.v.grad()).abs().max().item<double>(), 1e-5) << which;
    EXPECT_LT((grads.key_pe.grad() - expected_grads.key_pe.grad()).abs().max().item<double>(), 1e-5) << which;
    EXPECT_LT((grads.k.grad() - expected_grads.k.grad()).abs().max().item<double>(), 1e-5) << which;
    EXPECT_TRUE(at::isfinite(grads.z.grad()).all().item<bool>()) << which;
  }
}

TEST(SpanAttention, TrimmedWindowEqualsFullWindowFloat32) {
  // z -> the trimmed window at R = 32, S = 512 (kernels/span_mask.h): keys x <= floor(z + R), i.e.
  // floor(z + 32) + 1 of them, rounded up to a multiple of 64. Every one is below S, so the trimmed
  // call really computes fewer keys; z = 32 needs the key at x = 64 (m = 0, inclusive ramp end): 128,
  // where rounding z + R alone would give 64.
  const std::vector<std::pair<double, int64_t>> windows = {{0.0, 64},   {17.5, 64},   {31.5, 64},
                                                           {32.0, 128}, {100.5, 192}, {400.0, 448}};
  for (const auto& [z, window] : windows) {
    const Case trimmed{2, 128, 512, 16, 512, 32.0, z, false};
    Case full = trimmed;
    full.full_window = true;
    ASSERT_EQ(options_for(trimmed).window, window) << "z = " << z;
    ASSERT_EQ(options_for(full).window, 512);
    const Inputs in = make_inputs(trimmed, at::kFloat, 5);
    const at::Tensor a = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options_for(trimmed));
    const at::Tensor b = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, options_for(full));
    EXPECT_LT((a - b).abs().max().item<double>(), 1e-6) << "z = " << z;
  }
}

TEST(SpanAttention, EffectiveWindowCoversInclusiveRamp) {
  EXPECT_EQ(kernels::effective_window(0.0, 32, 8192), 64);       // x <= 32 needs 33 keys -> 64
  EXPECT_EQ(kernels::effective_window(31.0, 32, 8192), 64);      // x <= 63: 64 keys
  EXPECT_EQ(kernels::effective_window(32.0, 32, 8192), 128);     // x <= 64: 65 keys
  EXPECT_EQ(kernels::effective_window(8000.0, 32, 8192), 8064);  // 8033 keys
  EXPECT_EQ(kernels::effective_window(8160.0, 32, 8192), 8192);  // capped at S
  EXPECT_EQ(kernels::effective_window(3.0, 4, 16), 16);
}

// The message of span_attention's std::invalid_argument, or "" when it does not throw one.
std::string span_attention_error(const at::Tensor& q, const at::Tensor& k, const at::Tensor& key_pe,
                                 const at::Tensor& z, const kernels::SpanAttentionOptions& o) {
  try {
    kernels::span_attention(q, k, k, key_pe, z, o);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(SpanAttention, BadShapesAreNamedInTheError) {
  kernels::SpanAttentionOptions o;
  o.max_span = 512;
  o.window = 64;
  const at::Tensor q = at::zeros({4, 256, 64}), key_pe = at::zeros({64, 512}), z = at::full({}, 10.0);
  const std::string keys = span_attention_error(q, at::zeros({4, 300, 32}), key_pe, z, o);
  EXPECT_EQ(keys.rfind("span_attention: ", 0), 0u) << keys;
  EXPECT_NE(keys.find("q is [4, 256, 64]"), std::string::npos) << keys;
  EXPECT_NE(keys.find("k is [4, 300, 32]"), std::string::npos) << keys;
  const std::string spans = span_attention_error(q, at::zeros({4, 300, 64}), key_pe, at::zeros({4, 100}), o);
  EXPECT_NE(spans.find("span_z is [4, 100]"), std::string::npos) << spans;
  EXPECT_NE(spans.find("[B, M] = [4, 256]"), std::string::npos) << spans;
  const std::string pe = span_attention_error(q, at::zeros({4, 300, 64}), at::zeros({64, 500}), z, o);
  EXPECT_NE(pe.find("key_pe is [64, 500]"), std::string::npos) << pe;
}

// Context parallelism's overlap (kernels::EarlyScores): scores computed before the first
// `late` keys came, then the call with them, equal one call bit for bit (outputs and gradients),
// whichever keys are late: none, some of the cache, all of it, or some of the block too.
TEST(SpanAttention, EarlyScoresGiveTheWholeCallBitForBit) {
  struct EarlyCase {
    Case c;
    double dropout;
  };
  const std::vector<EarlyCase> cases = {
      {{2, 128, 64, 16, 256, 16.0, 20.6, false}, 0.0},    // window 64 < M
      {{2, 128, 180, 16, 256, 16.0, 150.2, false}, 0.0},  // window 192: over the whole block
      {{1, 200, 300, 32, 512, 32.0, 400.0, false}, 0.0},  // M not a multiple of 64
      {{2, 40, 90, 8, 128, 8.0, 70.0, false}, 0.0},       // M < 64: one short tile
      {{2, 128, 256, 16, 256, 16.0, 230.7, true}, 0.2},   // window S, dropout (drawn after the scores)
  };
  for (const at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (const EarlyCase& e : cases) {
      const Case& c = e.c;
      kernels::SpanAttentionOptions o = options_for(c);
      o.dropout = e.dropout;
      o.training = e.dropout > 0;
      o.kernel = kernels::SpanKernel::aten_tiles;
      const Inputs base = make_inputs(c, dtype, 11);
      const at::Tensor d_out = at::randn({c.batch, c.block, c.dim}, at::TensorOptions().dtype(dtype));
      auto run = [&](int64_t late) {
        Inputs in{base.q.clone().requires_grad_(), base.k.clone().requires_grad_(), base.v.clone().requires_grad_(),
                  base.key_pe.clone().requires_grad_(), base.z.clone().requires_grad_()};
        kernels::SpanAttentionOptions with = o;
        if (late >= 0) {
          EXPECT_TRUE(kernels::takes_early_scores(in.q, in.k, in.v, in.key_pe, with));
          with.early =
              kernels::early_span_scores(in.q, in.k.narrow(1, late, in.k.size(1) - late), in.key_pe, late, with);
        }
        at::manual_seed(5);  // the same dropout draws
        const at::Tensor out = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, with);
        out.backward(d_out);
        return std::vector<at::Tensor>{out.detach(), in.q.grad(),      in.k.grad(),
                                       in.v.grad(),  in.key_pe.grad(), in.z.grad()};
      };
      const std::vector<at::Tensor> whole = run(-1);
      for (const int64_t late : {int64_t{0}, c.cache / 2, c.cache, c.cache + c.block / 2}) {
        const std::vector<at::Tensor> parts = run(late);
        const char* names[] = {"out", "dq", "dk", "dv", "dkey_pe", "dz"};
        for (size_t i = 0; i < whole.size(); ++i) {
          EXPECT_TRUE(at::equal(whole[i], parts[i]))
              << names[i] << " differs with " << late << " late keys, " << ::testing::PrintToString(c) << " "
              << at::toString(dtype) << ": max |diff| " << (whole[i] - parts[i]).abs().max().item<double>();
        }
      }
    }
  }
}

// The call reads the early scores rather than computing them again: a score changed in them (of
// a tile whose keys come late, and of one whose keys were all there) changes its query's output,
// and only that.
TEST(SpanAttention, EarlyScoresAreWhatTheCallUses) {
  const Case c{1, 128, 128, 16, 256, 16.0, 20.6, false};  // window 64: tile 1's band is all present
  const Inputs in = make_inputs(c, at::kDouble, 7);
  kernels::SpanAttentionOptions o = options_for(c);
  o.kernel = kernels::SpanKernel::aten_tiles;
  const at::Tensor whole = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, o);
  // Keys 0..117 late: tile 0's band (keys 64..190) reads some; tile 1's (keys 128..254) none.
  const int64_t late = c.cache - 10;
  kernels::SpanAttentionOptions with = o;
  with.early = kernels::early_span_scores(in.q, in.k.narrow(1, late, in.k.size(1) - late), in.key_pe, late, o);
  const int64_t nearest = o.window - 1;  // window column of x = 0
  with.early.scores.index_put_({0, 3, nearest}, with.early.scores.index({0, 3, nearest}) + 50.0);
  with.early.scores.index_put_({0, 70, nearest}, with.early.scores.index({0, 70, nearest}) + 50.0);
  const at::Tensor out = kernels::span_attention(in.q, in.k, in.v, in.key_pe, in.z, with);
  const at::Tensor changed = ((out - whole).abs().amax(-1) > 1e-6).squeeze(0);
  EXPECT_TRUE(changed[3].item<bool>());
  EXPECT_TRUE(changed[70].item<bool>());
  EXPECT_EQ(changed.sum().item<int64_t>(), 2);
}

TEST(SpanAttention, EarlyScoresOffTheTilesPathOrOfAnotherShapeAreRefused) {
  const Case c{2, 128, 64, 16, 256, 16.0, 20.6, false};
  const Inputs in = make_inputs(c, at::kFloat, 3);
  kernels::SpanAttentionOptions o = options_for(c);
  o.early = kernels::early_span_scores(in.q, in.k, in.key_pe, 0, o);
  kernels::SpanAttentionOptions entmax = o;
  entmax.normalizer = kernels::Normalizer::entmax15;
  EXPECT_FALSE(kernels::takes_early_scores(in.q, in.k, in.v, in.key_pe, entmax));
  EXPECT_NE(span_attention_error(in.q, in.k, in.key_pe, in.z, entmax).find("early scores are for the aten tiles"),
            std::string::npos);
  kernels::SpanAttentionOptions other = o;
  other.early.scores = other.early.scores.narrow(2, 0, 32);
  EXPECT_NE(span_attention_error(in.q, in.k, in.key_pe, in.z, other).find("early scores [2, 128, 32]"),
            std::string::npos);
  EXPECT_THROW(kernels::early_span_scores(in.q, in.k.narrow(1, 0, 100), in.key_pe, 10, o), std::invalid_argument);
  // Scores for 160 keys given to a call with 192.
  kernels::SpanAttentionOptions fewer = o;
  fewer.early = kernels::early_span_scores(in.q, in.k.narrow(1, 0, 150), in.key_pe, 10, o);
  EXPECT_NE(span_attention_error(in.q, in.k, in.key_pe, in.z, fewer).find("for 160 keys"), std::string::npos);
}

}  // namespace
}  // namespace adaspan
