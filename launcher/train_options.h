#pragma once
// `adaspan train` flags (Boost.Program_options), grouped by concern as the reference's config.
// Every flag can also be given in a --config file as `key = value` (same names, no dashes).
#include "trainer/train_config.h"

#include <string>
#include <vector>

namespace adaspan::launcher {

struct ParsedTrain {
  bool help = false;
  std::string help_text;
  trainer::TrainConfig config;
};

// Throws std::invalid_argument with a one-line message on unknown flags or bad values.
ParsedTrain parse_train_options(const std::vector<std::string>& args);

}  // namespace adaspan::launcher
