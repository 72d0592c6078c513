#pragma once
// The MPI world of this process: initialised once, finalised at exit. Works without a launcher
// (a singleton world of one rank) and under mpirun/srun.
#include <string>

namespace adaspan::cluster {

class World {
 public:
  // thread_multiple: ask for MPI_THREAD_MULTIPLE (a background thread doing collectives, e.g.
  // asynchronous checkpoint writes); otherwise MPI_THREAD_SERIALIZED.
  World(int* argc, char*** argv, bool thread_multiple = false);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }
  // Rank among the processes on this node, and their number (OMPI_COMM_WORLD_LOCAL_RANK /
  // SLURM_LOCALID when set, else from MPI's shared-memory split). CUDA device = local rank.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  // Ends every rank at once (a rank that failed alone would leave the others in a collective).
  [[noreturn]] void abort(int code) const;
  // Whether MPI may be called from a thread other than main (one at a time): needed to reduce
  // gradients from autograd's CUDA threads during backward.
  bool serialized_threads() const { return serialized_threads_; }
  // Whether two threads may call MPI at the same time.
  bool multiple_threads() const { return multiple_threads_; }
  // The lowest rank whose `ok` is false, or -1 when every rank is ok (collective).
  int first_failing_rank(bool ok) const;

 private:
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  bool finalize_ = false;
  bool serialized_threads_ = true;
  bool multiple_threads_ = false;
};

}  // namespace adaspan::cluster
