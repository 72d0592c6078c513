// adaspan report RUN_DIR: runs the report script (scripts/report.py: matplotlib + h5py), found
// next to an installed binary (../share/adaspan/report.py), else in the source tree it was built
// from; ADASPAN_REPORT_SCRIPT overrides both.
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

}  // namespace

int run_report(const std::vector<std::string>& args) {
  if (args.size() != 1 || args[0] == "--help" || args[0] == "-h") {
    std::printf(
        "adaspan report RUN_DIR: writes RUN_DIR/report.html (self-contained) and PNGs: bits per byte (train,\n"
        "validation), tokens/s, a layer x head heatmap of the learned spans (from the newest checkpoint, else the\n"
        "last metrics record), span trajectories, per-rank memory and step time; RUN_DIR/report.json holds the\n"
        "plotted series. Needs python3 with matplotlib and h5py (scripts/setup.sh installs them).\n");
    return args.size() == 1 ? 0 : 2;
  }
  const std::string script = report_script();
  if (!fs::exists(script)) {
    std::fprintf(stderr, "adaspan report: error: report script not found (%s); set ADASPAN_REPORT_SCRIPT\n", script.c_str());
    return 1;
  }
  std::vector<char*> argv{const_cast<char*>("python3"), const_cast<char*>(script.c_str()),
                          const_cast<char*>(args[0].c_str()), nullptr};
  ::execvp("python3", argv.data());
  std::fprintf(stderr, "adaspan report: error: cannot run python3: %s\n", std::strerror(errno));
  return 1;
}

}  // namespace adaspan::launcher
