#include "trainer/fault_injection.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <limits>

namespace adaspan::trainer {

FaultInjector::FaultInjector(const FaultConfig& config, int rank, std::function<void()> unwatch)
    : config_(config), unwatch_(std::move(unwatch)) {
  const char* attempt = std::getenv("ADASPAN_ATTEMPT");
  armed_ = config.at_step > 0 && (config.mode == "checkpoint" || rank == config.rank) &&
           (!attempt || std::atoi(attempt) <= 1);
}

void FaultInjector::at_step_start(int64_t step) {
  const bool at_start =
      config_.mode == "crash" || config_.mode == "hang" || config_.mode == "collective" || config_.mode == "signal";
  if (!armed_ || !at_start || step != config_.at_step || fired_.count(step)) return;
  fired_.insert(step);
  if (config_.mode == "crash") {
    std::fprintf(stderr, "adaspan train: --fail-mode crash: rank %d exits at step %lld\n", config_.rank,
                 static_cast<long long>(step));
    std::fflush(stderr);
    ::_exit(1);
  }
  if (config_.mode == "hang") {
    std::fprintf(stderr, "adaspan train: --fail-mode hang: rank %d stops at step %lld\n", config_.rank,
                 static_cast<long long>(step));
    std::fflush(stderr);
    for (;;) ::pause();
  }
  if (config_.mode == "collective") {
    std::fprintf(stderr, "adaspan train: --fail-mode collective: rank %d stops calling collectives at step %lld\n",
                 config_.rank, static_cast<long long>(step));
    std::fflush(stderr);
    if (unwatch_) unwatch_();
    for (;;) ::pause();
  }
  if (config_.mode == "signal") ::raise(SIGUSR1);
}

double FaultInjector::loss_factor(int64_t step) {
  if (!armed_ || config_.mode != "nan" || step < config_.at_step || step >= config_.at_step + config_.count ||
      fired_.count(step)) {
    return 1.0;
  }
  fired_.insert(step);
  return std::numeric_limits<double>::quiet_NaN();
}

bool FaultInjector::crash_before_commit(int64_t step) const {
  return armed_ && config_.mode == "checkpoint" && step == config_.at_step;
}

}  // namespace adaspan::trainer
