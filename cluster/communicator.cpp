#include "cluster/communicator.h"

#include "cluster/mpi_communicator.h"

namespace adaspan::cluster {

Communicator Communicator::world() { return from_mpi(MPI_COMM_WORLD); }

int Communicator::rank() const {
  int rank = 0;
  if (valid_) MPI_Comm_rank(to_mpi(*this), &rank);
  return rank;
}

int Communicator::size() const {
  int size = 1;
  if (valid_) MPI_Comm_size(to_mpi(*this), &size);
  return size;
}

Communicator Communicator::duplicate() const {
  if (!valid_) return {};
  MPI_Comm copy = MPI_COMM_NULL;
  MPI_Comm_dup(to_mpi(*this), &copy);
  return from_mpi(copy);
}

Communicator Communicator::split(int color, int key) const {
  if (!valid_) return {};
  MPI_Comm part = MPI_COMM_NULL;
  MPI_Comm_split(to_mpi(*this), color, key, &part);
  return from_mpi(part);
}

void Communicator::release() {
  if (!valid_) return;
  MPI_Comm comm = to_mpi(*this);
  MPI_Comm_free(&comm);
  *this = Communicator();
}

}  // namespace adaspan::cluster
