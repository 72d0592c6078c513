// --zero 1 (optimizer state sharded over data parallelism) with real mpirun runs: the same training
// as replicated state, 1/N of its memory, and checkpoints that move freely between the two.
#include "checkpointing/checkpoint_file.h"
#include "tests/command_runner.h"
#include "tests/scratch_dir.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using testing::run_adaspan;

// --bucket-mb 1 with this model: several buckets, none a multiple of the rank count (padding).
const std::string kTrain =
    "train --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --log-every 5"
    " --eval-every 0 --threads 1 --warmup-steps 4 --bucket-mb 1";

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("zero", name, false); }

struct RunFigures {
  std::map<int64_t, double> bpc;
  double param_norm = 0;
  std::vector<double> state_mb;
};
RunFigures read_run(const fs::path& dir) {
  RunFigures r;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("bpc") && !j.contains("split")) {
      r.bpc[j["step"].get<int64_t>()] = j["bpc"].get<double>();
      r.state_mb = j["optimizer_state_mb"].get<std::vector<double>>();
    }
    if (j.value("event", "") == "done") r.param_norm = j["param_norm"].get<double>();
  }
  return r;
}

void expect_same_training(const RunFigures& a, const RunFigures& b, const std::string& what) {
  ASSERT_EQ(a.bpc.size(), b.bpc.size()) << what;
  for (const auto& [step, x] : a.bpc) EXPECT_NEAR(b.bpc.at(step), x, 1e-6 * x) << what << " step " << step;
  EXPECT_NEAR(b.param_norm, a.param_norm, 1e-6 * a.param_norm) << what;
}

TEST(Zero, ShardedStateTrainsLikeReplicatedWithAFractionOfTheMemory) {
  for (const auto& [ranks, optimizer] :
       std::vector<std::pair<int, std::string>>{{2, "adagrad"}, {3, "adam --lr 0.003"}}) {
    const std::string args =
        kTrain + " --steps 15 --batch-size " + std::to_string(2 * ranks) + " --optimizer " + optimizer;
    const fs::path replicated = fresh_dir("rep" + std::to_string(ranks)),
                   sharded = fresh_dir("zero" + std::to_string(ranks));
    ASSERT_EQ(run_adaspan(args + " --run-dir " + replicated.string(), ranks).exit_code, 0);
    const auto r = run_adaspan(args + " --zero 1 --run-dir " + sharded.string(), ranks);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const RunFigures a = read_run(replicated), b = read_run(sharded);
    const std::string what = std::to_string(ranks) + " ranks, " + optimizer;
    expect_same_training(a, b, what);
    ASSERT_EQ(b.state_mb.size(), static_cast<size_t>(ranks));
    for (double mb : b.state_mb) {
      EXPECT_LE(mb, a.state_mb[0] / ranks * 1.05) << what;  // 1/N, plus padding
      EXPECT_GE(mb, a.state_mb[0] / ranks * 0.95) << what;
    }
    fs::remove_all(replicated);
    fs::remove_all(sharded);
  }
}

TEST(Zero, CheckpointsMoveBetweenShardedAndReplicated) {
  const std::string args = kTrain + " --batch-size 4";
  const fs::path straight = fresh_dir("straight");
  ASSERT_EQ(run_adaspan(args + " --steps 20 --run-dir " + straight.string(), 2).exit_code, 0);
  const RunFigures reference = read_run(straight);
  for (const auto& [first, second] : std::vector<std::pair<int, int>>{{1, 0}, {0, 1}}) {
    const fs::path dir = fresh_dir("switch" + std::to_string(first));
    ASSERT_EQ(run_adaspan(args + " --steps 10 --checkpoint-every 10 --zero " + std::to_string(first) + " --run-dir " +
                              dir.string(),
                          2)
                  .exit_code,
              0);
    // Sharded or not, the run wrote whole optimizer tensors, shaped as the parameters. The tensor
    // must be there: a missing or renamed entry fails here instead of skipping the checks.
    const auto state = checkpointing::read_checkpoint((dir / "ckpt-10.h5").string(), {0, 1, 0, 4});
    const auto sum = std::find_if(state.optimizer_state.begin(), state.optimizer_state.end(),
                                  [](const auto& t) { return t.name == "sum/in_emb.weight"; });
    ASSERT_TRUE(sum != state.optimizer_state.end())
        << "no optimizer/sum/in_emb.weight in ckpt-10 (zero " << first << ")";
    EXPECT_EQ(sum->tensor.sizes(), (std::vector<int64_t>{256, 32}));
    EXPECT_GT(sum->tensor.sum().item<double>(), 0);  // filled from every shard, not zeros
    const auto r = run_adaspan(
        args + " --steps 20 --resume auto --zero " + std::to_string(second) + " --run-dir " + dir.string(), 2);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    expect_same_training(reference, read_run(dir), "zero " + std::to_string(first) + " -> " + std::to_string(second));
    fs::remove_all(dir);
  }
  fs::remove_all(straight);
}

}  // namespace
}  // namespace adaspan
