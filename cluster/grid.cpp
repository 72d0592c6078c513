#include "cluster/grid.h"

namespace adaspan::cluster {

std::string check_grid(const GridShape& shape, int64_t global_streams) {
  if (shape.tp < 1 || shape.world % shape.tp != 0) {
    return "world size " + std::to_string(shape.world) + " is not divisible by --tp " + std::to_string(shape.tp);
  }
  if (shape.cp < 1 || shape.world % (shape.tp * shape.cp) != 0) {
    return "world size " + std::to_string(shape.world) + " is not divisible by --tp " + std::to_string(shape.tp) +
           " x --cp " + std::to_string(shape.cp);
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

Grid::Grid(const Communicator& world, int tp, int cp) {
  const int rank = world.rank(), size = world.size();
  tp_size_ = tp;
  cp_size_ = cp;
  dp_size_ = size / (tp * cp);
  tp_rank_ = rank % tp;
  cp_rank_ = (rank / tp) % cp;
  dp_rank_ = rank / (tp * cp);
  tp_comm_ = world.split(rank / tp, tp_rank_);                 // consecutive ranks
  cp_comm_ = world.split(dp_rank_ * tp + tp_rank_, cp_rank_);  // same replica, same shard
  replica_comm_ = world.split(tp_rank_, rank / tp);            // same shard
  tp_group_ = std::make_unique<MpiProcessGroup>(tp_comm_);
  cp_group_ = std::make_unique<MpiProcessGroup>(cp_comm_);
  replica_group_ = std::make_unique<MpiProcessGroup>(replica_comm_);
}

Grid::~Grid() {
  replica_group_.reset();
  cp_group_.reset();
  tp_group_.reset();
  replica_comm_.release();
  cp_comm_.release();
  tp_comm_.release();
}

}  // namespace adaspan::cluster
