#include "cluster/grid.h"

namespace adaspan::cluster {

std::string check_grid(const GridShape& shape, int64_t global_streams) {
  if (shape.tp < 1 || shape.world % shape.tp != 0) {
    return "world size " + std::to_string(shape.world) + " is not divisible by --tp " + std::to_string(shape.tp);
  }
  const int dp = shape.dp();
  if (global_streams < dp) {
    return "--batch-size " + std::to_string(global_streams) + " gives fewer streams than the " + std::to_string(dp) +
           " data-parallel ranks";
  }
  if (global_streams % dp != 0) {
    return "--batch-size " + std::to_string(global_streams) + " is not divisible by the " + std::to_string(dp) +
           " data-parallel ranks (each rank owns B/DP streams)";
  }
  return "";
}

Grid::Grid(const Communicator& world, int tp) {
  const int rank = world.rank(), size = world.size();
  tp_size_ = tp;
  dp_size_ = size / tp;
  tp_rank_ = rank % tp;
  dp_rank_ = rank / tp;
  tp_comm_ = world.split(rank / tp, tp_rank_);  // same TP group: consecutive ranks
  dp_comm_ = world.split(tp_rank_, dp_rank_);   // same DP group: same shard
  tp_group_ = std::make_unique<MpiProcessGroup>(tp_comm_);
  dp_group_ = std::make_unique<MpiProcessGroup>(dp_comm_);
}

Grid::~Grid() {
  dp_group_.reset();
  tp_group_.reset();
  dp_comm_.release();
  tp_comm_.release();
}

}  // namespace adaspan::cluster
