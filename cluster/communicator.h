#pragma once
// An MPI communicator as the folders outside cluster/ carry it: an opaque value, so that only
// cluster/ includes <mpi.h> (checkpointing's collective HDF5 files receive one; see
// cluster/mpi_communicator.h for the bridge its .cpp files use). It holds MPI's Fortran handle
// (MPI_Comm_c2f), which is an int in every MPI implementation.
namespace adaspan::cluster {

class Communicator {
 public:
  Communicator() = default;     // none: this rank works alone (serial files, no collectives)
  static Communicator world();  // every rank of the job (MPI_COMM_WORLD)

  bool valid() const { return valid_; }
  int rank() const;  // 0 when not valid
  int size() const;  // 1 when not valid
  // A new communicator over the same ranks, for a background thread's collectives (collective
  // call); the caller releases it.
  Communicator duplicate() const;
  // MPI_Comm_free of a communicator made by duplicate() or split(); no-op when not valid.
  void release();
  // The ranks with the same `color`, ordered by `key` (MPI_Comm_split, collective); the caller releases it.
  Communicator split(int color, int key) const;

  int fortran_handle() const { return handle_; }
  static Communicator from_fortran_handle(int handle) { return Communicator(handle); }

 private:
  explicit Communicator(int handle) : handle_(handle), valid_(true) {}
  int handle_ = 0;
  bool valid_ = false;
};

}  // namespace adaspan::cluster
