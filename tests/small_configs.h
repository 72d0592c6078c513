#pragma once
// The small model and run most tests train: 2 layers, d 32, 2 heads, ff 64, span 64; B 4, M 32 on
// the built-in corpus, one thread, no validation. Seconds per run on a CPU.
#include "trainer/train_config.h"

#include <filesystem>
#include <string>

namespace adaspan::testing {

inline model::ModelConfig small_model_config() {
  model::ModelConfig c;
  c.layers = 2;
  c.d_model = 32;
  c.heads = 2;
  c.ff_size = 64;
  c.attn_span = 64;
  return c;
}

inline trainer::TrainConfig small_train_config(const std::filesystem::path& run_dir, int64_t steps) {
  trainer::TrainConfig c;
  c.model = small_model_config();
  c.data.batch_size = 4;
  c.data.block_size = 32;
  c.optim.warmup_steps = 4;
  c.run.steps = steps;
  c.run.threads = 1;
  c.run.log_every = 5;
  c.run.eval_every = 0;
  c.run.run_dir = run_dir.string();
  return c;
}

}  // namespace adaspan::testing
