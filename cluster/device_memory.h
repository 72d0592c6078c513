#pragma once
// Peak memory of this process on a device, for per-rank metrics: the CUDA caching allocator's
// peak for a GPU, the process's peak resident set for the CPU.
#include <string>

namespace adaspan::cluster {

// device: "cpu" or "cuda:N". Megabytes (MiB).
double peak_memory_mb(const std::string& device);

}  // namespace adaspan::cluster
