// --cache kv vs --cache hidden, as documented in model/model_config.h: with the same weights the
// two compute the same function; kv reuses keys/values projected one step earlier (so after an
// update they are stale) and sends no gradient into W_k / W_v through cached positions.
#include "model/adaptive_span_lm.h"
#include "tests/finite_difference.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace adaspan {
namespace {

model::ModelConfig small_config(model::CacheMode mode) {
  model::ModelConfig c;
  c.layers = 2;
  c.d_model = 16;
  c.heads = 2;
  c.ff_size = 32;
  c.attn_span = 96;
  c.span_ramp = 8;
  c.cache = mode;
  return c;
}

// Two models, one per cache mode, with identical parameters and spans of 10 and 70 bytes.
struct Pair {
  model::AdaptiveSpanLM kv{small_config(model::CacheMode::kv)};
  model::AdaptiveSpanLM hidden{small_config(model::CacheMode::hidden)};
  Pair() {
    at::NoGradGuard no_grad;
    kv.to(at::kDouble);
    hidden.to(at::kDouble);
    auto a = kv.named_parameters(), b = hidden.named_parameters();
    for (auto& p : a) {
      if (p.key().find("current_val") != std::string::npos) p.value().copy_(at::tensor({10.0 / 96, 70.0 / 96}));
      b[p.key()].copy_(p.value());
    }
  }
};

TEST(CacheModes, SameWeightsSameOutputsAcrossBlocks) {
  at::manual_seed(3);
  Pair m;
  model::ModelCache kv_cache, hidden_cache;
  for (int b = 0; b < 4; ++b) {
    const at::Tensor x = at::randint(0, 256, {2, 40});
    auto a = m.kv.forward(x, kv_cache);
    auto h = m.hidden.forward(x, hidden_cache);
    EXPECT_LT((a.log_probs - h.log_probs).abs().max().item<double>(), 1e-10) << "block " << b;
    kv_cache = std::move(a.next_cache);
    hidden_cache = std::move(h.next_cache);
  }
}

TEST(CacheModes, KvCacheFollowsEachHeadsSpan) {
  at::manual_seed(4);
  Pair m;
  model::ModelCache cache;
  for (int b = 0; b < 4; ++b) cache = m.kv.forward(at::randint(0, 256, {2, 40}), cache).next_cache;
  // Head windows: span 10 + ramp 8 -> 64 keys; span 70 + 8 -> 96 (= S). Kept: window + 64, at most S.
  EXPECT_EQ(cache[0].keys[0].size(1), std::min<int64_t>(96, 64 + 64));
  EXPECT_EQ(cache[0].keys[1].size(1), 96);
  EXPECT_EQ(cache[0].values[0].sizes(), cache[0].keys[0].sizes());
}

TEST(CacheModes, KvCacheIsOneStepStaleAfterAnUpdate) {
  at::manual_seed(5);
  Pair m;
  const at::Tensor x1 = at::randint(0, 256, {2, 40}), x2 = at::randint(0, 256, {2, 40});
  auto kv_cache = m.kv.forward(x1, {}).next_cache;
  auto hidden_cache = m.hidden.forward(x1, {}).next_cache;
  {  // the same "optimizer step" on both
    at::NoGradGuard no_grad;
    auto b = m.hidden.named_parameters();
    for (auto& p : m.kv.named_parameters()) {
      if (p.key().find("proj_key") != std::string::npos) {
        p.value().mul_(1.5);
        b[p.key()].mul_(1.5);
      }
    }
  }
  const auto a = m.kv.forward(x2, kv_cache), h = m.hidden.forward(x2, hidden_cache);
  EXPECT_GT((a.log_probs - h.log_probs).abs().max().item<double>(), 1e-6);
}

TEST(CacheModes, OnlyKeyAndValueProjectionGradientsDiffer) {
  at::manual_seed(6);
  Pair m;
  const at::Tensor x1 = at::randint(0, 256, {2, 40}), x2 = at::randint(0, 256, {2, 40});
  const at::Tensor y = at::randint(0, 256, {2 * 40});
  auto kv_cache = m.kv.forward(x1, {}).next_cache;
  auto hidden_cache = m.hidden.forward(x1, {}).next_cache;
  for (auto* lm : {&m.kv, &m.hidden}) {
    for (auto& p : lm->parameters()) p.mutable_grad() = at::Tensor();
  }
  at::nll_loss(m.kv.forward(x2, kv_cache).log_probs.reshape({-1, 256}), y).backward();
  at::nll_loss(m.hidden.forward(x2, hidden_cache).log_probs.reshape({-1, 256}), y).backward();
  auto hidden_params = m.hidden.named_parameters();
  for (const auto& p : m.kv.named_parameters()) {
    const at::Tensor& g_kv = p.value().grad();
    const at::Tensor& g_hidden = hidden_params[p.key()].grad();
    const double err = testing::relative_error(g_kv, g_hidden);
    const bool cached_projection =
        p.key().find("proj_key") != std::string::npos || p.key().find("proj_val") != std::string::npos;
    if (cached_projection) {
      EXPECT_GT(err, 1e-6) << p.key() << ": hidden mode should add gradient through cached positions";
    } else {
      EXPECT_LT(err, 1e-10) << p.key();
    }
  }
}

}  // namespace
}  // namespace adaspan
