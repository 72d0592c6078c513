// adaspan: train, evaluate and inspect adaptive-span transformers. `adaspan --help` lists the
// subcommands; `adaspan SUBCOMMAND --help` explains each flag.
#include "cluster/grid.h"
#include "cluster/heap_policy.h"
#include "cluster/nccl_process_group.h"
#include "cluster/world.h"
#include "launcher/inference_commands.h"
#include "launcher/prepare_command.h"
#include "launcher/supervisor.h"
#include "cluster/stop_signals.h"
#include "launcher/train_options.h"
#include "trainer/trainer.h"

#include <ATen/core/Tensor.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <cstring>
#include <iostream>
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
    "  report    plots of a run (bpc, throughput, span heatmap and trajectories) in RUN_DIR/report.html\n"
    "  launch    run a training command, restarting it from its newest checkpoint when it fails\n"
    "  prepare   write a standard corpus (enwik8, builtin) as train/valid(/test) byte files\n"
    "\n"
    "`adaspan <command> --help` lists the command's options.\n";

int run_train(const std::vector<std::string>& args, const adaspan::cluster::World& world) {
  adaspan::launcher::ParsedTrain parsed;
  std::string error;
  try {
    parsed = adaspan::launcher::parse_train_options(args);
    if (!parsed.help) {
      adaspan::trainer::validate(parsed.config);
      const std::string grid_error =
          adaspan::cluster::check_grid({world.size(), parsed.config.run.tp}, parsed.config.data.batch_size);
      if (!grid_error.empty()) throw std::invalid_argument(grid_error);
      const int64_t per_rank = parsed.config.data.batch_size / std::max(1, world.size() / parsed.config.run.tp);
      if (per_rank % parsed.config.optim.grad_accum != 0) {
        throw std::invalid_argument("--grad-accum " + std::to_string(parsed.config.optim.grad_accum) +
                                    " does not divide the " + std::to_string(per_rank) +
                                    " streams of each rank (--batch-size / data-parallel ranks)");
      }
      if (parsed.config.run.dp_backend == "nccl" && !adaspan::cluster::nccl_available()) {
        throw std::invalid_argument("--dp-backend nccl: this build has no NCCL backend (LibTorch without CUDA)");
      }
      if (parsed.config.run.dp_backend == "nccl" && parsed.config.run.device.rfind("cuda", 0) != 0) {
        throw std::invalid_argument("--dp-backend nccl needs --device cuda");
      }
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  // Ranks agree before going on: a file or GPU one node lacks must stop every rank, not leave the
  // others waiting in a collective. One line, from the lowest failing rank.
  const int failing = world.size() > 1 ? world.first_failing_rank(error.empty()) : (error.empty() ? -1 : 0);
  if (failing >= 0) {
    if (world.rank() == failing) {
      if (world.size() > 1 && failing != 0) {
        std::fprintf(stderr, "adaspan train: error on rank %d: %s\n", failing, error.c_str());
      } else {
        std::fprintf(stderr, "adaspan train: error: %s\n", error.c_str());
      }
    }
    return 2;
  }
  if (parsed.help) {
    if (world.is_root()) std::cout << parsed.help_text << "\n";
    return 0;
  }
  adaspan::trainer::TrainConfig& config = parsed.config;
  if (config.run.device == "cuda") {
    // The GPU of this local rank; ranks share GPUs round-robin when there are more ranks than GPUs
    // (works with --dp-backend mpi; NCCL refuses two ranks on one GPU).
    const int gpus = std::max(1, at::detail::getCUDAHooks().getNumGPUs());
    config.run.device = "cuda:" + std::to_string(world.local_rank() % gpus);
  }
  try {
    adaspan::cluster::Grid grid(MPI_COMM_WORLD, config.run.tp);
    adaspan::trainer::DataParallel dp;
    adaspan::cluster::MpiProcessGroup world_group(MPI_COMM_WORLD);
    dp.group = &grid.dp_group();
    dp.control = &world_group;
    dp.world_rank = world.rank();
    if (grid.tp_size() > 1) dp.tp = {&grid.tp_group(), grid.tp_rank(), grid.tp_size()};
    dp.comm = MPI_COMM_WORLD;  // checkpoints: every rank writes its part
    std::unique_ptr<adaspan::model::ProcessGroup> nccl;
    const bool on_gpu = config.run.device.rfind("cuda", 0) == 0;
    // auto: NCCL when every rank on the node has a GPU of its own (NCCL refuses to share one).
    const int gpus = std::max(1, at::detail::getCUDAHooks().getNumGPUs());
    if (on_gpu && (config.run.dp_backend == "nccl" ||
                   (config.run.dp_backend == "auto" && adaspan::cluster::nccl_available() && grid.dp_size() > 1 &&
                    world.local_size() <= gpus))) {
      try {
        nccl = adaspan::cluster::make_nccl_process_group(grid.dp_comm(), at::Device(config.run.device).index());
      } catch (const std::exception& e) {
        throw std::runtime_error(std::string(e.what()) +
                                 " (NCCL needs one GPU per rank; with more ranks than GPUs use --dp-backend mpi)");
      }
      dp.group = nccl.get();
    }
    dp.rank = grid.dp_rank();
    dp.size = grid.dp_size();
    dp.ranks_on_node = world.local_size();
    dp.mpi_thread_multiple = world.multiple_threads();
    if (nccl) dp.abort_collectives = [group = nccl.get()] { group->abort_in_flight(); };
    adaspan::cluster::install_stop_signals();
    if (!nccl && on_gpu && !world.serialized_threads() && config.run.overlap) {
      // Hooks would call MPI from autograd's CUDA threads, which this MPI does not allow.
      if (world.is_root()) std::fprintf(stderr, "adaspan train: note: MPI lacks MPI_THREAD_SERIALIZED; reducing gradients after backward\n");
      config.run.overlap = false;
    }
    const adaspan::trainer::TrainResult result = adaspan::trainer::train(config, dp);
    if (result.preempted) {
      if (world.is_root()) {
        std::printf("stopped on signal %d after step %lld with a checkpoint; resume with --resume auto\n",
                    result.stop_signal, static_cast<long long>(result.steps));
      }
      return adaspan::trainer::kExitPreempted;
    }
    if (world.is_root()) {
      std::printf("done: %lld steps on %d ranks, train bpc %.4f, param_norm %.6f\nlearned spans (bytes):\n",
                  static_cast<long long>(result.steps), world.size(), result.final_train_bpc, result.param_norm);
      for (size_t l = 0; l < result.spans.size(); ++l) {
        std::printf("  layer %zu:", l);
        for (double z : result.spans[l]) std::printf(" %7.1f", z);
        std::printf("\n");
      }
    }
  } catch (const std::exception& e) {
    if (world.size() == 1) {
      std::fprintf(stderr, "adaspan train: error: %s\n", e.what());
      return 1;
    }
    std::fprintf(stderr, "adaspan train: error on rank %d: %s\n", world.rank(), e.what());
    std::fflush(stderr);
    world.abort(1);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  adaspan::cluster::keep_large_blocks_in_heap();
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
  if (command == "eval") {
    adaspan::cluster::World world(&argc, &argv);
    return adaspan::launcher::run_eval(args, world);
  }
  if (command == "train") {
    const bool async = std::find(args.begin(), args.end(), "--async-checkpoint") != args.end();
    adaspan::cluster::World world(&argc, &argv, async);
    return run_train(args, world);
  }
  std::fprintf(stderr, "adaspan: error: unknown command '%s'\n%s", command.c_str(), kUsage);
  return 2;
}
