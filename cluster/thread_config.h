#pragma once
// CPU threads of one process. ATen's OpenMP pool and OpenBLAS each default to one thread per
// core; both at once oversubscribe the cores and run ~2x slower. adaspan gives ATen the
// threads and pins OpenBLAS to one (ATen parallelises around its GEMM calls already).
namespace adaspan::cluster {

// threads <= 0: the cores of this machine divided by the ranks on this node.
int configure_threads(int threads, int ranks_on_node);

}  // namespace adaspan::cluster
