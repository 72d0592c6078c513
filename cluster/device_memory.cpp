#include "cluster/device_memory.h"

#include <sys/resource.h>

#ifdef ADASPAN_WITH_CUDA
#include <c10/core/Device.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace adaspan::cluster {

double peak_memory_mb(const std::string& device) {
#ifdef ADASPAN_WITH_CUDA
  if (device.rfind("cuda", 0) == 0) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(c10::Device(device).index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);  // [0]: all pools
  }
#endif
  (void)device;
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

}  // namespace adaspan::cluster
