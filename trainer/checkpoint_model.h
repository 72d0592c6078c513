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
  int64_t attn_span = 0;                   // S of the model built (the trained one unless overridden)
};

// Throws std::runtime_error naming the file and what is wrong.
// attn_span > 0 evaluates with a longer context than trained (length extrapolation): S' >= the
// trained S; key_pe is zero at the new far positions (content-only scores there) and learned spans
// keep their length in bytes. Not for dynamic spans (z_t = S·sigmoid(..) would stretch).
CheckpointModel load_checkpoint_model(const std::string& path, const at::Device& device, int64_t attn_span = 0);

}  // namespace adaspan::trainer
