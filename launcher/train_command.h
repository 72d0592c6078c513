#pragma once
// `adaspan train`: parse the flags (and a --config file), start MPI at the thread level they need,
// agree on errors across ranks, build the process groups, train, report.
#include <string>
#include <vector>

namespace adaspan::launcher {

// argc/argv: the process's, for MPI_Init; args: the flags after `train`. Returns the exit code
// (0 done, 1 error, 2 bad usage, 75 preempted after a checkpoint).
int run_train(int* argc, char*** argv, const std::vector<std::string>& args);

}  // namespace adaspan::launcher
