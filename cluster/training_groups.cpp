#include "cluster/training_groups.h"

#include "cluster/nccl_process_group.h"

#include <ATen/Device.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <algorithm>
#include <stdexcept>

namespace adaspan::cluster {
namespace {

bool wants_nccl(const World& world, const GroupsRequest& request, int dp_size) {
  if (request.device.rfind("cuda", 0) != 0) return false;
  if (request.dp_backend == "nccl") return true;
  const int gpus = std::max(1, at::detail::getCUDAHooks().getNumGPUs());
  return request.dp_backend == "auto" && nccl_available() && dp_size > 1 && world.local_size() <= gpus;
}

}  // namespace

TrainingGroups::TrainingGroups(const World& world, const GroupsRequest& request)
    : world_comm_(Communicator::world()), grid_(world_comm_, request.tp, request.cp), world_group_(world_comm_) {
  if (!wants_nccl(world, request, grid_.replica_group().size())) return;
  try {
    nccl_ = make_nccl_process_group(grid_.replica_comm(), at::Device(request.device).index());
    if (grid_.cp_size() > 1) nccl_cp_ = make_nccl_process_group(grid_.cp_comm(), at::Device(request.device).index());
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string(e.what()) +
                             " (NCCL needs one GPU per rank; with more ranks than GPUs use --dp-backend mpi)");
  }
}

TrainingGroups::~TrainingGroups() = default;

std::function<void()> TrainingGroups::abort_collectives() {
  if (!nccl_) return {};
  return [group = nccl_.get(), halos = nccl_cp_.get()] {
    group->abort_in_flight();
    if (halos != nullptr) halos->abort_in_flight();
  };
}

}  // namespace adaspan::cluster
