#include "cluster/thread_config.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <algorithm>
#include <thread>

namespace adaspan::cluster {

int configure_threads(int threads, int ranks_on_node) {
  if (threads <= 0) {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads = std::max(1, cores / std::max(1, ranks_on_node));
  }
  // OpenBLAS is loaded by LibTorch at start-up, so its env var is read too early to set here;
  // call its setter when the BLAS in this process is OpenBLAS.
  using SetThreads = void (*)(int);
  if (auto set_blas = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set_blas(1);
  }
  at::set_num_threads(threads);
  return threads;
}

}  // namespace adaspan::cluster
