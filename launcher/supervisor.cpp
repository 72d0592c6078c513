#include "launcher/supervisor.h"

#include "checkpointing/run_directory.h"
#include "launcher/command_line.h"

#include "trainer/trainer.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <thread>

namespace adaspan::launcher {
namespace {

namespace fs = std::filesystem;

volatile sig_atomic_t g_child = 0;
volatile sig_atomic_t g_stop = 0;  // a stop signal the launcher received (0: none)

// Signals for the job (Slurm's warning, scancel, Ctrl-C) go to the running attempt; one that
// arrives between attempts (the back-off) is remembered, and no attempt starts after it.
extern "C" void forward_signal(int sig) {
  g_stop = sig;
  if (g_child > 0) ::kill(static_cast<pid_t>(g_child), sig);
}

const int kStopSignals[] = {SIGUSR1, SIGTERM, SIGINT};

sigset_t stop_signal_set() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : kStopSignals) sigaddset(&set, sig);
  return set;
}

std::string now_iso() {
  const std::time_t t = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return text;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

struct AttemptResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;
  double seconds = 0;
  std::string cause;
};

AttemptResult run_attempt(const std::vector<std::string>& command, int attempt) {
  AttemptResult r;
  const auto start = std::chrono::steady_clock::now();
  // Stop signals wait (blocked) until the child's pid is known, so none falls between fork and
  // g_child; the child takes the default actions back before exec (the trainer installs its own).
  const sigset_t stops = stop_signal_set();
  sigset_t previous;
  sigprocmask(SIG_BLOCK, &stops, &previous);
  const pid_t pid = ::fork();
  if (pid < 0) {
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    r.cause = std::string("fork failed: ") + std::strerror(errno);
    return r;
  }
  if (pid == 0) {
    for (int sig : kStopSignals) std::signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    ::setenv("ADASPAN_ATTEMPT", std::to_string(attempt).c_str(), 1);
    std::vector<char*> argv;
    for (const auto& word : command) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "adaspan launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
    ::_exit(127);
  }
  g_child = pid;
  if (g_stop) ::kill(pid, g_stop);  // received before this attempt started: it is told at once
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  g_child = 0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
    if (r.exit_code == 0)
      r.cause = "finished";
    else if (r.exit_code == trainer::kExitPreempted)
      r.cause = "preempted (checkpointed on a signal)";
    else if (r.exit_code == trainer::kExitWatchdog)
      r.cause = "watchdog: a step or collective hung";
    else if (r.exit_code == trainer::kExitCheckpointUnwritable)
      r.cause = "checkpoint not written (run dir full or read-only)";
    else if (r.exit_code == 127)
      r.cause = "command not found";
    else
      r.cause = "exit status " + std::to_string(r.exit_code);
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
    r.cause = std::string("killed by signal ") + std::to_string(r.signal) + " (" + strsignal(r.signal) + ")";
  }
  return r;
}

}  // namespace

std::vector<std::string> attempt_command(const std::vector<std::string>& command, int attempt) {
  std::vector<std::string> out;
  if (attempt <= 1) {
    std::copy_if(command.begin(), command.end(), std::back_inserter(out), [](const auto& a) { return a != "--fresh"; });
    return out;
  }
  for (size_t i = 0; i < command.size(); ++i) {
    if (command[i] == "--resume" && i + 1 < command.size()) {
      ++i;  // replaced below
      continue;
    }
    if (command[i].rfind("--resume=", 0) == 0) continue;
    if (command[i] == "--fresh") continue;  // done by the launcher once, before the first attempt
    out.push_back(command[i]);
  }
  out.push_back("--resume");
  out.push_back("auto");
  return out;
}

std::string run_dir_of(const std::vector<std::string>& command) {
  std::string dir = trainer::TrainConfig{}.run.run_dir;  // train's default
  for (size_t i = 0; i < command.size(); ++i) {
    if (command[i] == "--run-dir" && i + 1 < command.size()) dir = command[i + 1];
    if (command[i].rfind("--run-dir=", 0) == 0) dir = command[i].substr(10);
  }
  return dir;
}

// `adaspan train` refused its command line or run dir: the same command would fail the same way.
constexpr int kExitUsage = 2;

// --fresh in the command: the earlier run's files move aside once, here, so that no attempt (a
// restart resumes with --resume auto) can continue the earlier run. Returns false (with the
// reason printed) when the run dir is in use.
bool start_fresh(const std::string& run_dir) {
  try {
    const checkpointing::RunDirLock lock(run_dir);
    if (checkpointing::earlier_run_files(run_dir).empty() && !fs::exists(fs::path(run_dir) / "attempts.jsonl")) {
      return true;
    }
    const std::string aside = checkpointing::move_earlier_run_aside(run_dir, true);
    std::fprintf(stderr, "adaspan launch: --fresh: the earlier run's files moved to %s\n", aside.c_str());
    return true;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "adaspan launch: error: %s\n", e.what());
    return false;
  }
}

// A stop signal reached the launcher: the job is being preempted or cancelled, so no further
// attempt; 75 tells the batch script to requeue (the next job resumes from the newest checkpoint).
int stopped_by_signal(const char* when) {
  std::fprintf(stderr, "adaspan launch: stopped by signal %d %s; resume with --resume auto\n", static_cast<int>(g_stop),
               when);
  return trainer::kExitPreempted;
}

int supervise(const LaunchOptions& o) {
  const std::string run_dir = run_dir_of(o.command);
  std::error_code ec;
  fs::create_directories(run_dir, ec);
  const bool fresh = std::find(o.command.begin(), o.command.end(), "--fresh") != o.command.end();
  if (fresh && !start_fresh(run_dir)) return kExitUsage;
  const fs::path log_path = fs::path(run_dir) / "attempts.jsonl";
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : kStopSignals) sigaction(sig, &action, nullptr);

  std::vector<std::string> summary;
  for (int attempt = 1;; ++attempt) {
    const std::vector<std::string> command = attempt_command(o.command, attempt);
    std::fprintf(stderr, "adaspan launch: attempt %d: %s\n", attempt, joined(command).c_str());
    const std::string started = now_iso();
    const AttemptResult r = run_attempt(command, attempt);
    nlohmann::json record = {{"attempt", attempt},
                             {"started", started},
                             {"seconds", r.seconds},
                             {"cause", r.cause},
                             {"command", joined(command)}};
    record["exit_code"] = r.exit_code >= 0 ? nlohmann::json(r.exit_code) : nlohmann::json(nullptr);
    record["signal"] = r.signal ? nlohmann::json(r.signal) : nlohmann::json(nullptr);
    std::ofstream(log_path, std::ios::app) << record.dump() << "\n";
    char line[256];
    std::snprintf(line, sizeof(line), "attempt %d: %s after %.1f s", attempt, r.cause.c_str(), r.seconds);
    summary.emplace_back(line);
    std::fprintf(stderr, "adaspan launch: %s\n", line);

    if (r.exit_code == 0) return 0;
    if (r.exit_code == trainer::kExitPreempted) return trainer::kExitPreempted;
    if (r.exit_code == trainer::kExitCheckpointUnwritable) {
      std::fprintf(stderr,
                   "adaspan launch: the run dir took no checkpoint (exit 74: full or read-only); not "
                   "restarting it: free space, then run again (it resumes from the last checkpoint)\n");
      return trainer::kExitCheckpointUnwritable;
    }
    if (r.exit_code == kExitUsage) {
      std::fprintf(stderr, "adaspan launch: the command was refused (bad usage, exit 2); not restarting it\n");
      return kExitUsage;
    }
    if (g_stop) return stopped_by_signal("the attempt ended after it");
    if (attempt > o.max_restarts) {
      std::fprintf(stderr, "adaspan launch: giving up after %d attempts (--max-restarts %d):\n", attempt,
                   o.max_restarts);
      for (const auto& s : summary) std::fprintf(stderr, "  %s\n", s.c_str());
      std::fprintf(stderr, "  (details in %s)\n", log_path.c_str());
      return 1;
    }
    const double wait = std::min(600.0, o.backoff_s * std::pow(2.0, attempt - 1));
    if (wait > 0) std::fprintf(stderr, "adaspan launch: restarting with --resume auto in %.0f s\n", wait);
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait);
    while (!g_stop && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (g_stop) return stopped_by_signal("during the back-off; no attempt started after it");
  }
}

namespace {

const trainer::OptionTable<LaunchOptions>& launch_options() {
  using trainer::value;
  static const trainer::OptionTable<LaunchOptions> table = {
      value<LaunchOptions>("max-restarts", FIELD(max_restarts),
                           "Restarts after the first attempt; then give up with a summary of the attempts.")
          .at_least(0),
      value<LaunchOptions>("backoff", FIELD(backoff_s),
                           "Seconds before the first restart, doubling for each further one (at most 600).")
          .at_least(0),
  };
  return table;
}

const char* kLaunchSummary =
    "adaspan launch [options] -- COMMAND...: run a training command and restart it from its newest checkpoint\n"
    "when it fails.\n\n"
    "  adaspan launch --max-restarts 5 -- mpirun -np 8 build/adaspan train --checkpoint-every 500 --run-dir runs/x "
    "...\n\n"
    "Attempt 2 onwards runs COMMAND with --resume auto (replacing any --resume). Each attempt is logged to\n"
    "RUN_DIR/attempts.jsonl (RUN_DIR from COMMAND's --run-dir). Exit: 0 when an attempt finished; 75 when it\n"
    "was preempted (it checkpointed on SIGUSR1/SIGTERM; requeue the job); 2 when COMMAND was refused as bad\n"
    "usage (not restarted: it would be refused again); 74 when the run dir took no checkpoint (full or\n"
    "read-only; not restarted); 1 when every attempt failed.\n"
    "SIGUSR1, SIGTERM and SIGINT received by launch are passed to the running attempt; after one, or when one\n"
    "arrives during the back-off, no further attempt starts and launch exits 75.";

// Empty when `program` can be executed as execvp would find it, else why not: a command that
// cannot run is bad usage, refused before any run dir or attempt log is made.
std::string unrunnable(const std::string& program) {
  const auto runnable = [](const std::string& path) { return ::access(path.c_str(), X_OK) == 0; };
  if (program.find('/') != std::string::npos) {
    if (runnable(program)) return "";
    return "cannot run '" + program + "': " + std::strerror(errno);
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (runnable((dir.empty() ? "." : dir) + "/" + program)) return "";
  }
  return "cannot run '" + program + "': not found on PATH";
}

}  // namespace

int run_launch(const std::vector<std::string>& args) {
  // launch's own flags come before `--`, the supervised command after it.
  const auto separator = std::find(args.begin(), args.end(), "--");
  const std::vector<std::string> own(args.begin(), separator);
  const CommandLine line{"launch", kLaunchSummary};
  ParsedCommand<LaunchOptions> parsed = parse_command(line, launch_options(), own);
  if (separator != args.end()) parsed.config.command.assign(separator + 1, args.end());
  if (parsed.error.empty() && !parsed.help && parsed.config.command.empty()) {
    parsed.error = "give the command after --, e.g. adaspan launch -- mpirun -np 2 adaspan train ...";
  }
  if (parsed.error.empty() && !parsed.help) parsed.error = unrunnable(parsed.config.command.front());
  int exit_code = 0;
  const std::optional<LaunchOptions> o = exit_on_help_or_error(line, parsed, exit_code);
  return o ? supervise(*o) : exit_code;
}

}  // namespace adaspan::launcher
