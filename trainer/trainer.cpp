#include "trainer/trainer.h"

#include "trainer/training_run.h"

namespace adaspan::trainer {

TrainResult train(const TrainConfig& config, bool quiet) { return train(config, Parallelism{}, quiet); }

TrainResult train(const TrainConfig& config, const Parallelism& parallelism, bool quiet) {
  validate(config);
  TrainingRun run(config, parallelism, quiet);
  return run.run();
}

}  // namespace adaspan::trainer
