#pragma once
// A model rebuilt from a checkpoint for inference (eval, generate): the stored config's shape,
// the stored parameters, eval mode.
#include "model/adaptive_span_lm.h"

#include <c10/core/Device.h>

#include <memory>
#include <string>

namespace adaspan::trainer {

struct CheckpointModel {
  std::shared_ptr<model::AdaptiveSpanLM> model;
  int64_t step = 0;
  int64_t batch_size = 0, block_size = 0;  // as trained
};

// Throws std::runtime_error naming the file and what is wrong.
CheckpointModel load_checkpoint_model(const std::string& path, const at::Device& device);

}  // namespace adaspan::trainer
