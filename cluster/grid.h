#pragma once
// The process grid: world = DP x CP x TP. Tensor-parallel groups are consecutive ranks (they share
// a node, where TP's per-layer all-reduces are cheap), context-parallel groups stride by TP (a
// halo goes to the next chunk's rank, usually on the same node too), data-parallel replicas
// stride by CP x TP.
//
// Worked example, 16 ranks on 2 nodes of 8 GPUs, DP 2 x CP 4 x TP 2:
//   TP groups (consecutive):   [0 1] [2 3] ... [14 15]                 -> 8 groups of 2
//   CP groups (stride 2):      [0 2 4 6] [1 3 5 7] [8 10 12 14] [9 11 13 15]
//   replica groups (stride 2): [0 2 4 ... 14] [1 3 5 ... 15]           -> gradients, 2 groups of 8
//   rank 11: tp_rank 1, cp_rank 1 (second in [9 11 13 15]), dp_rank 1 (second half of the world).
// A replica group holds every rank with the same TP shard of the model: DP x CP ranks whose
// gradients are averaged (a CP rank's loss covers its chunk, so the mean over the group is the
// mean over all positions). Data: the B global streams are split over DP; each stream's block is
// split over CP (chunk cp_rank).
#include "cluster/communicator.h"
#include "cluster/mpi_process_group.h"

#include <memory>
#include <string>

namespace adaspan::cluster {

struct GridShape {
  int world = 1, tp = 1, cp = 1;
  int dp() const { return world / (tp * cp); }
};

// Empty when the shape is valid, else a one-line reason.
std::string check_grid(const GridShape& shape, int64_t global_streams);

class Grid {
 public:
  Grid(const Communicator& world, int tp, int cp = 1);  // collective over `world`; shape already checked
  ~Grid();
  Grid(const Grid&) = delete;
  Grid& operator=(const Grid&) = delete;

  int dp_rank() const { return dp_rank_; }
  int dp_size() const { return dp_size_; }
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  int cp_rank() const { return cp_rank_; }
  int cp_size() const { return cp_size_; }
  // Every rank with this rank's TP shard (DP x CP of them): gradients, ZeRO-1's shards.
  MpiProcessGroup& replica_group() { return *replica_group_; }
  MpiProcessGroup& tp_group() { return *tp_group_; }
  MpiProcessGroup& cp_group() { return *cp_group_; }
  const Communicator& replica_comm() const { return replica_comm_; }
  const Communicator& cp_comm() const { return cp_comm_; }

 private:
  int dp_rank_ = 0, dp_size_ = 1, tp_rank_ = 0, tp_size_ = 1, cp_rank_ = 0, cp_size_ = 1;
  Communicator replica_comm_, tp_comm_, cp_comm_;
  std::unique_ptr<MpiProcessGroup> replica_group_, tp_group_, cp_group_;
};

}  // namespace adaspan::cluster
