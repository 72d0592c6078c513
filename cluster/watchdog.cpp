#include "cluster/watchdog.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

namespace adaspan::cluster {

Watchdog::Watchdog(double timeout_s, int rank, int exit_code, std::function<void()> abort_hook)
    : timeout_s_(timeout_s), rank_(rank), exit_code_(exit_code), abort_hook_(std::move(abort_hook)) {
  if (timeout_s_ > 0) thread_ = std::thread([this] { watch(); });
}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Watchdog::enter(const char* operation, int64_t step) {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  operation_ = operation;
  step_ = step;
  since_ = std::chrono::steady_clock::now();
}

void Watchdog::idle() {
  if (timeout_s_ <= 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  operation_ = nullptr;
}

void Watchdog::watch() {
  const auto timeout = std::chrono::duration<double>(timeout_s_);
  const auto poll = std::chrono::duration<double>(std::min(1.0, timeout_s_ / 10));
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, poll);
    if (stop_ || !operation_) continue;
    const auto elapsed = std::chrono::steady_clock::now() - since_;
    if (elapsed < timeout) continue;
    std::fprintf(
        stderr, "adaspan: rank %d: %s at step %lld made no progress for %.0f s (--step-timeout %g); aborting the job\n",
        rank_, operation_, static_cast<long long>(step_), std::chrono::duration<double>(elapsed).count(), timeout_s_);
    std::fflush(stderr);
    // The abort hook (ncclCommAbort) can itself block, e.g. on a communicator another thread is
    // inside: the process leaves with the same exit status after 30 s whatever it does.
    std::thread([code = exit_code_] {
      std::this_thread::sleep_for(std::chrono::seconds(30));
      ::_exit(code);
    }).detach();
    if (abort_hook_) abort_hook_();
    ::_exit(exit_code_);
  }
}

}  // namespace adaspan::cluster
