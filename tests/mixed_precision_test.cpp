// bf16 autocast (model/mixed_precision.h): the forward pass really runs its matrix products in
// bf16, the parameters and optimizer state stay fp32, and training follows the fp32 curve.
#include "model/mixed_precision.h"
#include "model/adaptive_span_lm.h"
#include "tests/small_configs.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace adaspan {
namespace {

model::ModelConfig small_model(model::SpanMode span_mode) {
  model::ModelConfig c = testing::small_model_config();
  c.span_mode = span_mode;
  return c;
}

// Bytes of a text with structure to learn (a repeated 23-byte phrase), [rows, M + 1].
at::Tensor phrase_batch(int64_t rows, int64_t block, int64_t offset) {
  const std::string phrase = "the span learns to see ";
  at::Tensor out = at::empty({rows, block + 1}, at::kLong);
  auto a = out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t <= block; ++t) a[r][t] = phrase[(offset + r * 7 + t) % phrase.size()];
  }
  return out;
}

TEST(MixedPrecision, ParsesAndRefuses) {
  EXPECT_EQ(model::parse_precision("bf16"), model::Precision::bf16);
  EXPECT_EQ(model::to_string(model::parse_precision("fp32")), "fp32");
  EXPECT_THROW(model::parse_precision("fp16"), std::invalid_argument);
}

TEST(MixedPrecision, Bf16ForwardIsCloseToFp32ButNotEqual) {
  at::manual_seed(1);
  model::AdaptiveSpanLM lm(small_model(model::SpanMode::static_span));
  lm.eval();
  const at::Tensor x = phrase_batch(2, 32, 0).narrow(1, 0, 32);
  at::NoGradGuard no_grad;
  const at::Tensor fp32 = lm.forward(x, {}).log_probs;
  lm.set_precision(model::Precision::bf16);
  const at::Tensor bf16 = lm.forward(x, {}).log_probs;
  EXPECT_EQ(bf16.scalar_type(), at::kFloat);  // the distribution comes back in the parameters' dtype
  const double diff = (bf16 - fp32).abs().max().item<double>();
  EXPECT_GT(diff, 1e-4) << "autocast did not engage";
  EXPECT_LT(diff, 0.1);
  for (const at::Tensor& p : lm.parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
  // The scope restores autocast: a plain forward afterwards is fp32 again.
  lm.set_precision(model::Precision::fp32);
  EXPECT_TRUE(at::equal(lm.forward(x, {}).log_probs, fp32));
}

void expect_bf16_training_tracks_fp32(model::SpanMode span_mode) {
  constexpr int kSteps = 40;
  std::vector<double> losses[2];
  for (int run = 0; run < 2; ++run) {
    at::manual_seed(2);
    model::AdaptiveSpanLM lm(small_model(span_mode));
    lm.set_precision(run == 0 ? model::Precision::fp32 : model::Precision::bf16);
    lm.train();
    auto optimizer = trainer::make_adagrad(lm.parameters(), 0.03);
    model::ModelCache cache;
    for (int step = 0; step < kSteps; ++step) {
      const at::Tensor bytes = phrase_batch(4, 32, step * 32);
      losses[run].push_back(
          trainer::train_step(lm, *optimizer, bytes.narrow(1, 0, 32), bytes.narrow(1, 1, 32), cache, 0.07).nll);
    }
    for (const at::Tensor& p : lm.parameters()) {
      EXPECT_EQ(p.scalar_type(), at::kFloat);
      if (p.grad().defined()) EXPECT_EQ(p.grad().scalar_type(), at::kFloat);
    }
  }
  EXPECT_LT(losses[1].back(), 0.5 * losses[1].front()) << "bf16 did not learn";
  double worst = 0;
  for (int step = 0; step < kSteps; ++step) {
    worst = std::max(worst, std::abs(losses[1][step] - losses[0][step]) / losses[0][step]);
  }
  EXPECT_LT(worst, 0.05) << "bf16 left the fp32 curve";
  EXPECT_NE(losses[1].back(), losses[0].back());
}

TEST(MixedPrecision, Bf16TrainingTracksFp32) { expect_bf16_training_tracks_fp32(model::SpanMode::static_span); }

TEST(MixedPrecision, Bf16DynamicSpanTrainingTracksFp32) { expect_bf16_training_tracks_fp32(model::SpanMode::dynamic); }

}  // namespace
}  // namespace adaspan
