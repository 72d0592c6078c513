#pragma once
// `adaspan train`'s options, each declared once (see trainer/option_table.h for what comes from a
// declaration): flags, --config keys, --help, validation, the checkpoint's stored config, and
// which of them a resumed run must share with its checkpoint.
#include "trainer/option_table.h"
#include "trainer/train_config.h"

namespace adaspan::trainer {

const OptionTable<TrainConfig>& train_option_table();

// The --help sections of `adaspan train`, in order: (name, title).
const std::vector<std::pair<std::string, std::string>>& train_option_groups();

}  // namespace adaspan::trainer
