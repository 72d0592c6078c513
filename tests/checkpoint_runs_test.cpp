// Checkpoints as users meet them: real `mpirun` runs of the binary that stop, crash and resume on
// other rank counts, and the eval / generate / inspect commands.
#include "checkpointing/checkpoint_file.h"
#include "tests/command_runner.h"
#include "tests/scratch_dir.h"

#include <ATen/ATen.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using testing::run_adaspan;

const std::string kRun =
    "train --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
    " --log-every 5 --eval-every 0 --threads 1 --warmup-steps 4";

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("ckrun", name, false); }

std::vector<nlohmann::json> records(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

// step -> bpc of training records, and the final param_norm.
struct Curve {
  std::map<int64_t, double> bpc;
  double param_norm = 0;
  int64_t resumed_at = 0;
};
Curve curve(const fs::path& dir) {
  Curve c;
  for (const auto& r : records(dir)) {
    if (r.contains("bpc") && !r.contains("split")) c.bpc[r["step"].get<int64_t>()] = r["bpc"].get<double>();
    if (r.value("event", "") == "done") c.param_norm = r["param_norm"].get<double>();
    if (r.value("event", "") == "resumed") c.resumed_at = r["step"].get<int64_t>();
  }
  return c;
}

std::string run_args(const fs::path& dir, int steps, const std::string& extra = "") {
  return kRun + " --steps " + std::to_string(steps) + " --run-dir " + dir.string() + " " + extra;
}

TEST(CheckpointRuns, TwoRanksResumeBitExact) {
  const fs::path straight = fresh_dir("np2_straight"), resumed = fresh_dir("np2_resumed");
  const std::string dropout = "--dropout 0.1";
  ASSERT_EQ(run_adaspan(run_args(straight, 20, dropout), 2).exit_code, 0);
  ASSERT_EQ(run_adaspan(run_args(resumed, 10, dropout + " --checkpoint-every 10"), 2).exit_code, 0);
  const auto r = run_adaspan(run_args(resumed, 20, dropout + " --resume auto"), 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Curve a = curve(straight), b = curve(resumed);
  EXPECT_EQ(b.resumed_at, 10);
  EXPECT_EQ(a.bpc.size(), 4u);
  EXPECT_EQ(a.bpc, b.bpc);
  EXPECT_EQ(a.param_norm, b.param_norm);
  fs::remove_all(straight);
  fs::remove_all(resumed);
}

// The (stream, position) pairs all ranks read, from ADASPAN_TRACE_READS files ("stream position bytes").
std::set<std::pair<int64_t, uint64_t>> reads(const fs::path& trace) {
  std::set<std::pair<int64_t, uint64_t>> out;
  for (const auto& entry : fs::directory_iterator(trace)) {
    std::ifstream in(entry.path());
    int64_t stream, bytes;
    uint64_t position;
    while (in >> stream >> position >> bytes) out.insert({stream, position});
  }
  return out;
}

TEST(CheckpointRuns, TwoRankCheckpointResumesOnOneAndFourRanks) {
  const fs::path straight = fresh_dir("layout_straight"), first = fresh_dir("layout_first");
  ASSERT_EQ(run_adaspan(run_args(straight, 20), 2).exit_code, 0);
  ASSERT_EQ(run_adaspan(run_args(first, 10, "--checkpoint-every 10"), 2).exit_code, 0);
  const Curve reference = curve(straight);
  const std::string ckpt = (first / "ckpt-10.h5").string();
  for (int ranks : {1, 4}) {
    const fs::path dir = fresh_dir("layout_np" + std::to_string(ranks)),
                   trace = fresh_dir("trace" + std::to_string(ranks));
    fs::create_directories(trace);
    const auto r = run_adaspan(run_args(dir, 20, "--resume " + ckpt), ranks, "ADASPAN_TRACE_READS=" + trace.string());
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Curve c = curve(dir);
    EXPECT_EQ(c.resumed_at, 10);
    ASSERT_EQ(c.bpc.size(), 2u);  // steps 15 and 20
    for (const auto& [step, bpc] : c.bpc) {
      EXPECT_NEAR(bpc, reference.bpc.at(step), 1e-6 * bpc) << ranks << " ranks, step " << step;
    }
    EXPECT_NEAR(c.param_norm, reference.param_norm, 1e-6 * reference.param_norm) << ranks << " ranks";
    // The same streams continue: stream k read from k*N/B + 10*32 onwards, 32 bytes a step.
    std::set<std::pair<int64_t, uint64_t>> expected;
    const uint64_t corpus = 4u << 20;
    for (int64_t k = 0; k < 4; ++k) {
      for (uint64_t step = 10; step < 20; ++step) expected.insert({k, (corpus * k / 4 + step * 32) % corpus});
    }
    EXPECT_EQ(reads(trace), expected) << ranks << " ranks";
    fs::remove_all(dir);
    fs::remove_all(trace);
  }
  fs::remove_all(straight);
  fs::remove_all(first);
}

TEST(CheckpointRuns, AutoSkipsADamagedNewestCheckpoint) {
  const fs::path dir = fresh_dir("skip");
  ASSERT_EQ(run_adaspan(run_args(dir, 10, "--checkpoint-every 5")).exit_code, 0);
  fs::resize_file(dir / "ckpt-10.h5", fs::file_size(dir / "ckpt-10.h5") / 3);  // e.g. a full disk
  const auto r = run_adaspan(run_args(dir, 10, "--resume auto"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("warning: skipping checkpoint"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("ckpt-10.h5"), std::string::npos) << r.err;
  EXPECT_EQ(curve(dir).resumed_at, 5);
  fs::remove_all(dir);
}

TEST(CheckpointRuns, CrashBetweenWriteAndRenameLosesOnlyTheStepsSince) {
  const fs::path straight = fresh_dir("crash_straight"), dir = fresh_dir("crash");
  ASSERT_EQ(run_adaspan(run_args(straight, 10), 2).exit_code, 0);
  const auto crashed =
      run_adaspan(run_args(dir, 10, "--checkpoint-every 5 --fail-mode checkpoint --fail-at-step 10"), 2);
  EXPECT_NE(crashed.exit_code, 0);
  EXPECT_TRUE(fs::exists(dir / "ckpt-5.h5"));
  EXPECT_TRUE(fs::exists(dir / "ckpt-10.h5.tmp"));
  EXPECT_FALSE(fs::exists(dir / "ckpt-10.h5"));
  std::ifstream latest(dir / "latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, "ckpt-5.h5");

  const auto r = run_adaspan(run_args(dir, 10, "--checkpoint-every 5 --resume auto"), 2, "ADASPAN_ATTEMPT=2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Curve a = curve(straight), b = curve(dir);
  EXPECT_EQ(b.resumed_at, 5);
  EXPECT_EQ(a.bpc, b.bpc);  // the crashed attempt's records past step 5 were dropped and redone
  EXPECT_EQ(a.param_norm, b.param_norm);
  EXPECT_TRUE(fs::exists(dir / "ckpt-10.h5"));
  fs::remove_all(straight);
  fs::remove_all(dir);
}

// MPI's thread level is chosen before MPI starts: --async-checkpoint in a --config file must ask
// for MPI_THREAD_MULTIPLE as the flag does (it once gave silently synchronous checkpoints).
TEST(CheckpointRuns, AsyncCheckpointFromAConfigFileIsAsynchronousLikeTheFlag) {
  const fs::path flag = fresh_dir("async_flag"), file = fresh_dir("async_file");
  const auto by_flag = run_adaspan(run_args(flag, 6, "--checkpoint-every 3 --async-checkpoint"), 2);
  ASSERT_EQ(by_flag.exit_code, 0) << by_flag.err;
  ASSERT_EQ(by_flag.err.find("written synchronously"), std::string::npos)
      << "this MPI lacks MPI_THREAD_MULTIPLE, so the test cannot tell: " << by_flag.err;
  fs::create_directories(file);
  std::ofstream(file / "async.cfg") << "async-checkpoint = true\n";
  const auto by_file =
      run_adaspan(run_args(file, 6, "--checkpoint-every 3 --config " + (file / "async.cfg").string()), 2);
  ASSERT_EQ(by_file.exit_code, 0) << by_file.err;
  EXPECT_EQ(by_file.err.find("written synchronously"), std::string::npos) << by_file.err;
  EXPECT_EQ(curve(flag).bpc, curve(file).bpc);
  fs::remove_all(flag);
  fs::remove_all(file);
}

TEST(CheckpointRuns, AsynchronousCheckpointsTrainTheSameAndCommitWhenComplete) {
  const fs::path sync = fresh_dir("sync"), async = fresh_dir("async");
  ASSERT_EQ(run_adaspan(run_args(sync, 20, "--checkpoint-every 5"), 2).exit_code, 0);
  const auto r = run_adaspan(run_args(async, 20, "--checkpoint-every 5 --keep-checkpoints 0 --async-checkpoint"), 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Curve a = curve(sync), b = curve(async);
  EXPECT_EQ(a.bpc, b.bpc);
  EXPECT_EQ(a.param_norm, b.param_norm);
  int logged = 0;
  for (const auto& rec : records(async)) {
    if (rec.value("event", "") != "checkpoint") continue;
    ++logged;
    EXPECT_TRUE(fs::exists(rec["path"].get<std::string>())) << rec.dump();
    EXPECT_LE(rec["stall_seconds"].get<double>(), rec["seconds"].get<double>());
  }
  EXPECT_EQ(logged, 4);
  EXPECT_FALSE(fs::exists(async / "ckpt-5.h5.tmp"));
  // Same content as the synchronous checkpoint of the same step.
  const auto x = checkpointing::read_checkpoint((sync / "ckpt-20.h5").string(), {0, 1, 0, 4});
  const auto y = checkpointing::read_checkpoint((async / "ckpt-20.h5").string(), {0, 1, 0, 4});
  ASSERT_EQ(x.parameters.size(), y.parameters.size());
  for (size_t i = 0; i < x.parameters.size(); ++i)
    EXPECT_TRUE(at::equal(x.parameters[i].tensor, y.parameters[i].tensor));

  // A crash while the background write runs leaves the previous checkpoint, and nothing is lost
  // beyond the steps since it.
  const fs::path crash = fresh_dir("async_crash");
  const auto crashed = run_adaspan(
      run_args(crash, 20, "--checkpoint-every 5 --async-checkpoint --fail-mode checkpoint --fail-at-step 10"), 2);
  EXPECT_NE(crashed.exit_code, 0);
  EXPECT_TRUE(fs::exists(crash / "ckpt-5.h5"));
  EXPECT_FALSE(fs::exists(crash / "ckpt-10.h5"));
  const auto resumed =
      run_adaspan(run_args(crash, 20, "--checkpoint-every 5 --async-checkpoint --resume auto"), 2, "ADASPAN_ATTEMPT=2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  const Curve c = curve(crash);
  EXPECT_EQ(c.resumed_at, 5);
  EXPECT_EQ(c.bpc, a.bpc);
  EXPECT_EQ(c.param_norm, a.param_norm);
  fs::remove_all(sync);
  fs::remove_all(async);
  fs::remove_all(crash);
}

TEST(CheckpointRuns, IncompatibleCheckpointIsRefused) {
  const fs::path dir = fresh_dir("refuse");
  ASSERT_EQ(run_adaspan(run_args(dir, 2, "--checkpoint-every 2")).exit_code, 0);
  std::string other = kRun;
  other.replace(other.find("--heads 2"), 9, "--heads 4");
  const auto r = run_adaspan(other + " --steps 4 --run-dir " + dir.string() + " --resume auto", 2);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, 124) << "timed out: a hang";
  EXPECT_NE(r.err.find("--heads is 2 in the checkpoint, 4 here"), std::string::npos) << r.err;
  fs::remove_all(dir);
}

TEST(CheckpointRuns, EvalGivesTheSameBitsPerByteOnOneAndTwoRanks) {
  const fs::path dir = fresh_dir("eval");
  ASSERT_EQ(run_adaspan(run_args(dir, 20, "--checkpoint-every 20")).exit_code, 0);
  const fs::path text = dir / "text.txt";
  {
    std::ofstream out(text);
    for (int i = 0; i < 300; ++i) out << "line " << i << ": the quick brown fox jumps over the lazy dog\n";
  }
  const std::string args =
      "eval --json --batch-size 4 --checkpoint " + (dir / "ckpt-20.h5").string() + " --data " + text.string();
  const auto one = run_adaspan(args), two = run_adaspan(args, 2);
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ASSERT_EQ(two.exit_code, 0) << two.err;
  const auto a = nlohmann::json::parse(one.out), b = nlohmann::json::parse(two.out);
  EXPECT_EQ(a["predicted_bytes"], static_cast<int64_t>(fs::file_size(text)) - 4);
  EXPECT_NEAR(a["bpb"].get<double>(), b["bpb"].get<double>(), 1e-6);  // float32 forwards of 4 vs 2 rows
  EXPECT_GT(a["bpb"].get<double>(), 1.0);  // 20 steps of training: far from the text's entropy
  EXPECT_LT(a["bpb"].get<double>(), 9.0);
  EXPECT_EQ(b["ranks"], 2);

  const auto bad =
      run_adaspan("eval --batch-size 3 --checkpoint " + (dir / "ckpt-20.h5").string() + " --data " + text.string(), 2);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("not divisible"), std::string::npos) << bad.err;
  fs::remove_all(dir);
}

TEST(CheckpointRuns, InspectAndGenerate) {
  const fs::path dir = fresh_dir("inspect");
  ASSERT_EQ(run_adaspan(run_args(dir, 6, "--checkpoint-every 6")).exit_code, 0);
  const std::string ckpt = (dir / "ckpt-6.h5").string();
  const auto inspected = run_adaspan("inspect --json " + ckpt);
  ASSERT_EQ(inspected.exit_code, 0) << inspected.err;
  const auto info = nlohmann::json::parse(inspected.out);
  EXPECT_EQ(info["step"], 6);
  EXPECT_EQ(info["tokens_seen"], 6 * 4 * 32);
  EXPECT_EQ(info["checksums"], "ok");
  EXPECT_EQ(info["spans"].size(), 2u);
  EXPECT_EQ(info["config"]["model"]["d-model"], 32);
  EXPECT_EQ(info["parameters"], info["optimizer_state_elements"]);  // one Adagrad sum per parameter
  const auto text = run_adaspan("inspect " + ckpt);
  EXPECT_NE(text.out.find("learned spans"), std::string::npos) << text.out;

  const auto generated = run_adaspan("generate --checkpoint " + ckpt + " --prompt 'Once upon' --bytes 25 --top-k 4");
  ASSERT_EQ(generated.exit_code, 0) << generated.err;
  EXPECT_EQ(generated.out.size(), 26u);  // 25 bytes and a newline
  const auto empty = run_adaspan("generate --checkpoint " + ckpt + " --prompt ''");
  EXPECT_EQ(empty.exit_code, 2);
  const auto missing = run_adaspan("inspect " + (dir / "nope.h5").string());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("nope.h5"), std::string::npos) << missing.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace adaspan
