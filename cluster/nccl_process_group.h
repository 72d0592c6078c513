#pragma once
// ProcessGroup over NCCL for CUDA tensors (one rank per GPU). The ncclUniqueId travels over MPI.
// all_reduce_async runs on a side stream that first waits for the compute stream, so a bucket's
// reduction overlaps the rest of backward without a host sync; wait() makes the compute stream
// wait for it (again no host sync).
#include "cluster/communicator.h"
#include "model/process_group.h"

#include <memory>

namespace adaspan::cluster {

// True when this build has the NCCL backend (LibTorch with CUDA and NCCL found).
bool nccl_available();

// Throws std::runtime_error where NCCL is not built in, or NCCL fails (e.g. two ranks on one GPU).
std::unique_ptr<model::ProcessGroup> make_nccl_process_group(const Communicator& comm, int device);

}  // namespace adaspan::cluster
