// --grad-accum K: K micro-batches per step compute the update of the whole batch; the data-parallel
// reduction runs once per step, during the last micro-batch's backward.
#include "tests/command_runner.h"
#include "tests/small_configs.h"
#include "trainer/gradient_reducer.h"
#include "trainer/optimizer.h"
#include "trainer/train_step.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

trainer::TrainConfig run_config(const std::string& name, int64_t accum) {
  const fs::path dir = fs::temp_directory_path() / ("adaspan_accum_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  trainer::TrainConfig c = testing::small_train_config(dir, 12);
  c.data.batch_size = 8;
  c.optim.grad_accum = accum;
  c.run.log_every = 4;
  return c;
}

std::map<int64_t, double> bpc_of(const std::string& dir) {
  std::map<int64_t, double> out;
  std::ifstream in(fs::path(dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto r = nlohmann::json::parse(line);
    if (r.contains("bpc") && !r.contains("split")) out[r["step"].get<int64_t>()] = r["bpc"].get<double>();
  }
  return out;
}

void expect_close(const std::map<int64_t, double>& a, const std::map<int64_t, double>& b, double tolerance,
                  const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [step, x] : a) EXPECT_NEAR(b.at(step), x, tolerance * x) << what << ", step " << step;
}

TEST(GradAccum, MicroBatchesGiveTheWholeBatchUpdate) {
  for (const char* cache : {"kv", "hidden"}) {
    std::map<int64_t, std::map<int64_t, double>> curves;
    std::map<int64_t, double> norms;
    for (int64_t k : {1, 2, 4}) {
      trainer::TrainConfig c = run_config(std::string(cache) + std::to_string(k), k);
      c.model.cache = model::parse_cache_mode(cache);
      norms[k] = trainer::train(c, true).param_norm;
      curves[k] = bpc_of(c.run.run_dir);
      fs::remove_all(c.run.run_dir);
    }
    for (int64_t k : {2, 4}) {
      // float32: gradients are summed in another order, and Adagrad's first updates (g / |g| per
      // entry) turn rounding into visible differences; UpdatesEqualTheWholeBatchInDouble shows the
      // math is the same to 1e-10.
      expect_close(curves[1], curves[k], 1e-4, std::string(cache) + " K=" + std::to_string(k));
      EXPECT_NEAR(norms[k], norms[1], 1e-5 * norms[1]) << cache << " K=" << k;
    }
  }
}

TEST(GradAccum, ResumesWithAnotherNumberOfMicroBatches) {
  trainer::TrainConfig straight = run_config("straight", 1);
  const double reference = trainer::train(straight, true).param_norm;
  trainer::TrainConfig c = run_config("switch", 2);
  c.run.steps = 8;
  c.run.checkpoint_every = 8;
  trainer::train(c, true);
  c.optim.grad_accum = 4;
  c.run.steps = 12;
  c.run.resume = "auto";
  EXPECT_NEAR(trainer::train(c, true).param_norm, reference, 1e-5 * reference);
  expect_close(bpc_of(straight.run.run_dir), bpc_of(c.run.run_dir), 1e-4, "K=2 then 4 vs K=1");
  fs::remove_all(straight.run.run_dir);
  fs::remove_all(c.run.run_dir);
}

// Records when collectives are issued: the reduction must start during the last micro-batch.
class RecordingGroup final : public model::ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::unique_ptr<model::CollectiveWork> all_reduce_async(at::Tensor&, model::ReduceOp) override {
    ++launched;
    struct Done final : model::CollectiveWork {
      void wait() override {}
    };
    return std::make_unique<Done>();
  }
  std::unique_ptr<model::CollectiveWork> reduce_scatter_async(const at::Tensor& in, at::Tensor& out) override {
    out.copy_(in);
    return all_reduce_async(out, model::ReduceOp::sum);
  }
  void all_gather(const at::Tensor& in, at::Tensor& out) override { out.copy_(in); }
  void broadcast(at::Tensor&, int) override {}
  void barrier() override {}
  int launched = 0;
};

TEST(GradAccum, ReductionRunsOnceDuringTheLastMicroBatch) {
  const model::ModelConfig mc = testing::small_model_config();
  at::manual_seed(4);
  model::AdaptiveSpanLM lm(mc);
  const at::Tensor x = at::randint(0, 256, {4, 16}, at::kLong);
  const auto backward = [&](const at::Tensor& rows) {
    model::LMOutput out = lm.forward(rows, {});
    (at::nll_loss(out.log_probs.reshape({-1, 256}), rows.reshape({-1})) + out.span_loss).backward();
  };
  // Reference: plain accumulation of the two micro-batches' gradients.
  backward(x.narrow(0, 0, 2));
  backward(x.narrow(0, 2, 2));
  std::vector<at::Tensor> expected;
  for (auto& p : lm.parameters()) {
    expected.push_back(p.grad().clone());
    p.mutable_grad() = at::Tensor();
  }

  RecordingGroup group;
  trainer::GradientReducer reducer(lm.parameters(), group, 16 << 10, true);  // small buckets: several
  reducer.prepare(2);
  backward(x.narrow(0, 0, 2));
  EXPECT_EQ(group.launched, 0);  // nothing complete after the first micro-batch
  backward(x.narrow(0, 2, 2));
  const int during = group.launched;
  reducer.finish();
  EXPECT_GT(during, 1);  // buckets went out during the last backward
  EXPECT_EQ(group.launched, during) << "finish() launched buckets the backward should have";
  const auto params = lm.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(at::allclose(expected[i], params[i].grad(), 1e-6, 1e-7)) << i;  // size-1 group: the sum
  }
}

// In double precision the K micro-batch update is the whole-batch update to rounding.
TEST(GradAccum, UpdatesEqualTheWholeBatchInDouble) {
  model::ModelConfig mc = testing::small_model_config();
  mc.span_init = 0.3;
  std::map<int64_t, std::vector<at::Tensor>> final_params;
  for (int64_t k : {1, 2, 4}) {
    at::manual_seed(11);
    model::AdaptiveSpanLM lm(mc);
    lm.to(at::kDouble);
    auto optimizer = trainer::make_adagrad(lm.parameters(), 0.03);
    std::vector<model::ModelCache> caches(static_cast<size_t>(k));
    at::manual_seed(12);
    for (int step = 0; step < 3; ++step) {
      const at::Tensor bytes = at::randint(0, 256, {8, 17}, at::kLong);
      const auto xs = bytes.narrow(1, 0, 16).chunk(k, 0), ys = bytes.narrow(1, 1, 16).chunk(k, 0);
      std::vector<trainer::MicroBatch> micro;
      for (int64_t i = 0; i < k; ++i) micro.push_back({xs[static_cast<size_t>(i)], ys[static_cast<size_t>(i)]});
      trainer::train_step(lm, *optimizer, micro, caches, 0.05);
    }
    for (const auto& p : lm.parameters()) final_params[k].push_back(p.detach().clone());
  }
  for (int64_t k : {2, 4}) {
    for (size_t i = 0; i < final_params[1].size(); ++i) {
      EXPECT_TRUE(at::allclose(final_params[k][i], final_params[1][i], 1e-10, 1e-12))
          << "K=" << k << " parameter " << i;
    }
  }
}

TEST(GradAccum, TwoRanksWithMicroBatchesMatchOneRank) {
  const std::string run =
      " train --steps 8 --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32"
      " --batch-size 8 --log-every 4 --eval-every 0 --threads 1 --warmup-steps 4 --run-dir ";
  const fs::path one = fs::temp_directory_path() / ("adaspan_accum_np1_" + std::to_string(::getpid()));
  const fs::path two = fs::temp_directory_path() / ("adaspan_accum_np2_" + std::to_string(::getpid()));
  ASSERT_EQ(testing::run_adaspan(run + one.string(), 1).exit_code, 0);
  const auto r = testing::run_adaspan(run + two.string() + " --grad-accum 2", 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_close(bpc_of(one.string()), bpc_of(two.string()), 1e-5, "np2 K=2 vs np1");
  const auto bad = testing::run_adaspan(run + two.string() + " --grad-accum 3", 2);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--grad-accum 3 does not divide"), std::string::npos) << bad.err;
  fs::remove_all(one);
  fs::remove_all(two);
}

}  // namespace
}  // namespace adaspan
