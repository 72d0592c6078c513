#include "trainer/train_option_table.h"
#include "trainer/trainer.h"

namespace adaspan::trainer {

void validate(const TrainConfig& config) { check_all(train_option_table(), config); }

}  // namespace adaspan::trainer
