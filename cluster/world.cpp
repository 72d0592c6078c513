#include "cluster/world.h"

#include "cluster/bus_error.h"

#include <mpi.h>

#include <cstdlib>

namespace adaspan::cluster {
namespace {

int env_int(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value ? std::atoi(value) : fallback;
}

}  // namespace

World::World(int* argc, char*** argv, bool thread_multiple) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    // SERIALIZED: gradient hooks may run on autograd's device threads (never two at once).
    int provided = 0;
    MPI_Init_thread(argc, argv, thread_multiple ? MPI_THREAD_MULTIPLE : MPI_THREAD_SERIALIZED, &provided);
    finalize_ = true;
    report_bus_errors();  // again: Open MPI installs its own SIGBUS handler during MPI_Init
  }
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  serialized_threads_ = level >= MPI_THREAD_SERIALIZED;
  multiple_threads_ = level >= MPI_THREAD_MULTIPLE;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
  int node_rank = 0;
  MPI_Comm_rank(node, &node_rank);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
  local_rank_ = env_int("OMPI_COMM_WORLD_LOCAL_RANK", env_int("SLURM_LOCALID", node_rank));
}

int World::first_failing_rank(bool ok) const {
  int mine = ok ? size_ : rank_, first = size_;
  MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  return first == size_ ? -1 : first;
}

void World::abort(int code) const {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

World::~World() {
  if (finalize_) MPI_Finalize();
}

}  // namespace adaspan::cluster
