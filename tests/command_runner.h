#pragma once
// Runs the adaspan binary (directly or under mpirun) the way a user would, capturing its exit
// code, stdout and stderr. ADASPAN_BINARY / ADASPAN_MPIEXEC come from CMake.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace adaspan::testing {

struct CommandResult {
  int exit_code = -1;  // 124: timed out
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), {}};
}

// `env` is prefixed (e.g. "VAR=1"); `ranks` 0 = no mpirun.
inline CommandResult run_adaspan(const std::string& args, int ranks = 0, const std::string& env = "",
                                 int timeout_s = 180) {
  namespace fs = std::filesystem;
  static int counter = 0;
  const fs::path base =
      fs::temp_directory_path() / ("adaspan_cmd_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
  std::string launcher;
  if (ranks > 0) {
    launcher = std::string(ADASPAN_MPIEXEC) + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " ";
  }
  const std::string command = env + " timeout " + std::to_string(timeout_s) + " " + launcher + ADASPAN_BINARY + " " +
                              args + " > " + base.string() + ".out 2> " + base.string() + ".err";
  const int status = std::system(command.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(base.string() + ".out");
  r.err = slurp(base.string() + ".err");
  fs::remove(base.string() + ".out");
  fs::remove(base.string() + ".err");
  return r;
}

}  // namespace adaspan::testing
