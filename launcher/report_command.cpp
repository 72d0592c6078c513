// adaspan report RUN_DIR: runs the report script (scripts/report.py: matplotlib + h5py), found
// next to an installed binary (../share/adaspan/report.py), else in the source tree it was built
// from; ADASPAN_REPORT_SCRIPT overrides both.
#include "launcher/command_line.h"
#include "launcher/inference_commands.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace adaspan::launcher {
namespace {

namespace fs = std::filesystem;

std::string report_script() {
  if (const char* path = std::getenv("ADASPAN_REPORT_SCRIPT")) return path;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = self.parent_path() / ".." / "share" / "adaspan" / "report.py";
    if (fs::exists(installed)) return installed.string();
  }
  return ADASPAN_SOURCE_REPORT_SCRIPT;
}

struct ReportConfig {
  std::string run_dir;
};

const trainer::OptionTable<ReportConfig>& report_options() {
  static const trainer::OptionTable<ReportConfig> table = {
      trainer::value<ReportConfig>("run-dir", FIELD(run_dir), "The run's directory.").check([](const ReportConfig& c) {
        if (c.run_dir.empty()) throw std::invalid_argument("name the run directory: adaspan report RUN_DIR");
      }),
  };
  return table;
}

}  // namespace

int run_report(const std::vector<std::string>& args) {
  const CommandLine line{
      "report",
      "adaspan report RUN_DIR: writes RUN_DIR/report.html (self-contained) and PNGs: bits per byte (train,\n"
      "validation), tokens/s, a layer x head heatmap of the learned spans (from the newest checkpoint, else the\n"
      "last metrics record), span trajectories, per-rank memory and step time; RUN_DIR/report.json holds the\n"
      "plotted series. Needs python3 with matplotlib and h5py (scripts/setup.sh installs them).",
      {},
      false,
      {"run-dir"}};
  int exit_code = 0;
  const std::optional<ReportConfig> c = parse_or_exit(line, report_options(), args, exit_code);
  if (!c) return exit_code;
  const std::string script = report_script();
  if (!fs::exists(script)) {
    std::fprintf(stderr, "adaspan report: error: report script not found (%s); set ADASPAN_REPORT_SCRIPT\n",
                 script.c_str());
    return 1;
  }
  std::vector<char*> argv{const_cast<char*>("python3"), const_cast<char*>(script.c_str()),
                          const_cast<char*>(c->run_dir.c_str()), nullptr};
  ::execvp("python3", argv.data());
  std::fprintf(stderr, "adaspan report: error: cannot run python3: %s\n", std::strerror(errno));
  return 1;
}

}  // namespace adaspan::launcher
