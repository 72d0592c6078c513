// A run directory never loses a run's files: one run at a time, no fresh run over an earlier one,
// --fresh moves (never deletes), a crash's half-written files are cleared without following
// symlinks, retention and resume ignore checkpoints that are not this run's last commits.
#include "checkpointing/run_directory.h"
#include "checkpointing/checkpoint_store.h"
#include "command_runner.h"
#include "scratch_dir.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using testing::run_adaspan;

const std::string kTrain =
    "train --layers 1 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
    " --log-every 5 --eval-every 0 --threads 1";

fs::path fresh_dir(const std::string& name, bool create = false) { return testing::fresh_dir("rundir", name, create); }

std::vector<std::string> file_lines(const fs::path& file) {
  std::vector<std::string> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Lines adaspan wrote (mpirun adds its own after them).
int ours(const std::string& err) {
  std::istringstream lines(err);
  int n = 0;
  for (std::string line; std::getline(lines, line);) n += line.rfind("adaspan", 0) == 0;
  return n;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// The sequence a new user tried: a run, then the same command with fewer steps and no --resume.
// It used to truncate the first run's metrics, delete its own fresh checkpoint and leave `latest`
// dangling; now it is refused and both runs' files are as they were.
TEST(RunDirectory, ASecondFreshRunIsRefusedAndTheFirstRunsFilesStayIntact) {
  const fs::path dir = fresh_dir("new_user");
  const std::string run = kTrain + " --checkpoint-every 5 --run-dir " + dir.string();
  ASSERT_EQ(run_adaspan(run + " --steps 20").exit_code, 0);
  const std::vector<std::string> metrics = file_lines(dir / "metrics.jsonl");
  const std::vector<std::string> files = names_in(dir);
  const std::string latest = file_lines(dir / "latest").at(0);

  const auto again = run_adaspan(run + " --steps 10");
  EXPECT_EQ(again.exit_code, 2);
  EXPECT_EQ(std::count(again.err.begin(), again.err.end(), '\n'), 1) << again.err;
  EXPECT_NE(again.err.find("holds an earlier run"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--resume auto"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("--fresh"), std::string::npos) << again.err;
  // On two ranks: the same refusal, agreed, in one line from rank 0 (mpirun's report follows it).
  const auto on_two = run_adaspan(run + " --steps 10", 2);
  EXPECT_EQ(on_two.exit_code, 2);
  EXPECT_EQ(ours(on_two.err), 1) << on_two.err;
  EXPECT_NE(on_two.err.find("holds an earlier run"), std::string::npos) << on_two.err;
  EXPECT_EQ(file_lines(dir / "metrics.jsonl"), metrics);
  EXPECT_EQ(names_in(dir), files);
  EXPECT_EQ(file_lines(dir / "latest").at(0), latest);
  EXPECT_TRUE(fs::exists(dir / latest));
  fs::remove_all(dir);
}

TEST(RunDirectory, FreshMovesTheEarlierRunAsideAndNeverDeletes) {
  const fs::path dir = fresh_dir("fresh");
  const std::string run = kTrain + " --checkpoint-every 5 --run-dir " + dir.string();
  ASSERT_EQ(run_adaspan(run + " --steps 10").exit_code, 0);
  const std::vector<std::string> first_metrics = file_lines(dir / "metrics.jsonl");
  const auto second = run_adaspan(run + " --steps 5 --fresh");
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_NE(second.err.find("previous-"), std::string::npos) << second.err;
  fs::path aside;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("previous-", 0) == 0) aside = e.path();
  }
  ASSERT_FALSE(aside.empty()) << "no previous-<time> folder";
  EXPECT_EQ(file_lines(aside / "metrics.jsonl"), first_metrics);
  EXPECT_TRUE(fs::exists(aside / "ckpt-10.h5"));
  EXPECT_TRUE(fs::exists(aside / "ckpt-5.h5"));
  // The new run's own records and checkpoint.
  const auto records = file_lines(dir / "metrics.jsonl");
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(nlohmann::json::parse(records.back())["step"], 5);
  EXPECT_TRUE(fs::exists(dir / "ckpt-5.h5"));
  EXPECT_FALSE(fs::exists(dir / "ckpt-10.h5"));
  fs::remove_all(dir);
}

// Under the launcher, --fresh moves the earlier run aside once, before the first attempt; a
// restart then continues the new run (from its own checkpoint), never the earlier one.
TEST(RunDirectory, LaunchWithFreshStartsOverOnceAndRestartsContinueTheNewRun) {
  const fs::path dir = fresh_dir("launch_fresh");
  const std::string train = std::string(ADASPAN_BINARY) + " " + kTrain + " --run-dir " + dir.string();
  ASSERT_EQ(run_adaspan(kTrain + " --steps 8 --run-dir " + dir.string()).exit_code, 0);
  const std::vector<std::string> first_metrics = file_lines(dir / "metrics.jsonl");
  const auto r = run_adaspan("launch --backoff 0 --max-restarts 1 -- " + train +
                             " --fresh --steps 6 --checkpoint-every 2 --fail-at-step 3 --fail-mode crash");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  fs::path aside;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("previous-", 0) == 0) aside = e.path();
  }
  ASSERT_FALSE(aside.empty()) << r.err;
  EXPECT_EQ(file_lines(aside / "metrics.jsonl"), first_metrics);
  EXPECT_TRUE(fs::exists(aside / "ckpt-8.h5"));
  bool resumed_at_2 = false;
  int64_t done_at = 0;
  for (const auto& line : file_lines(dir / "metrics.jsonl")) {
    const auto rec = nlohmann::json::parse(line);
    resumed_at_2 |= rec.value("event", "") == "resumed" && rec["step"] == 2;
    if (rec.value("event", "") == "done") done_at = rec["step"].get<int64_t>();
  }
  EXPECT_TRUE(resumed_at_2) << "the restart did not continue the new run";
  EXPECT_EQ(done_at, 6);
  EXPECT_EQ(file_lines(dir / "attempts.jsonl").size(), 2u);
  fs::remove_all(dir);
}

// Each run has an id, kept by its resumes. A higher-numbered checkpoint of another run, copied in,
// is neither resumed from nor counted or deleted by retention.
TEST(RunDirectory, ResumeAndRetentionKeepToThisRunsLineage) {
  const fs::path a = fresh_dir("lineage_a"), b = fresh_dir("lineage_b");
  ASSERT_EQ(run_adaspan(kTrain + " --steps 6 --checkpoint-every 2 --run-dir " + a.string()).exit_code, 0);
  ASSERT_EQ(run_adaspan(kTrain + " --steps 10 --checkpoint-every 5 --run-dir " + b.string()).exit_code, 0);
  fs::copy_file(b / "ckpt-10.h5", a / "ckpt-10.h5");
  const auto run_id_of = [](const fs::path& dir, const std::string& event) {
    std::string id;
    for (const auto& line : file_lines(dir / "metrics.jsonl")) {
      const auto rec = nlohmann::json::parse(line);
      if (rec.value("event", "") == event) id = rec.value("run_id", "");
    }
    return id;
  };
  const std::string id_a = run_id_of(a, "done"), id_b = run_id_of(b, "done");
  ASSERT_EQ(id_a.size(), 16u);
  ASSERT_NE(id_a, id_b);

  const auto r = run_adaspan(kTrain + " --steps 8 --checkpoint-every 2 --keep-checkpoints 1 --resume auto --run-dir " +
                             a.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("ckpt-10.h5': it belongs to another run (" + id_b + ")"), std::string::npos) << r.err;
  bool resumed_at_6 = false;
  for (const auto& line : file_lines(a / "metrics.jsonl")) {
    const auto rec = nlohmann::json::parse(line);
    resumed_at_6 |= rec.value("event", "") == "resumed" && rec["step"] == 6 && rec["run_id"] == id_a;
  }
  EXPECT_TRUE(resumed_at_6) << "not resumed from this run's own newest checkpoint";
  EXPECT_EQ(run_id_of(a, "done"), id_a);  // a resume keeps the run's id
  EXPECT_TRUE(fs::exists(a / "ckpt-8.h5"));
  EXPECT_FALSE(fs::exists(a / "ckpt-6.h5"));  // keep 1: this run's older ones go
  EXPECT_TRUE(fs::exists(a / "ckpt-10.h5"));  // the other run's stays
  const auto inspected = run_adaspan("inspect --json --no-verify " + (a / "ckpt-8.h5").string());
  EXPECT_EQ(nlohmann::json::parse(inspected.out)["run_id"], id_a);
  fs::remove_all(a);
  fs::remove_all(b);
}

// Makes `file` look like a checkpoint written before run ids existed.
void strip_run_id(const fs::path& file) {
  const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(f, 0) << file;
  EXPECT_GE(H5Adelete(f, "run_id"), 0);
  EXPECT_GE(H5Adelete(f, "adopts_unnamed"), 0);
  H5Fclose(f);
}

// A run resumed from a checkpoint older than run ids takes those id-less files into its lineage
// for good: after a second resume they are still its own (retention counts and removes them,
// no "another run" warning), not strays left behind.
TEST(RunDirectory, CheckpointsWithoutARunIdStayInTheLineageThatAdoptedThem) {
  const fs::path dir = fresh_dir("unnamed");
  const std::string run = kTrain + " --checkpoint-every 2 --run-dir " + dir.string();
  ASSERT_EQ(run_adaspan(run + " --steps 4").exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(strip_run_id(dir / "ckpt-2.h5"));
  ASSERT_NO_FATAL_FAILURE(strip_run_id(dir / "ckpt-4.h5"));
  const auto adopted = run_adaspan(run + " --steps 6 --resume auto");
  ASSERT_EQ(adopted.exit_code, 0) << adopted.err;
  const auto again = run_adaspan(run + " --steps 8 --resume auto --keep-checkpoints 2");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.err.find("belongs to another run"), std::string::npos) << again.err;
  int resumed_at_6 = 0;
  for (const auto& line : file_lines(dir / "metrics.jsonl")) {
    const auto rec = nlohmann::json::parse(line);
    resumed_at_6 += rec.value("event", "") == "resumed" && rec["step"] == 6;
  }
  EXPECT_EQ(resumed_at_6, 1);
  EXPECT_TRUE(fs::exists(dir / "ckpt-8.h5"));
  EXPECT_TRUE(fs::exists(dir / "ckpt-6.h5"));
  EXPECT_FALSE(fs::exists(dir / "ckpt-4.h5")) << "an adopted id-less checkpoint fell out of the lineage";
  EXPECT_FALSE(fs::exists(dir / "ckpt-2.h5")) << "an adopted id-less checkpoint fell out of the lineage";
  fs::remove_all(dir);
}

TEST(RunDirectory, ARunDirInUseIsRefusedNamingItsHolderAndFreedWhenTheHolderDies) {
  const fs::path dir = fresh_dir("locked", true);
  const std::string run = kTrain + " --steps 2 --run-dir " + dir.string();
  {
    const checkpointing::RunDirLock held(dir.string());
    const auto refused = run_adaspan(run);
    EXPECT_EQ(refused.exit_code, 2);
    EXPECT_NE(refused.err.find("in use by pid " + std::to_string(::getpid())), std::string::npos) << refused.err;
    EXPECT_FALSE(fs::exists(dir / "metrics.jsonl"));
  }
  // A holder killed outright leaves no stale lock.
  const pid_t child = ::fork();
  if (child == 0) {
    const checkpointing::RunDirLock held(dir.string());
    ::pause();
    ::_exit(0);
  }
  ::usleep(300 * 1000);
  const auto while_child = run_adaspan(run);
  EXPECT_NE(while_child.err.find("in use by pid " + std::to_string(child)), std::string::npos) << while_child.err;
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  const auto after = run_adaspan(run);
  EXPECT_EQ(after.exit_code, 0) << after.err;
  fs::remove_all(dir);
}

TEST(RunDirectory, ACrashsTemporariesAreRemovedWithoutFollowingSymlinks) {
  const fs::path dir = fresh_dir("stale_tmp", true), outside = fresh_dir("stale_tmp_victim", true);
  std::ofstream(outside / "precious.txt") << "not a checkpoint";
  fs::create_symlink(outside / "precious.txt", dir / "ckpt-2.h5.tmp");
  fs::create_symlink(outside / "precious.txt", dir / "latest.tmp");
  const auto r = run_adaspan(kTrain + " --steps 2 --checkpoint-every 2 --run-dir " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("removed 'ckpt-2.h5.tmp'"), std::string::npos) << r.err;
  EXPECT_EQ(file_lines(outside / "precious.txt"), std::vector<std::string>{"not a checkpoint"});
  EXPECT_TRUE(fs::is_regular_file(fs::symlink_status(dir / "ckpt-2.h5")));
  EXPECT_EQ(file_lines(dir / "latest").at(0), "ckpt-2.h5");
  fs::remove_all(dir);
  fs::remove_all(outside);
}

TEST(RunDirectory, AStepNumberOutOfRangeIsIgnoredWithAWarning) {
  const fs::path dir = fresh_dir("huge_step", true);
  std::ofstream(dir / "ckpt-99999999999999999999.h5") << "not ours";
  EXPECT_TRUE(checkpointing::list_checkpoints(dir.string()).empty());
  const auto r = run_adaspan(kTrain + " --steps 2 --resume auto --run-dir " + dir.string());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("ignoring 'ckpt-99999999999999999999.h5'"), std::string::npos) << r.err;
  // Never deleted (with no usable checkpoint, --resume auto moves the earlier files aside).
  bool kept = false;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    kept |= e.path().filename() == "ckpt-99999999999999999999.h5";
  EXPECT_TRUE(kept);
  fs::remove_all(dir);
}

// A file with a higher step than this run's commit (another run's, or copied in) is neither
// picked first nor deleted, and does not push this run's own checkpoint out.
TEST(RunDirectory, RetentionAndResumeFollowLatestNotTheHighestNumber) {
  const fs::path dir = fresh_dir("retention", true);
  for (int step : {100, 200, 300}) std::ofstream(dir / ("ckpt-" + std::to_string(step) + ".h5")) << "foreign";
  for (int step : {3, 5}) {
    std::ofstream(checkpointing::temporary_path(dir.string(), step)) << "ours";
    checkpointing::commit_checkpoint(dir.string(), step, 1);
  }
  EXPECT_FALSE(fs::exists(dir / "ckpt-3.h5"));  // keep 1: the older of this run's own is deleted
  EXPECT_TRUE(fs::exists(dir / "ckpt-5.h5"));
  for (int step : {100, 200, 300}) EXPECT_TRUE(fs::exists(dir / ("ckpt-" + std::to_string(step) + ".h5")));
  const std::vector<std::string> listed = checkpointing::list_checkpoints(dir.string());
  ASSERT_EQ(listed.size(), 4u);
  EXPECT_EQ(fs::path(listed[0]).filename(), "ckpt-5.h5");  // `latest` first
  EXPECT_EQ(fs::path(listed[1]).filename(), "ckpt-300.h5");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace adaspan
