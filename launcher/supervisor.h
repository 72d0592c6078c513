#pragma once
// `adaspan launch`: runs a training command (mpirun/srun ... adaspan train ...) and, when it
// fails (non-zero exit, a killed rank, a watchdog abort), runs it again with `--resume auto`, up
// to --max-restarts times, waiting --backoff seconds (doubling each time) in between. Each attempt
// and its cause is a line of RUN_DIR/attempts.jsonl (RUN_DIR: the command's --run-dir). A
// preempted run (exit 75: it checkpointed on a signal) is not restarted here: the exit status is
// passed on, so the batch script can requeue the job.
#include <string>
#include <vector>

namespace adaspan::launcher {

struct LaunchOptions {
  int max_restarts = 3;
  double backoff_s = 10;
  std::vector<std::string> command;  // program and arguments
};

// The command line of attempt `attempt` (1-based): from the second on, --resume auto (and no --fresh).
std::vector<std::string> attempt_command(const std::vector<std::string>& command, int attempt);
// The value of --run-dir in the command (runs/latest when absent, as train's default).
std::string run_dir_of(const std::vector<std::string>& command);

// Returns the exit status for the launcher: 0 when an attempt succeeded, 75 when preempted, 2 when
// the command was refused as bad usage (not restarted), else 1.
int supervise(const LaunchOptions& options);

int run_launch(const std::vector<std::string>& args);

}  // namespace adaspan::launcher
