#pragma once
// Planted failures for testing recovery (--fail-at-step N --fail-rank R --fail-mode M):
//   crash       the rank exits (status 1) at the start of step N, as a killed node would;
//   hang        the rank stops making progress at step N (the watchdog's case);
//   collective  the rank stops calling collectives at step N, unseen by its own watchdog: the
//               other ranks wait inside an all-reduce, and their watchdogs must catch it;
//   nan         the loss of steps N .. N + --fail-count - 1 is NaN on that rank (once per process,
//               so steps redone after a rollback are clean);
//   signal      the rank receives SIGUSR1 at step N (a scheduler's warning);
//   checkpoint  the job dies after writing the checkpoint of step N, before committing it.
// Only the first attempt fails (ADASPAN_ATTEMPT unset or 1, set by `adaspan launch`), so a
// restarted run gets past the planted step.
#include "trainer/train_config.h"

#include <functional>
#include <set>

namespace adaspan::trainer {

class FaultInjector {
 public:
  // `unwatch` disarms this rank's watchdog (for the collective mode).
  FaultInjector(const FaultConfig& config, int rank, std::function<void()> unwatch = {});

  void at_step_start(int64_t step);  // crash, hang, collective, signal
  double loss_factor(int64_t step);  // NaN in the nan window, else 1
  bool crash_before_commit(int64_t step) const;

 private:
  FaultConfig config_;
  std::function<void()> unwatch_;
  bool armed_;  // this rank, first attempt, a step set
  std::set<int64_t> fired_;
};

}  // namespace adaspan::trainer
