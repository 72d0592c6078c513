// adaspan: train, evaluate and inspect adaptive-span transformers. `adaspan --help` lists the
// subcommands; `adaspan SUBCOMMAND --help` explains each flag.
#include "cluster/bus_error.h"
#include "cluster/heap_policy.h"
#include "cluster/world.h"
#include "launcher/inference_commands.h"
#include "launcher/prepare_command.h"
#include "launcher/supervisor.h"
#include "launcher/train_command.h"

#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr const char* kUsage =
    "usage: adaspan <command> [options]\n"
    "\n"
    "commands:\n"
    "  train     train a model (mpirun -np N adaspan train ... for several ranks)\n"
    "  eval      bits per byte of a checkpoint over whole files (any number of ranks)\n"
    "  generate  sample bytes from a checkpoint\n"
    "  inspect   show a checkpoint's config, step, learned spans and sizes\n"
    "  report    plots of a run (bpc, throughput, span heatmap and trajectories) in RUN_DIR/report.html;\n"
    "            --tensorboard writes TensorBoard event files (--follow: while it trains)\n"
    "  import    bring a checkpoint of the reference (facebookresearch/adaptive-span) in as a run\n"
    "  export    write a checkpoint as the reference's main.py --checkpoint file\n"
    "  launch    run a training command, restarting it from its newest checkpoint when it fails\n"
    "  prepare   write a standard corpus (enwik8, builtin) as train/valid(/test) byte files\n"
    "\n"
    "`adaspan <command> --help` lists the command's options. In Python (torch, h5py), a checkpoint as an\n"
    "nn.Module: python/adaspan_torch.py (adaspan_torch.load(\"runs/x/ckpt-N.h5\")).\n";

}  // namespace

int main(int argc, char** argv) {
  adaspan::cluster::keep_large_blocks_in_heap();
  // A file-size limit (ulimit -f, some quotas) then fails a write with EFBIG instead of killing
  // the process: a checkpoint that cannot be written is one error line, the previous one intact.
  std::signal(SIGXFSZ, SIG_IGN);
  adaspan::cluster::report_bus_errors();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  if (command == "prepare") return adaspan::launcher::run_prepare(args);
  if (command == "launch") return adaspan::launcher::run_launch(args);
  if (command == "generate") return adaspan::launcher::run_generate(args);
  if (command == "inspect") return adaspan::launcher::run_inspect(args);
  if (command == "report") return adaspan::launcher::run_report(args);
  if (command == "import") return adaspan::launcher::run_import(args);
  if (command == "export") return adaspan::launcher::run_export(args);
  if (command == "eval") {
    adaspan::cluster::World world(&argc, &argv);
    return adaspan::launcher::run_eval(args, world);
  }
  if (command == "train") return adaspan::launcher::run_train(&argc, &argv, args);
  std::fprintf(stderr,
               "adaspan: error: unknown command '%s' (train, eval, generate, inspect, report, import, export, launch, "
               "prepare; adaspan "
               "--help)\n",
               command.c_str());
  return 2;
}
