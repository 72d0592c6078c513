// Fault tolerance with real `mpirun -np 2` runs under `adaspan launch`: a crashed rank, a hung
// rank, a signal, NaNs, and a launcher that gives up. The uninterrupted run is the reference.
#include "launcher/supervisor.h"
#include "tests/command_runner.h"
#include "tests/scratch_dir.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>

namespace adaspan {
namespace {

namespace fs = std::filesystem;
using testing::run_adaspan;

const std::string kTrain =
    " train --layers 2 --d-model 32 --heads 2 --ff-size 64 --attn-span 64 --block-size 32 --batch-size 4"
    " --log-every 5 --eval-every 0 --threads 1 --warmup-steps 4 --dropout 0.1";

fs::path fresh_dir(const std::string& name) { return testing::fresh_dir("ft", name, false); }

std::vector<nlohmann::json> lines(const fs::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

struct Outcome {
  std::map<int64_t, double> bpc;  // training records
  double param_norm = -1;
  std::vector<nlohmann::json> events;
};
Outcome outcome(const fs::path& dir) {
  Outcome o;
  for (const auto& r : lines(dir / "metrics.jsonl")) {
    if (r.contains("bpc") && !r.contains("split")) o.bpc[r["step"].get<int64_t>()] = r["bpc"].get<double>();
    if (r.contains("event")) o.events.push_back(r);
    if (r.value("event", "") == "done") o.param_norm = r["param_norm"].get<double>();
  }
  return o;
}

// The run resumed exactly once, at `step`, and every training step's record appears once (the
// crashed attempt's records past the checkpoint were dropped, not duplicated): what shows that a
// restart continued the run rather than starting it over.
void expect_resumed_once_at(const fs::path& dir, int64_t step) {
  int resumed = 0;
  std::map<int64_t, int> per_step;
  for (const auto& r : lines(dir / "metrics.jsonl")) {
    if (r.value("event", "") == "resumed") {
      ++resumed;
      EXPECT_EQ(r["step"], step) << r.dump();
    }
    if (r.contains("bpc") && !r.contains("split")) ++per_step[r["step"].get<int64_t>()];
  }
  EXPECT_EQ(resumed, 1);
  for (const auto& [s, n] : per_step) EXPECT_EQ(n, 1) << "step " << s << " has " << n << " training records";
}

int count_events(const Outcome& o, const std::string& name) {
  int n = 0;
  for (const auto& e : o.events) n += e["event"] == name;
  return n;
}

// `adaspan launch -- mpirun -np 2 adaspan train ...`
testing::CommandResult launch(const std::string& launch_flags, const fs::path& dir, int steps,
                              const std::string& extra) {
  const std::string train = std::string(ADASPAN_MPIEXEC) + " --allow-run-as-root --oversubscribe -np 2 " +
                            ADASPAN_BINARY + kTrain + " --steps " + std::to_string(steps) + " --run-dir " +
                            dir.string() + " " + extra;
  return run_adaspan("launch --backoff 0 " + launch_flags + " -- " + train, 0, "", 300);
}

const Outcome& reference_run() {
  static const Outcome reference = [] {
    const fs::path dir = fresh_dir("reference");
    const auto r = run_adaspan(kTrain + " --steps 20 --run-dir " + dir.string(), 2);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Outcome o = outcome(dir);
    fs::remove_all(dir);
    return o;
  }();
  return reference;
}

TEST(FaultTolerance, CrashedRankIsRestartedFromTheCheckpointWithTheSameResult) {
  const fs::path dir = fresh_dir("crash");
  const auto r =
      launch("--max-restarts 2", dir, 20, "--checkpoint-every 5 --fail-at-step 7 --fail-rank 1 --fail-mode crash");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto attempts = lines(dir / "attempts.jsonl");
  ASSERT_EQ(attempts.size(), 2u) << r.err;
  EXPECT_NE(attempts[0]["exit_code"], 0);
  EXPECT_NE(attempts[0]["cause"], "finished");
  EXPECT_EQ(attempts[1]["exit_code"], 0);
  EXPECT_EQ(attempts[1]["cause"], "finished");
  EXPECT_NE(attempts[1]["command"].get<std::string>().find("--resume auto"), std::string::npos);
  expect_resumed_once_at(dir, 5);  // the crash at step 7 lost steps 6-7 only
  const Outcome o = outcome(dir);
  EXPECT_EQ(o.bpc, reference_run().bpc);
  EXPECT_EQ(o.param_norm, reference_run().param_norm);
  fs::remove_all(dir);
}

// Attempt 1 ended by a watchdog (exit 86), attempt 2 resumed at the checkpoint of step 5 and ended
// as the uninterrupted run.
void expect_watchdog_abort_then_resume_at_5(const fs::path& dir) {
  const auto attempts = lines(dir / "attempts.jsonl");
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0]["exit_code"], 86);
  EXPECT_EQ(attempts[0]["cause"], "watchdog: a step or collective hung");
  expect_resumed_once_at(dir, 5);
  const Outcome o = outcome(dir);
  EXPECT_EQ(o.bpc, reference_run().bpc);
  EXPECT_EQ(o.param_norm, reference_run().param_norm);
}

TEST(FaultTolerance, HungRankIsAbortedByTheWatchdogAndRestarted) {
  const fs::path dir = fresh_dir("hang");
  const auto start = std::chrono::steady_clock::now();
  const auto r = launch("--max-restarts 1", dir, 20,
                        "--checkpoint-every 5 --step-timeout 4 --fail-at-step 8 --fail-rank 1 --fail-mode hang");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_LT(seconds, 120);
  EXPECT_NE(r.err.find("made no progress"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("training step at step 8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rank 1"), std::string::npos) << r.err;
  expect_watchdog_abort_then_resume_at_5(dir);
  fs::remove_all(dir);
}

// Rank 1 stops calling collectives with its own watchdog disarmed: only rank 0, waiting inside
// the step's all-reduce, can notice. Its watchdog must abort the job (exit 86) and the restart
// resume from the checkpoint.
TEST(FaultTolerance, RankThatStopsCallingCollectivesIsCaughtByTheOthersWatchdog) {
  const fs::path dir = fresh_dir("collective");
  const auto r = launch("--max-restarts 1", dir, 20,
                        "--checkpoint-every 5 --step-timeout 4 --fail-at-step 8 --fail-rank 1 --fail-mode collective");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("rank 1 stops calling collectives at step 8"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("adaspan: rank 0: training step at step 8 made no progress"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("adaspan: rank 1: training step"), std::string::npos) << "rank 1's own watchdog fired";
  expect_watchdog_abort_then_resume_at_5(dir);
  EXPECT_EQ(lines(dir / "attempts.jsonl").back()["cause"], "finished");
  fs::remove_all(dir);
}

TEST(FaultTolerance, SignalOnOneRankCheckpointsEveryRankAndExitsPreempted) {
  const fs::path dir = fresh_dir("signal");
  const auto r = run_adaspan(
      kTrain + " --steps 20 --run-dir " + dir.string() + " --fail-at-step 6 --fail-rank 1 --fail-mode signal", 2);
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_TRUE(fs::exists(dir / "ckpt-6.h5"));  // no --checkpoint-every: the signal asked for it
  const Outcome stopped = outcome(dir);
  EXPECT_EQ(count_events(stopped, "preempted"), 1);
  EXPECT_EQ(count_events(stopped, "done"), 0);
  // The requeued job continues where it stopped and ends as if never interrupted.
  const auto resumed =
      run_adaspan(kTrain + " --steps 20 --run-dir " + dir.string() + " --resume auto", 2, "ADASPAN_ATTEMPT=2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  expect_resumed_once_at(dir, 6);
  const Outcome o = outcome(dir);
  EXPECT_EQ(o.bpc, reference_run().bpc);
  EXPECT_EQ(o.param_norm, reference_run().param_norm);
  fs::remove_all(dir);
}

TEST(FaultTolerance, LaunchPassesPreemptionOnWithoutRestarting) {
  const fs::path dir = fresh_dir("preempt_launch");
  const auto r = launch("--max-restarts 3", dir, 20, "--fail-at-step 4 --fail-rank 0 --fail-mode signal");
  EXPECT_EQ(r.exit_code, 75) << r.err;
  EXPECT_EQ(lines(dir / "attempts.jsonl").size(), 1u);
  fs::remove_all(dir);
}

TEST(FaultTolerance, NanStepsAreSkippedAndRepeatedOnesRollBack) {
  const fs::path once = fresh_dir("nan_once");
  auto r = run_adaspan(
      kTrain + " --steps 10 --run-dir " + once.string() + " --fail-at-step 7 --fail-rank 1 --fail-mode nan", 2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Outcome o = outcome(once);
  EXPECT_EQ(count_events(o, "skipped_step"), 1);
  EXPECT_EQ(count_events(o, "rollback"), 0);
  ASSERT_EQ(o.bpc.count(10), 1u);
  EXPECT_TRUE(std::isfinite(o.bpc[10]));
  EXPECT_TRUE(std::isfinite(o.param_norm));

  const fs::path repeated = fresh_dir("nan_repeated");
  r = run_adaspan(
      kTrain + " --steps 14 --run-dir " + repeated.string() +
          " --checkpoint-every 5 --max-bad-steps 2 --fail-at-step 7 --fail-count 3 --fail-rank 0 --fail-mode nan",
      2);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  o = outcome(repeated);
  EXPECT_EQ(count_events(o, "skipped_step"), 3);
  ASSERT_EQ(count_events(o, "rollback"), 1);
  for (const auto& e : o.events) {
    if (e["event"] == "rollback") {
      EXPECT_EQ(e["step"], 9);
      EXPECT_EQ(e["to_step"], 5);
      EXPECT_EQ(e["lr_scale"], 0.5);
    }
  }
  EXPECT_TRUE(std::isfinite(o.param_norm));
  EXPECT_EQ(o.events.back()["event"], "done");
  fs::remove_all(once);
  fs::remove_all(repeated);
}

TEST(FaultTolerance, LauncherGivesUpAfterMaxRestartsWithASummary) {
  const fs::path dir = fresh_dir("give_up");
  // A watchdog timeout shorter than any step fails every attempt the same way (exit 86).
  const auto r = launch("--max-restarts 2", dir, 4, "--step-timeout 0.0001");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("giving up after 3 attempts"), std::string::npos) << r.err;
  const auto attempts = lines(dir / "attempts.jsonl");
  ASSERT_EQ(attempts.size(), 3u);
  for (const auto& a : attempts) EXPECT_NE(a["exit_code"], 0) << a.dump();
  fs::remove_all(dir);
}

// SIGTERM to the launcher while it waits to restart (no attempt running to forward it to): it
// starts no further attempt and exits 75 at once, for the batch script to requeue.
TEST(FaultTolerance, ASignalDuringTheBackoffStopsTheLauncher) {
  const fs::path dir = fresh_dir("backoff_signal");
  const std::string train = std::string(ADASPAN_BINARY) + kTrain + " --steps 20 --run-dir " + dir.string() +
                            " --checkpoint-every 5 --fail-at-step 7 --fail-mode crash";
  const fs::path status = dir.string() + ".status", err = dir.string() + ".err";
  const std::string script = "(" + std::string(ADASPAN_BINARY) + " launch --backoff 60 --max-restarts 3 -- " + train +
                             " 2> " + err.string() + " & pid=$!; for i in $(seq 600); do [ -s " +
                             (dir / "attempts.jsonl").string() + " ] && break; sleep 0.1; done; sleep 0.5; " +
                             "kill -TERM $pid; wait $pid; echo $? > " + status.string() + ")";
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(std::system(("timeout 120 bash -c '" + script + "'").c_str()), 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const std::string err_text = testing::slurp(err);
  EXPECT_EQ(std::stoi(testing::slurp(status)), 75) << err_text;
  EXPECT_LT(seconds, 40) << "the launcher slept through the signal";
  EXPECT_NE(err_text.find("stopped by signal 15 during the back-off"), std::string::npos) << err_text;
  EXPECT_EQ(lines(dir / "attempts.jsonl").size(), 1u);
  fs::remove_all(dir);
  fs::remove(status);
  fs::remove(err);
}

TEST(FaultTolerance, LauncherDoesNotRestartARefusedCommand) {
  const fs::path dir = fresh_dir("refused");
  // Bad usage (exit 2) would be refused again: one attempt, its status passed on.
  const auto r = launch("--max-restarts 2", dir, 4, "--data " + (dir / "missing.txt").string());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("not restarting"), std::string::npos) << r.err;
  EXPECT_EQ(lines(dir / "attempts.jsonl").size(), 1u);
  fs::remove_all(dir);
}

TEST(Supervisor, RestartsResumeAutomaticallyAndFindTheRunDir) {
  const std::vector<std::string> command{"mpirun",   "-np",  "2",         "adaspan", "train",
                                         "--resume", "x.h5", "--run-dir", "r"};
  EXPECT_EQ(launcher::attempt_command(command, 1), command);
  const std::vector<std::string> second{"mpirun", "-np", "2", "adaspan", "train", "--run-dir", "r", "--resume", "auto"};
  EXPECT_EQ(launcher::attempt_command(command, 2), second);
  EXPECT_EQ(launcher::run_dir_of(command), "r");
  EXPECT_EQ(launcher::run_dir_of({"adaspan", "train", "--run-dir=q"}), "q");
  EXPECT_EQ(launcher::run_dir_of({"adaspan", "train"}), "runs/latest");
}

}  // namespace
}  // namespace adaspan
