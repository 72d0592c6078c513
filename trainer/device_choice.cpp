#include "trainer/device_choice.h"

#include <ATen/Context.h>
#include <ATen/Device.h>

#include <optional>
#include <stdexcept>

namespace adaspan::trainer {

void require_device(const std::string& name) {
  std::optional<at::Device> device;
  try {
    device.emplace(name);
  } catch (const std::exception&) {
    throw std::invalid_argument("--device '" + name + "' is not cpu, cuda or cuda:N");
  }
  if (device->is_cuda() && !at::hasCUDA()) {
    throw std::invalid_argument("--device " + name + ": this build's LibTorch has no CUDA or no GPU is visible");
  }
  if (!device->is_cpu() && !device->is_cuda()) throw std::invalid_argument("--device must be cpu or cuda");
}

}  // namespace adaspan::trainer
