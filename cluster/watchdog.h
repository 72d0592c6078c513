#pragma once
// A per-rank hang detector. The owner names what it is doing (`enter("gradient all-reduce",
// step)`) at every phase change; a background thread ends the process when one phase lasts longer
// than the timeout, with one line naming the rank, the operation and the step. A hung collective
// can never return, so there is no clean way out: the abort hook (e.g. ncclCommAbort) runs, then
// the process exits with `exit_code`, and mpirun / srun --kill-on-bad-exit end the other ranks,
// so a supervisor (adaspan launch) restarts the job instead of it burning its allocation.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

namespace adaspan::cluster {

class Watchdog {
 public:
  // timeout_s <= 0: disabled (no thread).
  Watchdog(double timeout_s, int rank, int exit_code, std::function<void()> abort_hook = {});
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // `operation` must be a string literal (kept by pointer).
  void enter(const char* operation, int64_t step);
  // No phase running (e.g. after training): never fires.
  void idle();

 private:
  void watch();

  double timeout_s_;
  int rank_, exit_code_;
  std::function<void()> abort_hook_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  const char* operation_ = nullptr;
  int64_t step_ = 0;
  std::chrono::steady_clock::time_point since_;
  std::thread thread_;
};

}  // namespace adaspan::cluster
