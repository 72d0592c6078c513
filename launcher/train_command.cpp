#include "launcher/train_command.h"

#include "cluster/grid.h"
#include "cluster/nccl_process_group.h"
#include "cluster/stop_signals.h"
#include "cluster/training_groups.h"
#include "cluster/world.h"
#include "launcher/command_line.h"
#include "trainer/train_option_table.h"
#include "trainer/trainer.h"

#include <ATen/detail/CUDAHooksInterface.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

namespace adaspan::launcher {
namespace {

// What only the whole job can check: the grid's shape and the backend.
void check_layout(const trainer::TrainConfig& config, int world_size) {
  trainer::validate(config);
  const std::string grid_error =
      cluster::check_grid({world_size, config.run.tp, config.run.cp}, config.data.batch_size);
  if (!grid_error.empty()) throw std::invalid_argument(grid_error);
  const int64_t per_rank = config.data.batch_size / std::max(1, world_size / (config.run.tp * config.run.cp));
  if (per_rank % config.optim.grad_accum != 0) {
    throw std::invalid_argument("--grad-accum " + std::to_string(config.optim.grad_accum) + " does not divide the " +
                                std::to_string(per_rank) +
                                " streams of each rank (--batch-size / data-parallel ranks)");
  }
  if (config.run.dp_backend == "nccl" && !cluster::nccl_available()) {
    throw std::invalid_argument("--dp-backend nccl: this build has no NCCL backend (LibTorch without CUDA)");
  }
  if (config.run.dp_backend == "nccl" && config.run.device.rfind("cuda", 0) != 0) {
    throw std::invalid_argument("--dp-backend nccl needs --device cuda");
  }
}

// Ranks agree before going on: a file or GPU one node lacks must stop every rank, not leave the
// others waiting in a collective. One line, from the lowest failing rank. True: every rank is ok.
bool agree_no_error(const cluster::World& world, const std::string& error) {
  const int failing = world.size() > 1 ? world.first_failing_rank(error.empty()) : (error.empty() ? -1 : 0);
  if (failing < 0) return true;
  if (world.rank() == failing) {
    if (world.size() > 1 && failing != 0) {
      std::fprintf(stderr, "adaspan train: error on rank %d: %s\n", failing, error.c_str());
    } else {
      std::fprintf(stderr, "adaspan train: error: %s\n", error.c_str());
    }
  }
  return false;
}

void print_result(const trainer::TrainResult& result, int ranks) {
  if (result.preempted) {
    std::printf("stopped on signal %d after step %lld with a checkpoint; resume with --resume auto\n",
                result.stop_signal, static_cast<long long>(result.steps));
    return;
  }
  std::printf("done: %lld steps on %d ranks, train bpc %.4f, param_norm %.6f\nlearned spans (bytes):\n",
              static_cast<long long>(result.steps), ranks, result.final_train_bpc, result.param_norm);
  for (size_t l = 0; l < result.spans.size(); ++l) {
    std::printf("  layer %zu:", l);
    for (double z : result.spans[l]) std::printf(" %7.1f", z);
    std::printf("\n");
  }
}

trainer::TrainResult train_on_grid(trainer::TrainConfig& config, const cluster::World& world) {
  if (config.run.device == "cuda") {
    // The GPU of this local rank; ranks share GPUs round-robin when there are more ranks than GPUs
    // (works with --dp-backend mpi; NCCL refuses two ranks on one GPU).
    const int gpus = std::max(1, at::detail::getCUDAHooks().getNumGPUs());
    config.run.device = "cuda:" + std::to_string(world.local_rank() % gpus);
  }
  cluster::TrainingGroups groups(world, {config.run.tp, config.run.cp, config.run.device, config.run.dp_backend});
  trainer::Parallelism parallelism;
  parallelism.gradients = &groups.gradients();
  parallelism.control = &groups.control();
  parallelism.files = groups.files();
  parallelism.dp_rank = groups.dp_rank();
  parallelism.dp_size = groups.dp_size();
  parallelism.world_rank = world.rank();
  if (groups.tp_group()) parallelism.tp = {groups.tp_group(), groups.tp_rank(), groups.tp_size()};
  if (groups.cp_group()) {
    parallelism.cp.group = groups.cp_group();
    parallelism.cp.halos = groups.cp_halo_group();  // NCCL with the gradients, else null: MPI
    parallelism.cp.rank = groups.cp_rank();
    parallelism.cp.size = groups.cp_size();
  }
  parallelism.ranks_on_node = world.local_size();
  parallelism.mpi_thread_multiple = world.multiple_threads();
  parallelism.abort_collectives = groups.abort_collectives();
  cluster::install_stop_signals();
  const bool on_gpu = config.run.device.rfind("cuda", 0) == 0;
  if (!groups.uses_nccl() && on_gpu && !world.serialized_threads() && config.run.overlap) {
    // Hooks would call MPI from autograd's CUDA threads, which this MPI does not allow.
    if (world.is_root()) {
      std::fprintf(stderr, "adaspan train: note: MPI lacks MPI_THREAD_SERIALIZED; reducing gradients after backward\n");
    }
    config.run.overlap = false;
  }
  if (groups.cp_halo_group() != nullptr && config.run.overlap) {
    // The halos' NCCL communicator and the gradients' would run side by side in backward, in an
    // order that differs between ranks; NCCL asks that two communicators not do so (its kernels
    // could wait on each other). The gradients then go after backward.
    if (world.is_root()) {
      std::fprintf(stderr, "adaspan train: note: --cp with NCCL; reducing gradients after backward\n");
    }
    config.run.overlap = false;
  }
  return trainer::train(config, parallelism);
}

}  // namespace

int run_train(int* argc, char*** argv, const std::vector<std::string>& args) {
  // Parsed before MPI starts: the thread level depends on --async-checkpoint, from the command
  // line or a --config file alike. A parse error is reported after, by one rank.
  const CommandLine line{"train",
                         "adaspan train: train an adaptive-span byte-level transformer",
                         trainer::train_option_groups(),
                         true,
                         {}};
  ParsedCommand<trainer::TrainConfig> parsed = parse_command(line, trainer::train_option_table(), args);
  std::string error = parsed.error;
  cluster::World world(argc, argv, error.empty() && parsed.config.run.async_checkpoint);
  // Before anything can refuse: srun --kill-on-bad-exit answers the first rank's exit 2 with a
  // SIGTERM to the others, which must also leave with 2 (a refusal), not die of it (a crash that
  // launch would retry). A stop signal this early is then acted on at the first step.
  cluster::install_stop_signals();
  if (error.empty() && !parsed.help) {
    try {
      check_layout(parsed.config, world.size());
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  if (!agree_no_error(world, error)) return 2;
  if (parsed.help) {
    if (world.is_root()) std::cout << parsed.help_text << "\n";
    return 0;
  }
  try {
    const trainer::TrainResult result = train_on_grid(parsed.config, world);
    if (world.is_root()) print_result(result, world.size());
    return result.preempted ? trainer::kExitPreempted : 0;
  } catch (const trainer::RunRefused& e) {  // agreed by every rank: one line, a clean exit
    if (world.is_root()) std::fprintf(stderr, "adaspan train: error: %s\n", e.what());
    return 2;
  } catch (const trainer::CheckpointUnwritable& e) {  // agreed by every rank
    if (world.is_root()) std::fprintf(stderr, "adaspan train: error: %s\n", e.what());
    std::fflush(stderr);
    // Not through MPI_Finalize: HDF5's clean-up of a file whose write failed crashes there (1.10).
    if (world.size() == 1) std::_Exit(trainer::kExitCheckpointUnwritable);
    world.abort(trainer::kExitCheckpointUnwritable);
  } catch (const std::exception& e) {
    if (world.size() == 1) {
      std::fprintf(stderr, "adaspan train: error: %s\n", e.what());
      // Not through MPI_Finalize: HDF5's clean-up of a file whose write failed (a full disk) crashes
      // there (HDF5 1.10), and nothing else is pending.
      std::fflush(stderr);
      std::_Exit(1);
    }
    std::fprintf(stderr, "adaspan train: error on rank %d: %s\n", world.rank(), e.what());
    std::fflush(stderr);
    world.abort(1);
  }
}

}  // namespace adaspan::launcher
