// The general attention path (banded_attention) and the windows of the attention variants: the fast
// path against the loop reference for every mask kind, normalizer and scale; against the fused span
// kernel where both apply; gradients against finite differences in double.
#include "kernels/banded_attention.h"
#include "kernels/attention_masks.h"
#include "kernels/span_attention.h"
#include "tests/finite_difference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>

namespace adaspan {
namespace {

using kernels::Normalizer;
using testing::numerical_gradient;
using testing::relative_error;

constexpr int64_t kBatch = 2, kBlock = 8, kDim = 4, kSpan = 16;
constexpr double kRamp = 4;

struct Inputs {
  at::Tensor q, k, v, key_pe;
};

Inputs make_inputs(int64_t cache, uint64_t seed) {
  at::manual_seed(seed);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  return {at::randn({kBatch, kBlock, kDim}, opt), at::randn({kBatch, cache + kBlock, kDim}, opt),
          at::randn({kBatch, cache + kBlock, kDim}, opt), at::randn({kDim, kSpan}, opt)};
}

kernels::BandedAttentionOptions options(int64_t window, Normalizer normalizer) {
  kernels::BandedAttentionOptions o;
  o.max_span = kSpan;
  o.window = window;
  o.normalizer = normalizer;
  return o;
}

enum class MaskKind { static_span, dynamic_span, full, sparse_fixed };

at::Tensor make_mask(MaskKind kind, int64_t window) {
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  switch (kind) {
    case MaskKind::static_span:
      return kernels::static_span_window(at::full({}, 6.5, opt), kRamp, window);
    case MaskKind::dynamic_span:
      return kernels::dynamic_span_window(at::rand({kBatch, kBlock}, opt) * (window - kRamp), kRamp, window);
    case MaskKind::full:
      return kernels::full_window(window, opt);
    case MaskKind::sparse_fixed:
      return kernels::sparse_fixed_window(kBlock, window, 4, 0, opt);
  }
  return {};
}

TEST(BandedAttention, EqualsTheLoopReferenceForEveryMaskNormalizerAndScale) {
  for (MaskKind kind : {MaskKind::static_span, MaskKind::dynamic_span, MaskKind::full, MaskKind::sparse_fixed}) {
    for (Normalizer normalizer : {Normalizer::softmax, Normalizer::entmax15}) {
      for (bool scaled : {false, true}) {
        for (int64_t cache : {0, 5, 16}) {  // none, shorter than the window (zero keys), longer
          const Inputs in = make_inputs(cache, 11);
          const int64_t window = kind == MaskKind::full || kind == MaskKind::sparse_fixed ? kSpan : 12;
          const at::Tensor mask = make_mask(kind, window);
          const at::Tensor scale = scaled ? 0.5 + 2 * at::rand({kBatch, kBlock}, at::kDouble) : at::Tensor();
          const auto o = options(window, normalizer);
          const at::Tensor fast = kernels::banded_attention(in.q, in.k, in.v, in.key_pe, mask, scale, o);
          const at::Tensor slow = kernels::banded_attention_reference(in.q, in.k, in.v, in.key_pe, mask, scale, o);
          EXPECT_LT(relative_error(fast, slow), 1e-9)
              << "mask " << static_cast<int>(kind) << " normalizer " << static_cast<int>(normalizer) << " scaled "
              << scaled << " cache " << cache;
        }
      }
    }
  }
}

TEST(BandedAttention, SoftmaxWithTheSpanMaskIsTheFusedSpanKernel) {
  const Inputs in = make_inputs(10, 3);
  std::vector<at::Tensor> leaves = {in.q, in.k, in.v, in.key_pe, at::full({}, 7.25, at::kDouble)};
  for (auto& t : leaves) t.requires_grad_(true);
  const int64_t window = kernels::effective_window(7.25, kRamp, kSpan, 4);
  kernels::SpanAttentionOptions fused;
  fused.max_span = kSpan;
  fused.ramp = kRamp;
  fused.window = window;
  const at::Tensor target = at::randn({kBatch, kBlock, kDim}, at::kDouble);
  const at::Tensor a = kernels::span_attention(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], fused);
  const auto grads_a = torch::autograd::grad({(a * target).sum()}, leaves);
  const at::Tensor b = kernels::banded_attention(leaves[0], leaves[1], leaves[2], leaves[3],
                                                 kernels::static_span_window(leaves[4], kRamp, window), {},
                                                 options(window, Normalizer::softmax));
  const auto grads_b = torch::autograd::grad({(b * target).sum()}, leaves);
  EXPECT_LT(relative_error(b, a), 1e-12);
  for (size_t i = 0; i < leaves.size(); ++i) EXPECT_LT(relative_error(grads_b[i], grads_a[i]), 1e-10) << i;
}

// d loss / d (q, k, v, key_pe, per-token spans, scale) against central differences, for each normalizer.
TEST(BandedAttention, GradientsMatchFiniteDifferences) {
  for (Normalizer normalizer : {Normalizer::softmax, Normalizer::entmax15}) {
    const Inputs in = make_inputs(6, 5);
    const int64_t window = 12;
    // Spans away from the integers so that no key sits on a ramp end (where m is not differentiable).
    at::Tensor z = (at::randint(1, 7, {kBatch, kBlock}, at::kDouble) + 0.37);
    at::Tensor scale = 0.5 + at::rand({kBatch, kBlock}, at::kDouble);
    std::vector<at::Tensor> leaves = {in.q, in.k, in.v, in.key_pe, z, scale};
    const at::Tensor target = at::randn({kBatch, kBlock, kDim}, at::kDouble);
    const auto o = options(window, normalizer);
    const auto loss = [&] {
      return (kernels::banded_attention(leaves[0], leaves[1], leaves[2], leaves[3],
                                        kernels::dynamic_span_window(leaves[4], kRamp, window), leaves[5], o) *
              target)
          .sum();
    };
    for (auto& t : leaves) t.requires_grad_(true);
    const auto analytic = torch::autograd::grad({loss()}, leaves);
    for (auto& t : leaves) t.requires_grad_(false);
    for (size_t i = 0; i < leaves.size(); ++i) {
      const at::Tensor numeric = numerical_gradient([&] { return loss().item<double>(); }, leaves[i]);
      EXPECT_LT(relative_error(analytic[i], numeric), 1e-6)
          << "input " << i << " normalizer " << static_cast<int>(normalizer);
    }
  }
}

// banded_attention's weights p[b][i][j] over all Lc + M keys, read exactly from its own output: the
// values one-hot (key first + c has value e_c) for a group of kDim keys at a time and zero elsewhere,
// so out[b][i][c] = p_{i, first + c}·1 plus exact zeros.
at::Tensor attention_weights(const Inputs& in, const at::Tensor& mask, const kernels::BandedAttentionOptions& o) {
  const int64_t keys = in.k.size(1);
  at::Tensor p = at::empty({kBatch, kBlock, keys}, at::kDouble);
  for (int64_t first = 0; first < keys; first += kDim) {
    const int64_t n = std::min(kDim, keys - first);
    at::Tensor v = at::zeros_like(in.v);
    v.narrow(1, first, n).copy_(at::eye(kDim, at::kDouble).narrow(0, 0, n).expand({kBatch, n, kDim}));
    const at::Tensor out = kernels::banded_attention(in.q, in.k, v, in.key_pe, mask, {}, o);
    p.narrow(2, first, n).copy_(out.narrow(2, 0, n));
  }
  return p;
}

TEST(AttentionMasks, SparseFixedSeesTheLocalKeysAndEveryStrideTh) {
  const at::Tensor m = kernels::sparse_fixed_window(8, 16, 4, 0, at::kDouble).squeeze(0);  // [M, W]
  for (int64_t i = 0; i < 8; ++i) {
    for (int64_t c = 0; c < 16; ++c) {
      const int64_t x = 15 - c, position = i - 1 - x;
      const bool seen = x < 4 || ((position % 4) + 4) % 4 == 3;
      EXPECT_EQ(m[i][c].item<double>(), seen ? 1.0 : 0.0) << "query " << i << " x " << x;
    }
  }
  // Entmax gives keys outside the pattern exactly zero weight, like softmax: the weights read from
  // banded_attention's own output are 0.0 (not merely small) for every key a query does not see (out
  // of the pattern, beyond the window, or not yet written), and each query's weights sum to 1.
  constexpr int64_t cache = 16;
  const Inputs in = make_inputs(cache, 9);
  const at::Tensor mask = kernels::sparse_fixed_window(kBlock, kSpan, 4, 0, at::kDouble);  // [1, M, W]
  const auto seen = mask.accessor<double, 3>();
  for (Normalizer normalizer : {Normalizer::softmax, Normalizer::entmax15}) {
    const auto o = options(kSpan, normalizer);
    const at::Tensor p = attention_weights(in, mask, o);
    const at::Tensor unmasked = attention_weights(in, kernels::full_window(kSpan, at::kDouble), o);
    const auto pa = p.accessor<double, 3>(), ua = unmasked.accessor<double, 3>();
    int64_t hidden_by_the_mask = 0;  // keys of the window out of the pattern that get weight without it
    for (int64_t b = 0; b < kBatch; ++b) {
      for (int64_t i = 0; i < kBlock; ++i) {
        for (int64_t j = 0; j < cache + kBlock; ++j) {
          const int64_t x = i + cache - 1 - j;
          const bool in_window = x >= 0 && x < kSpan;
          if (in_window && seen[0][i][kSpan - 1 - x] > 0) continue;
          EXPECT_EQ(pa[b][i][j], 0.0) << "normalizer " << static_cast<int>(normalizer) << " batch " << b << " query "
                                      << i << " key " << j << " (x " << x << ")";
          if (in_window && ua[b][i][j] > 0) ++hidden_by_the_mask;
        }
      }
    }
    EXPECT_LT((p.sum(-1) - 1).abs().max().item<double>(), 1e-12) << static_cast<int>(normalizer);
    // These inputs make the mask matter: without it, the normalizer itself would weight such keys.
    EXPECT_GT(hidden_by_the_mask, 0) << static_cast<int>(normalizer);
  }
}

TEST(AttentionMasks, DynamicSpanWindowIsTheSpanMaskPerQuery) {
  const at::Tensor z = at::tensor({0.0, 3.5, 9.0, 20.0}, at::kDouble).view({1, 4});
  const at::Tensor m = kernels::dynamic_span_window(z, kRamp, 12);  // [1, 4, 12]
  for (int64_t i = 0; i < 4; ++i) {
    for (int64_t c = 0; c < 12; ++c) {
      const double x = 11 - c, zi = z[0][i].item<double>();
      EXPECT_DOUBLE_EQ(m[0][i][c].item<double>(), std::clamp((kRamp + zi - x) / kRamp, 0.0, 1.0));
    }
  }
}

}  // namespace
}  // namespace adaspan
