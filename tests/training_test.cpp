#include "trainer/trainer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

trainer::TrainConfig small_run(const std::string& dir, int64_t steps) {
  trainer::TrainConfig c;
  c.model.layers = 2;
  c.model.d_model = 64;
  c.model.heads = 4;
  c.model.ff_size = 256;
  c.model.attn_span = 256;
  c.data.batch_size = 8;
  c.data.block_size = 64;
  c.optim.warmup_steps = 20;
  c.run.steps = steps;
  c.run.threads = 1;
  c.run.log_every = 25;
  c.run.eval_every = steps;
  c.run.eval_steps = 10;
  c.run.run_dir = (fs::temp_directory_path() / ("adaspan_training_" + dir)).string();
  fs::remove_all(c.run.run_dir);
  return c;
}

std::vector<nlohmann::json> read_metrics(const std::string& run_dir) {
  std::vector<nlohmann::json> records;
  std::ifstream in(fs::path(run_dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

TEST(Training, BuiltinCorpusBpcFallsClearly) {
  const auto config = small_run("learns", 200);
  const trainer::TrainResult result = trainer::train(config, true);
  const auto records = read_metrics(config.run.run_dir);
  ASSERT_GE(records.size(), 3u);
  const double first = records.front()["bpc"].get<double>();
  EXPECT_GT(first, 4.5);                   // the first 25 steps: near-uniform over bytes
  EXPECT_LT(result.final_train_bpc, 3.0);  // the built-in corpus is learnable in 200 steps
  EXPECT_LT(result.final_train_bpc, first - 2.0);
  const nlohmann::json& done = records.back();
  EXPECT_EQ(done["event"], "done");
  EXPECT_DOUBLE_EQ(done["param_norm"].get<double>(), result.param_norm);
  bool saw_valid = false;
  for (const auto& r : records) {
    if (!r.contains("split") || r["split"] != "valid") continue;
    saw_valid = true;
    EXPECT_LT(r["bpc"].get<double>(), 3.5);  // the held-out text (another seed) is learned too
  }
  EXPECT_TRUE(saw_valid);
  ASSERT_TRUE(records.front().contains("spans"));
  EXPECT_EQ(records.front()["spans"].size(), 2u);
  EXPECT_EQ(records.front()["spans"][0].size(), 4u);
  EXPECT_TRUE(records.front().contains("lr") && records.front().contains("tokens_per_s"));
  fs::remove_all(config.run.run_dir);
}

// Timing fields aside, two runs of the same command write the same metrics.
TEST(Training, DeterministicOnCpu) {
  std::vector<std::vector<nlohmann::json>> runs;
  for (const char* name : {"det_a", "det_b"}) {
    auto config = small_run(name, 30);
    config.model.dropout = 0.1;  // the dropout RNG is seeded too
    config.run.log_every = 10;
    trainer::train(config, true);
    runs.push_back(read_metrics(config.run.run_dir));
    fs::remove_all(config.run.run_dir);
  }
  ASSERT_EQ(runs[0].size(), runs[1].size());
  for (size_t i = 0; i < runs[0].size(); ++i) {
    for (auto* r : {&runs[0][i], &runs[1][i]}) {
      for (const char* timing :
           {"tokens_per_s", "elapsed_s", "step_time_max_s", "step_time_min_s", "comm_wait_s", "peak_memory_mb",
            "attention_s_per_step", "seconds", "stall_seconds", "path", "run_id"}) {
        r->erase(timing);
      }
    }
    EXPECT_EQ(runs[0][i], runs[1][i]) << "record " << i;
  }
}

}  // namespace
}  // namespace adaspan
