#pragma once
// The bridge between cluster::Communicator and MPI, for the .cpp files that call MPI themselves
// (cluster/, and checkpointing's collective HDF5 writes). Headers outside cluster/ never include it.
#include "cluster/communicator.h"

#include <mpi.h>

namespace adaspan::cluster {

inline MPI_Comm to_mpi(const Communicator& comm) {
  return comm.valid() ? MPI_Comm_f2c(comm.fortran_handle()) : MPI_COMM_NULL;
}

inline Communicator from_mpi(MPI_Comm comm) {
  return comm == MPI_COMM_NULL ? Communicator() : Communicator::from_fortran_handle(MPI_Comm_c2f(comm));
}

}  // namespace adaspan::cluster
