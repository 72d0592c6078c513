#pragma once
// --device as every command takes it: cpu, cuda or cuda:N.
#include <string>

namespace adaspan::trainer {

// Throws std::invalid_argument with one line when `name` is not a device, or is CUDA where this
// LibTorch or machine has none ("--device 'tpu' is not cpu, cuda or cuda:N").
void require_device(const std::string& name);

}  // namespace adaspan::trainer
