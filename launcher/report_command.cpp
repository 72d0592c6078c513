// adaspan report RUN_DIR [--tensorboard [--tensorboard-dir DIR] [--follow]]: runs the report script
// (scripts/report.py: matplotlib + h5py; torch's SummaryWriter for the TensorBoard events), found
// next to an installed binary (../share/adaspan/report.py), else in the source tree it was built
// from; ADASPAN_REPORT_SCRIPT overrides both. The options are passed on as the script's own.
#include "launcher/command_line.h"
#include "launcher/inference_commands.h"
#include "launcher/python_script.h"

namespace adaspan::launcher {
namespace {

struct ReportConfig {
  std::string run_dir;
  bool tensorboard = false;
  std::string tensorboard_dir;  // empty: RUN_DIR/tensorboard (the script's default)
  bool follow = false;
};

const trainer::OptionTable<ReportConfig>& report_options() {
  static const trainer::OptionTable<ReportConfig> table = {
      trainer::value<ReportConfig>("run-dir", FIELD(run_dir), "The run's directory.").check([](const ReportConfig& c) {
        if (c.run_dir.empty()) throw std::invalid_argument("name the run directory: adaspan report RUN_DIR");
      }),
      trainer::value<ReportConfig>("tensorboard", FIELD(tensorboard),
                                   "Also write TensorBoard event files (scalars, span histograms, the heatmap) to "
                                   "RUN_DIR/tensorboard, replacing those an earlier report wrote there."),
      trainer::value<ReportConfig>("tensorboard-dir", FIELD(tensorboard_dir),
                                   "Where the TensorBoard event files go (implies --tensorboard; default "
                                   "RUN_DIR/tensorboard)."),
      trainer::value<ReportConfig>("follow", FIELD(follow),
                                   "With --tensorboard: keep appending the records metrics.jsonl gains (read every 2 "
                                   "s) until the run's done record or SIGINT/SIGTERM (exit 0), then write the report.")
          .check([](const ReportConfig& c) {
            if (c.follow && !c.tensorboard && c.tensorboard_dir.empty())
              throw std::invalid_argument("--follow needs --tensorboard");
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
      "plotted series. Needs python3 with matplotlib and h5py (scripts/setup.sh installs them).\n"
      "--tensorboard: TensorBoard event files too (RUN_DIR/tensorboard); --follow appends while the run trains.",
      {},
      false,
      {"run-dir"}};
  int exit_code = 0;
  const std::optional<ReportConfig> c = parse_or_exit(line, report_options(), args, exit_code);
  if (!c) return exit_code;
  // Options first, then `--`: a run dir or a --tensorboard-dir starting with '-' stays a value.
  std::vector<std::string> words;
  if (c->tensorboard) words.push_back("--tensorboard");
  if (!c->tensorboard_dir.empty()) words.push_back("--tensorboard-dir=" + c->tensorboard_dir);
  if (c->follow) words.push_back("--follow");
  words.push_back("--");
  words.push_back(c->run_dir);
  const char* override_variable = "ADASPAN_REPORT_SCRIPT";
  return exec_python("report", bundled_script("report.py", ADASPAN_SOURCE_REPORT_SCRIPT, override_variable), words,
                     override_variable);
}

}  // namespace adaspan::launcher
