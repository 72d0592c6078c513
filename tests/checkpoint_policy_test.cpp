// When checkpoints are written (by default at the last step, every N steps, every M minutes) and
// what a resume refuses (other data, a --steps behind the checkpoint, a changed dropout) or notes
// (a changed learning rate, the same data under another path), and a rollback's halved learning
// rate surviving a resume; a full file system or a read-only run dir losing nothing.
#include "ci_policy.h"
#include "command_runner.h"
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <thread>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using testing::run_adaspan;

const std::string kTrain =
    "train --layers 1 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
    " --log-every 1 --eval-every 0 --threads 1 --warmup-steps 4";

fs::path fresh_dir(const std::string& name, bool create = false) { return testing::fresh_dir("ckpol", name, create); }

std::vector<nlohmann::json> records(const fs::path& dir) {
  std::vector<nlohmann::json> out;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

std::set<int64_t> checkpoint_steps(const fs::path& dir) {
  std::set<int64_t> steps;
  for (const auto& r : records(dir)) {
    if (r.value("event", "") == "checkpoint") steps.insert(r["step"].get<int64_t>());
  }
  return steps;
}

void write_random_text(const fs::path& file, uint32_t seed, size_t bytes) {
  std::mt19937 rng(seed);
  std::string text(bytes, ' ');
  for (auto& c : text) c = static_cast<char>('a' + rng() % 26);
  std::ofstream(file) << text;
}

TEST(CheckpointPolicy, ARunEndsWithACheckpointUnlessToldNot) {
  const fs::path dir = fresh_dir("final"), none = fresh_dir("no_final");
  ASSERT_EQ(run_adaspan(kTrain + " --steps 3 --run-dir " + dir.string()).exit_code, 0);
  EXPECT_EQ(checkpoint_steps(dir), std::set<int64_t>{3});
  EXPECT_TRUE(fs::exists(dir / "ckpt-3.h5"));
  ASSERT_EQ(run_adaspan(kTrain + " --steps 3 --no-final-checkpoint --run-dir " + none.string()).exit_code, 0);
  EXPECT_TRUE(checkpoint_steps(none).empty());
  EXPECT_FALSE(fs::exists(none / "ckpt-3.h5"));
  fs::remove_all(dir);
  fs::remove_all(none);
}

// Time-based checkpoints are agreed at a step boundary: on two ranks, every checkpoint is a
// complete file written by both, whatever each rank's clock says.
TEST(CheckpointPolicy, MinutesBetweenCheckpointsAreAgreedAcrossRanks) {
  const fs::path dir = fresh_dir("minutes");
  const auto r =
      run_adaspan(kTrain + " --steps 6 --checkpoint-minutes 0.00001 --keep-checkpoints 0 --run-dir " + dir.string(), 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(checkpoint_steps(dir), (std::set<int64_t>{1, 2, 3, 4, 5, 6}));
  for (int step = 1; step <= 6; ++step) EXPECT_TRUE(fs::exists(dir / ("ckpt-" + std::to_string(step) + ".h5")));
  fs::remove_all(dir);
}

TEST(CheckpointPolicy, ResumeRefusesOtherDataAStepsBehindAndAnotherDropoutNamingThem) {
  const fs::path dir = fresh_dir("refusals", true), data = fresh_dir("refusals_data", true);
  write_random_text(data / "a.txt", 1, 20000);
  write_random_text(data / "b.txt", 2, 20000);
  fs::copy_file(data / "a.txt", data / "a_moved.txt");
  const std::string run = kTrain + " --dropout 0.1 --run-dir " + dir.string();  // --lr 0.05 below
  ASSERT_EQ(run_adaspan(run + " --lr 0.05 --steps 4 --data " + (data / "a.txt").string()).exit_code, 0);

  const auto other_data = run_adaspan(run + " --lr 0.05 --steps 8 --resume auto --data " + (data / "b.txt").string());
  EXPECT_NE(other_data.exit_code, 0);
  EXPECT_NE(other_data.err.find("data-identity"), std::string::npos) << other_data.err;
  const auto behind = run_adaspan(run + " --lr 0.05 --steps 2 --resume auto --data " + (data / "a.txt").string());
  EXPECT_NE(behind.exit_code, 0);
  EXPECT_NE(behind.err.find("past --steps 2"), std::string::npos) << behind.err;
  const auto dropout = run_adaspan(kTrain + " --dropout 0.2 --run-dir " + dir.string() +
                                   " --lr 0.05 --steps 8 --resume auto --data " + (data / "a.txt").string());
  EXPECT_NE(dropout.exit_code, 0);
  EXPECT_NE(dropout.err.find("--dropout is 0.1 in the checkpoint, 0.2 here"), std::string::npos) << dropout.err;
  EXPECT_EQ(records(dir).back()["event"], "done");  // none of them touched the run

  // The same bytes under another path, and another learning rate: allowed, and noted.
  const auto moved = run_adaspan(run + " --steps 6 --lr 0.04 --resume auto --data " + (data / "a_moved.txt").string());
  ASSERT_EQ(moved.exit_code, 0) << moved.err;
  EXPECT_NE(moved.err.find("changed since the checkpoint: --lr 0.05 -> 0.04"), std::string::npos) << moved.err;
  EXPECT_NE(moved.err.find("changed since the checkpoint: --data"), std::string::npos) << moved.err;
  bool resumed = false;
  for (const auto& r : records(dir)) resumed |= r.value("event", "") == "resumed" && r["step"] == 4;
  EXPECT_TRUE(resumed);
  fs::remove_all(dir);
  fs::remove_all(data);
}

// After a rollback the learning rate is halved for --rollback-lr-steps steps, as the records show;
// a checkpoint keeps that period, so a resumed run goes on at half the rate.
TEST(CheckpointPolicy, ARollbacksHalvedLearningRateIsInTheRecordsAndSurvivesAResume) {
  const fs::path dir = fresh_dir("rollback");
  const std::string run =
      kTrain + " --lr 0.05 --checkpoint-every 4 --max-bad-steps 1 --rollback-lr-steps 100 --run-dir " + dir.string();
  const auto first =
      run_adaspan(run + " --steps 10 --fail-at-step 6 --fail-mode nan --fail-count 2", 0, "ADASPAN_ATTEMPT=1");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  int64_t rolled_back_at = 0;
  for (const auto& r : records(dir)) {
    if (r.value("event", "") == "rollback") rolled_back_at = r["step"].get<int64_t>();
  }
  ASSERT_EQ(rolled_back_at, 7);  // two NaN steps in a row, one tolerated
  const auto lr_at = [&](int64_t step) {
    double lr = -1;
    for (const auto& r : records(dir)) {
      if (r.contains("lr") && r["step"] == step) lr = r["lr"].get<double>();  // the last record of the step
    }
    return lr;
  };
  EXPECT_DOUBLE_EQ(lr_at(4), 0.05);
  EXPECT_DOUBLE_EQ(lr_at(10), 0.025);
  const auto resumed = run_adaspan(run + " --steps 14 --resume auto");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  bool resumed_at_10 = false;
  for (const auto& r : records(dir)) resumed_at_10 |= r.value("event", "") == "resumed" && r["step"] == 10;
  EXPECT_TRUE(resumed_at_10);
  EXPECT_DOUBLE_EQ(lr_at(14), 0.025);
  fs::remove_all(dir);
}

// A file system too full for the next checkpoint: one error line, exit 74 (which launch does not
// restart), the previous checkpoint and `latest` as they were, no half-written file left. A real small file system: a
// tmpfs the test mounts, which needs CAP_SYS_ADMIN; where the sandbox forbids mounting, the test skips (even under
// CI=true: that is a capability of the machine, not an input the suite could provide).
TEST(CheckpointPolicy, AFullFileSystemRefusesTheCheckpointAndKeepsThePreviousOne) {
  const fs::path mount = fresh_dir("small_fs", true);
  if (std::system(("timeout 30 mount -t tmpfs -o size=700k tmpfs " + mount.string() + " 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (no CAP_SYS_ADMIN)";
  }
  const fs::path dir = mount / "run";
  const std::string run = kTrain + " --lr 0.05 --run-dir " + dir.string();
  const auto first = run_adaspan(run + " --steps 2");
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_TRUE(fs::exists(dir / "ckpt-2.h5"));
  const auto size = fs::file_size(dir / "ckpt-2.h5");
  const auto full = run_adaspan(run + " --steps 4 --checkpoint-every 1 --resume auto");
  EXPECT_EQ(full.exit_code, 74);  // not 1: a supervisor must not restart into the same full disk
  EXPECT_NE(full.err.find("checkpoint at step 3 not written"), std::string::npos) << full.err;
  EXPECT_NE(full.err.find("KiB free"), std::string::npos) << full.err;
  EXPECT_EQ(fs::file_size(dir / "ckpt-2.h5"), size);
  std::string name;
  std::getline(std::ifstream(dir / "latest"), name);
  EXPECT_EQ(name, "ckpt-2.h5");
  EXPECT_FALSE(fs::exists(dir / "ckpt-3.h5.tmp"));
  EXPECT_FALSE(fs::exists(dir / "ckpt-3.h5"));
  // Under launch: one attempt, not a loop of restarts that each lose the same steps.
  const auto launched = run_adaspan("launch --backoff 0 --max-restarts 3 -- " + std::string(ADASPAN_BINARY) + " " +
                                    run + " --steps 4 --checkpoint-every 1 --resume auto");
  EXPECT_EQ(launched.exit_code, 74) << launched.err;
  EXPECT_NE(launched.err.find("not restarting it"), std::string::npos) << launched.err;
  int attempt_count = 0;
  {
    std::ifstream attempts(dir / "attempts.jsonl");  // closed before the umount below
    for (std::string line; std::getline(attempts, line);) ++attempt_count;
  }
  EXPECT_EQ(attempt_count, 1);
  // What was written is still a checkpoint a run resumes from.
  const auto inspected = run_adaspan("inspect " + (dir / "ckpt-2.h5").string());
  EXPECT_EQ(inspected.exit_code, 0) << inspected.err;
  EXPECT_EQ(std::system(("timeout 30 umount " + mount.string()).c_str()), 0);
  fs::remove_all(mount);
}

// Root ignores permissions; without CAP_DAC_OVERRIDE it is held to them like any user (its own
// files' owner bits), so a directory's mode 0555 makes it read-only for the command.
std::string as_plain_user() {
  if (::geteuid() != 0) return "";
  if (std::system("setpriv --help > /dev/null 2>&1") != 0) return "unavailable";
  return "setpriv --bounding-set -dac_override,-dac_read_search";
}

// A read-only run dir: refused at start with one line (status 2) and nothing changed; made
// read-only while the run trains, the next checkpoint fails with one line and status 74, the
// previous checkpoint and `latest` stay as they were, and the run resumes from them once the dir
// is writable again.
TEST(CheckpointPolicy, AReadOnlyRunDirIsRefusedAtStartAndMidRunKeepsThePreviousCheckpoint) {
  const std::string plain = as_plain_user();
  if (plain == "unavailable") ADASPAN_SKIP_OUTSIDE_CI("setpriv (util-linux) is needed to drop root's override");
  const fs::path dir = fresh_dir("read_only") / "run";
  const std::string run = kTrain + " --run-dir " + dir.string();
  ASSERT_EQ(run_adaspan(run + " --steps 2").exit_code, 0);
  const auto listing = [&dir] {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  const auto before = listing();
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  const auto refused = run_adaspan(run + " --steps 4 --resume auto", 0, plain);
  EXPECT_EQ(refused.exit_code, 2) << refused.err;
  EXPECT_NE(refused.err.find("is not writable: Permission denied"), std::string::npos) << refused.err;
  EXPECT_EQ(listing(), before);

  // Mid-run: the dir turns read-only between the checkpoints of steps 300 and 600.
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::add);
  testing::CommandResult mid;
  std::thread training([&] { mid = run_adaspan(run + " --steps 600 --checkpoint-every 300 --resume auto", 0, plain); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::string latest;
  while (latest != "ckpt-300.h5" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::ifstream in(dir / "latest");
    std::getline(in, latest);
  }
  fs::permissions(dir, fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write,
                  fs::perm_options::remove);
  training.join();
  ASSERT_EQ(latest, "ckpt-300.h5") << mid.err;
  EXPECT_EQ(mid.exit_code, 74) << mid.err;
  EXPECT_NE(mid.err.find("checkpoint at step 600 failed (the previous one is intact)"), std::string::npos) << mid.err;
  std::string after;
  std::getline(std::ifstream(dir / "latest"), after);
  EXPECT_EQ(after, "ckpt-300.h5");
  EXPECT_FALSE(fs::exists(dir / "ckpt-600.h5"));
  EXPECT_FALSE(fs::exists(dir / "ckpt-600.h5.tmp"));

  fs::permissions(dir, fs::perms::owner_write, fs::perm_options::add);
  const auto resumed = run_adaspan(run + " --steps 600 --resume auto", 0, plain);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resumed from " + (dir / "ckpt-300.h5").string() + " at step 300"), std::string::npos)
      << resumed.out;
  fs::remove_all(dir.parent_path());
}

}  // namespace
}  // namespace adaspan
