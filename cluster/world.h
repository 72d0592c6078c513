#pragma once
// The MPI world of this process: initialised once, finalised at exit. Works without a launcher
// (a singleton world of one rank) and under mpirun/srun.
#include <string>

namespace adaspan::cluster {

class World {
 public:
  World(int* argc, char*** argv);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // Local rank on this node: OMPI_COMM_WORLD_LOCAL_RANK, then SLURM_LOCALID, else 0.
  int local_rank() const { return local_rank_; }

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0;
  bool finalize_ = false;
};

}  // namespace adaspan::cluster
