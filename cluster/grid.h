#pragma once
// The process grid: world = DP x TP, tensor-parallel groups of consecutive ranks (they share a
// node, where TP's per-layer all-reduces are cheap), data-parallel groups strided by TP.
//
// Worked example, 16 ranks on 2 nodes of 8 GPUs, TP = 2:
//   TP groups (consecutive):  [0 1] [2 3] [4 5] ... [14 15]          -> 8 groups of 2
//   DP groups (stride TP):    [0 2 4 ... 14] [1 3 5 ... 15]          -> 2 groups of 8
//   rank 5: tp_rank 1 (second in [4 5]), dp_rank 2 (third in [1 3 5 ...]).
// A DP group holds one replica slot per TP shard: rank 5 averages its gradients with ranks 1, 3,
// 7, ... which hold the same shard of the model. Data: the B global streams are split over DP.
#include "cluster/communicator.h"
#include "cluster/mpi_process_group.h"

#include <memory>
#include <string>

namespace adaspan::cluster {

struct GridShape {
  int world = 1, tp = 1;
  int dp() const { return world / tp; }
};

// Empty when the shape is valid, else a one-line reason.
std::string check_grid(const GridShape& shape, int64_t global_streams);

class Grid {
 public:
  Grid(const Communicator& world, int tp);  // collective over `world`; shape already checked
  ~Grid();
  Grid(const Grid&) = delete;
  Grid& operator=(const Grid&) = delete;

  int dp_rank() const { return dp_rank_; }
  int dp_size() const { return dp_size_; }
  int tp_rank() const { return tp_rank_; }
  int tp_size() const { return tp_size_; }
  MpiProcessGroup& dp_group() { return *dp_group_; }
  MpiProcessGroup& tp_group() { return *tp_group_; }
  const Communicator& dp_comm() const { return dp_comm_; }

 private:
  int dp_rank_ = 0, dp_size_ = 1, tp_rank_ = 0, tp_size_ = 1;
  Communicator dp_comm_, tp_comm_;
  std::unique_ptr<MpiProcessGroup> dp_group_, tp_group_;
};

}  // namespace adaspan::cluster
