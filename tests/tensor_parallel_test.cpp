// Tensor parallelism: the shards are slices of the unsharded model, and real `mpirun` runs with
// --tp 2 and 4 (and DP x TP = 2 x 2) train what one rank trains.
#include "model/adaptive_span_lm.h"
#include "tests/command_runner.h"
#include "tests/small_configs.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

namespace adaspan {
namespace {

namespace fs = std::filesystem;

// Rank `rank` of a group of `size` whose collectives are never called here.
class PretendGroup final : public model::ProcessGroup {
 public:
  PretendGroup(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::unique_ptr<model::CollectiveWork> all_reduce_async(at::Tensor&, model::ReduceOp) override {
    throw std::logic_error("unused");
  }
  std::unique_ptr<model::CollectiveWork> reduce_scatter_async(const at::Tensor&, at::Tensor&) override {
    throw std::logic_error("unused");
  }
  void all_gather(const at::Tensor&, at::Tensor&) override { throw std::logic_error("unused"); }
  void broadcast(at::Tensor&, int) override { throw std::logic_error("unused"); }
  void barrier() override {}

 private:
  int rank_, size_;
};

TEST(TensorParallel, ShardsAreSlicesOfTheWholeModel) {
  model::ModelConfig c = testing::small_model_config();
  c.heads = 4;
  c.span_init = 0.25;
  at::manual_seed(3);
  model::AdaptiveSpanLM whole(c);
  at::manual_seed(3);
  model::AdaptiveSpanLM shard(c);
  PretendGroup group(1, 2);
  shard.shard({&group, 1, 2});
  std::map<std::string, at::Tensor> full;
  for (const auto& p : whole.named_parameters()) full[p.key()] = p.value();
  const int64_t dh = c.head_dim();  // rank 1 of 2: heads 2, 3; ff units 32..63
  for (const auto& p : shard.named_parameters()) {
    const std::string& name = p.key();
    const at::Tensor& w = full.at(name);
    at::Tensor expected = w;
    if (name.find("proj_query") != std::string::npos || name.find("proj_key") != std::string::npos ||
        name.find("proj_val") != std::string::npos) {
      expected = w.narrow(0, 2 * dh, 2 * dh);
    } else if (name.find("proj_out") != std::string::npos) {
      expected = w.narrow(1, 2 * dh, 2 * dh);
    } else if (name.find("current_val") != std::string::npos) {
      expected = w.narrow(0, 2, 2);
    } else if (name.find("fc1") != std::string::npos) {
      expected = w.narrow(0, 32, 32);
    } else if (name.find("fc2.weight") != std::string::npos) {
      expected = w.narrow(1, 32, 32);
    }
    EXPECT_EQ(model::AdaptiveSpanLM::is_sharded(name), !expected.is_same(w)) << name;
    EXPECT_TRUE(at::equal(p.value(), expected)) << name;
  }
  EXPECT_EQ(shard.heads()[0], (std::vector<int64_t>{2, 3}));
}

struct Curve {
  std::map<int64_t, double> bpc;
  double param_norm = 0;
  std::vector<std::vector<double>> spans;
};

// `steps` training steps (a multiple of 3) with 3 records and a validation pass at the end.
Curve run(int ranks, const std::string& flags, const std::string& name, int steps = 12) {
  const fs::path dir = fs::temp_directory_path() / ("adaspan_tp_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(dir);
  const std::string args =
      "train --steps " + std::to_string(steps) +
      " --layers 2 --d-model 32 --heads 4 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
      " --span-init 0.3 --log-every " +
      std::to_string(steps / 3) + " --eval-every " + std::to_string(steps) +
      " --eval-steps 2 --threads 1 --warmup-steps 4 --run-dir " + dir.string() + " " + flags;
  const auto r = testing::run_adaspan(args, ranks);
  EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
  Curve c;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("bpc")) c.bpc[j["step"].get<int64_t>() * (j.contains("split") ? -1 : 1)] = j["bpc"].get<double>();
    if (j.value("event", "") == "done") {
      c.param_norm = j["param_norm"].get<double>();
      c.spans = j["spans"].get<std::vector<std::vector<double>>>();
    }
  }
  fs::remove_all(dir);
  return c;
}

void expect_same(const Curve& a, const Curve& b, const std::string& what) {
  ASSERT_EQ(a.bpc.size(), b.bpc.size()) << what;
  for (const auto& [step, x] : a.bpc) EXPECT_NEAR(b.bpc.at(step), x, 1e-5 * x) << what << ", step " << step;
  EXPECT_NEAR(b.param_norm, a.param_norm, 1e-5 * a.param_norm) << what;
  ASSERT_EQ(a.spans.size(), b.spans.size()) << what;
  for (size_t l = 0; l < a.spans.size(); ++l) {
    ASSERT_EQ(a.spans[l].size(), b.spans[l].size()) << what;
    for (size_t h = 0; h < a.spans[l].size(); ++h) EXPECT_NEAR(b.spans[l][h], a.spans[l][h], 1e-4) << what;
  }
}

TEST(TensorParallel, TwoAndFourWayMatchOneRank) {
  for (const char* cache : {"kv", "hidden"}) {
    const std::string flags = std::string("--cache ") + cache;
    const Curve one = run(1, flags, std::string("np1_") + cache);
    ASSERT_EQ(one.bpc.size(), 4u);  // 3 training records and a validation one
    expect_same(one, run(2, flags + " --tp 2", std::string("tp2_") + cache), std::string("TP 2, ") + cache);
    if (std::string(cache) == "kv") {
      expect_same(one, run(4, flags + " --tp 4", "tp4"), "TP 4");
      // DP 2 x TP 2, with the other scale-out options on.
      expect_same(one, run(4, flags + " --tp 2 --zero 1 --grad-accum 2", "dp2tp2"), "DP 2 x TP 2 (+zero, grad-accum)");
    }
  }
}

// The variants' per-head parameters (dynamic span weights, ASEntmax's beta/gamma or their
// projections) are split by head like the spans, and their losses summed over ranks.
TEST(TensorParallel, AttentionVariantsMatchOneRank) {
  // ASEntmax from the hidden state runs 3 steps: from the 4th on (full learning rate) Adagrad turns
  // the ranks' different summation order in near-zero gradients into whole steps (Adagrad divides
  // by their own tiny magnitude); the runs part at 1e-7 there and the gap grows ~3x a step.
  const std::pair<const char*, int> variants[] = {
      {"--span-mode dynamic", 12},
      {"--normalizer asentmax", 12},
      {"--normalizer asentmax --asentmax-scale hidden", 3},
      {"--attention sparse-fixed --sparse-stride 8 --normalizer entmax15", 12}};
  for (const auto& [variant, steps] : variants) {
    const std::string flags = std::string("--cache kv ") + variant;
    const Curve one = run(1, flags, "variant_np1", steps);
    ASSERT_EQ(one.bpc.size(), 4u) << variant;
    expect_same(one, run(2, flags + " --tp 2", "variant_tp2", steps), variant);
  }
}

// bf16 autocast with tensor parallelism: the row-parallel partial sums are reduced in fp32, so the
// run works (MPI has no bf16) and stays within bf16 rounding of one rank's.
TEST(TensorParallel, Bf16MatchesOneRankWithinRounding) {
  const std::string flags = "--cache kv --precision bf16";
  const Curve one = run(1, flags, "bf16_np1");
  const Curve two = run(2, flags + " --tp 2", "bf16_tp2");
  ASSERT_EQ(one.bpc.size(), 4u);
  ASSERT_EQ(two.bpc.size(), 4u);
  for (const auto& [step, x] : one.bpc) EXPECT_NEAR(two.bpc.at(step), x, 0.01 * x) << "step " << step;
  const Curve fp32 = run(1, "--cache kv", "fp32_np1");
  EXPECT_NE(fp32.bpc.begin()->second, one.bpc.begin()->second) << "bf16 changed nothing";
}

TEST(TensorParallel, LayoutsThatCannotBeSplitAreRefused) {
  const std::string base =
      "train --steps 2 --layers 1 --d-model 32 --ff-size 64 --batch-size 4 --run-dir /tmp/adaspan_tp_refused";
  auto r = testing::run_adaspan(base + " --heads 2 --tp 4", 4);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--heads 2 is not divisible by --tp 4"), std::string::npos) << r.err;
  r = testing::run_adaspan(base + " --heads 4 --tp 2", 3);
  EXPECT_NE(r.exit_code, 0);
  // 4 heads split over --tp 2 is fine; 3 ranks are not a whole number of TP groups (cluster::check_grid).
  EXPECT_NE(r.err.find("world size 3 is not divisible by --tp 2"), std::string::npos) << r.err;
  r = testing::run_adaspan(base + " --heads 4 --tp 2 --checkpoint-every 1 --cache hidden", 2);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("need --cache kv"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace adaspan

namespace adaspan {
namespace {

// Two long heads and two short ones per layer: the contiguous split puts both long heads on
// rank 0; rebalancing at step 5 (the caches are full by then) gives each rank one of each, and the
// training goes on unchanged.
TEST(TensorParallel, RebalancingHeadsChangesWhereNotWhat) {
  const std::string planted =
      " --attn-span 256 --span-init-heads 200,200,8,8 --span-loss-coeff 0 --log-every 1 --eval-every 0";
  const auto run_with = [&](int ranks, const std::string& flags, const std::string& name) {
    const fs::path dir = fs::temp_directory_path() / ("adaspan_rebal_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir);
    const std::string args =
        "train --steps 8 --layers 2 --d-model 32 --heads 4 --ff-size 64 --block-size 64"
        " --batch-size 4 --threads 1 --warmup-steps 4 --run-dir " +
        dir.string() + planted + " " + flags;
    const auto r = testing::run_adaspan(args, ranks);
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    std::vector<nlohmann::json> records;
    std::ifstream in(dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
    fs::remove_all(dir);
    return records;
  };
  const auto bpc = [](const std::vector<nlohmann::json>& records) {
    std::map<int64_t, double> out;
    for (const auto& r : records) {
      if (r.contains("bpc")) out[r["step"].get<int64_t>()] = r["bpc"].get<double>();
    }
    return out;
  };
  const auto fixed = run_with(2, "--tp 2", "fixed");
  const auto moved = run_with(2, "--tp 2 --rebalance-every 5", "moved");
  const auto one = run_with(1, "", "one");

  nlohmann::json event;
  for (const auto& r : moved) {
    if (r.value("event", "") == "rebalance") event = r;
  }
  ASSERT_FALSE(event.is_null()) << "no rebalance happened";
  EXPECT_EQ(event["step"], 5);
  EXPECT_DOUBLE_EQ(event["max_load_before"].get<double>(), 2 * (256 + 256));  // 2 layers, both long heads on rank 0
  EXPECT_DOUBLE_EQ(event["max_load_after"].get<double>(), 2 * (256 + 64));
  const auto kv_after = event["kv_cache_bytes_after"].get<std::vector<double>>();
  const auto kv_before = event["kv_cache_bytes_before"].get<std::vector<double>>();
  ASSERT_EQ(kv_after.size(), 2u);
  EXPECT_NEAR(kv_before[0], 2 * kv_before[1], 1e-9);          // rank 0: 2 x 256 rows per layer, rank 1: 2 x 128
  EXPECT_NEAR(kv_after[0], kv_after[1], 0.05 * kv_after[0]);  // now within 5% of each other
  EXPECT_EQ(event["attention_s_per_step_before"].size(), 2u);
  for (const auto& r : moved) {
    if (r.contains("tokens_per_s")) EXPECT_EQ(r["attention_s_per_step"].size(), 2u);
  }
  for (const auto& r : moved) {
    if (r.value("event", "") == "rebalance") EXPECT_EQ(r["step"], 5);  // spans barely move: once is enough
  }

  const auto a = bpc(fixed), b = bpc(moved), c = bpc(one);
  ASSERT_EQ(a.size(), 8u);
  EXPECT_NEAR(b.at(6), a.at(6), 1e-6 * a.at(6)) << "the step after the move";
  for (const auto& [step, x] : a) {
    EXPECT_NEAR(b.at(step), x, 1e-5 * x) << "step " << step;
    EXPECT_NEAR(c.at(step), x, 1e-5 * x) << "one rank, step " << step;
  }
}

}  // namespace
}  // namespace adaspan

namespace adaspan {
namespace {

std::map<int64_t, double> train_curve(int ranks, const std::string& dir, const std::string& flags, double* param_norm,
                                      std::string* err = nullptr) {
  const std::string args =
      "train --layers 2 --d-model 32 --heads 4 --ff-size 64 --attn-span 256 --block-size 64 --batch-size 4"
      " --log-every 4 --eval-every 0 --threads 1 --span-init-heads 200,200,8,8 --span-loss-coeff 0 --run-dir " +
      dir + " " + flags;
  const auto r = testing::run_adaspan(args, ranks);
  EXPECT_EQ(r.exit_code, 0) << flags << ": " << r.err;
  if (err) *err = r.err;
  std::map<int64_t, double> out;
  std::ifstream in(fs::path(dir) / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("bpc")) out[j["step"].get<int64_t>()] = j["bpc"].get<double>();
    if (j.value("event", "") == "done") *param_norm = j["param_norm"].get<double>();
  }
  return out;
}

// Checkpoints are logical: written at TP 2 after a rebalance (heads held out of order), they load
// at TP 1, 2 and 4 and continue the run of one rank; on the same layout without a rebalance,
// resuming is bit-exact.
TEST(TensorParallel, CheckpointsLoadOnAnyTensorParallelLayout) {
  const fs::path base = fs::temp_directory_path() / ("adaspan_tpckpt_" + std::to_string(::getpid()));
  fs::remove_all(base);
  double reference_norm = 0, norm = 0;
  const auto reference = train_curve(1, (base / "one").string(), "--steps 16", &reference_norm);
  train_curve(2, (base / "written").string(), "--tp 2 --rebalance-every 5 --steps 8 --checkpoint-every 8", &norm);
  const std::string ckpt = (base / "written" / "ckpt-8.h5").string();
  ASSERT_TRUE(fs::exists(ckpt));
  for (int tp : {1, 2, 4}) {
    const std::string dir = (base / ("resumed" + std::to_string(tp))).string();
    const auto curve =
        train_curve(tp, dir, "--steps 16 --resume " + ckpt + (tp > 1 ? " --tp " + std::to_string(tp) : ""), &norm);
    for (int64_t step : {12, 16}) {
      EXPECT_NEAR(curve.at(step), reference.at(step), 1e-6 * reference.at(step)) << "TP " << tp << ", step " << step;
    }
    EXPECT_NEAR(norm, reference_norm, 1e-6 * reference_norm) << "TP " << tp;
  }

  double straight_norm = 0, resumed_norm = 0;
  const auto straight = train_curve(2, (base / "tp2").string(), "--tp 2 --steps 16", &straight_norm);
  train_curve(2, (base / "tp2_split").string(), "--tp 2 --steps 8 --checkpoint-every 8", &norm);
  const auto resumed = train_curve(2, (base / "tp2_split").string(), "--tp 2 --steps 16 --resume auto", &resumed_norm);
  EXPECT_EQ(straight, resumed);
  EXPECT_EQ(straight_norm, resumed_norm);
  fs::remove_all(base);
}

}  // namespace
}  // namespace adaspan

namespace adaspan {
namespace {

// Rebalancing moves the variants' per-head parameters with their heads (dynamic span weights and
// biases, ASEntmax's beta and gamma) and their optimizer state: training goes on unchanged.
TEST(TensorParallel, RebalancingMovesVariantParameters) {
  const auto bpc_of = [](int ranks, const std::string& flags, const std::string& name, bool* rebalanced) {
    const fs::path dir = fs::temp_directory_path() / ("adaspan_rebal_var_" + std::to_string(::getpid()) + "_" + name);
    fs::remove_all(dir);
    const std::string args =
        "train --steps 8 --layers 2 --d-model 32 --heads 4 --ff-size 64 --block-size 64 --batch-size 4 --threads 1"
        " --warmup-steps 4 --attn-span 256 --span-init-heads 200,200,8,8 --span-loss-coeff 0 --log-every 1"
        " --eval-every 0 --span-mode dynamic --normalizer asentmax --run-dir " +
        dir.string() + " " + flags;
    const auto r = testing::run_adaspan(args, ranks);
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
    std::map<int64_t, double> out;
    std::ifstream in(dir / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.contains("bpc")) out[j["step"].get<int64_t>()] = j["bpc"].get<double>();
      if (j.value("event", "") == "rebalance") *rebalanced = true;
    }
    fs::remove_all(dir);
    return out;
  };
  bool fixed_moved = false, moved = false, one_moved = false;
  const auto fixed = bpc_of(2, "--tp 2", "fixed", &fixed_moved);
  const auto rebalanced = bpc_of(2, "--tp 2 --rebalance-every 5", "moved", &moved);
  const auto one = bpc_of(1, "", "one", &one_moved);
  EXPECT_FALSE(fixed_moved);
  EXPECT_TRUE(moved) << "no rebalance happened";
  ASSERT_EQ(fixed.size(), 8u);
  for (const auto& [step, x] : fixed) {
    EXPECT_NEAR(rebalanced.at(step), x, 1e-5 * x) << "step " << step;
    EXPECT_NEAR(one.at(step), x, 1e-5 * x) << "one rank, step " << step;
  }
}

}  // namespace
}  // namespace adaspan
