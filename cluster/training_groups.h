#pragma once
// Every process group a training rank uses, built once from the world and the layout (the grid of
// cluster/grid.h):
//   gradients  the replica group (DP x CP ranks with the same TP shard): NCCL for CUDA tensors when every rank on the
//   node has a
//              GPU of its own (NCCL refuses to share one), else MPI (CUDA tensors staged through
//              the host);
//   tp         the tensor-parallel group of consecutive ranks (none when TP = 1);
//   cp         the context-parallel group, the chunks of the same blocks (none when CP = 1): MPI
//              for its host tables; its halos over NCCL (ncclSend/ncclRecv) when the gradients
//              use NCCL, else over MPI too;
//   control    every rank over MPI: host scalars (metrics, agreement on skips and stops);
//   files      every rank, for collective checkpoint writes.
#include "cluster/communicator.h"
#include "cluster/grid.h"
#include "cluster/mpi_process_group.h"
#include "cluster/world.h"
#include "model/process_group.h"

#include <functional>
#include <memory>
#include <string>

namespace adaspan::cluster {

struct GroupsRequest {
  int tp = 1, cp = 1;
  std::string device = "cpu";       // cpu | cuda:N (this rank's GPU)
  std::string dp_backend = "auto";  // auto | mpi | nccl
};

class TrainingGroups {
 public:
  // Collective over the world; the layout is already checked (check_grid). Throws
  // std::runtime_error when NCCL was asked for and cannot start.
  TrainingGroups(const World& world, const GroupsRequest& request);
  ~TrainingGroups();
  TrainingGroups(const TrainingGroups&) = delete;
  TrainingGroups& operator=(const TrainingGroups&) = delete;

  model::ProcessGroup& gradients() { return nccl_ ? *nccl_ : grid_.replica_group(); }
  model::ProcessGroup& control() { return world_group_; }
  model::ProcessGroup* tp_group() { return grid_.tp_size() > 1 ? &grid_.tp_group() : nullptr; }
  model::ProcessGroup* cp_group() { return grid_.cp_size() > 1 ? &grid_.cp_group() : nullptr; }
  // The halos' keys and values (NCCL), or null: cp_group() carries them.
  model::ProcessGroup* cp_halo_group() { return nccl_cp_.get(); }
  const Communicator& files() const { return world_comm_; }

  int dp_rank() const { return grid_.dp_rank(); }
  int dp_size() const { return grid_.dp_size(); }
  int tp_rank() const { return grid_.tp_rank(); }
  int tp_size() const { return grid_.tp_size(); }
  int cp_rank() const { return grid_.cp_rank(); }
  int cp_size() const { return grid_.cp_size(); }
  bool uses_nccl() const { return nccl_ != nullptr; }
  // The watchdog's last act: abort NCCL's in-flight collectives (empty without NCCL).
  std::function<void()> abort_collectives();

 private:
  Communicator world_comm_;
  Grid grid_;
  MpiProcessGroup world_group_;
  std::unique_ptr<model::ProcessGroup> nccl_, nccl_cp_;
};

}  // namespace adaspan::cluster
