#include "trainer/progress_display.h"

#include <unistd.h>

namespace adaspan::trainer {

ProgressDisplay::ProgressDisplay(int64_t total_steps, std::FILE* out)
    : total_(total_steps), out_(out), tty_(out != nullptr && isatty(fileno(out)) != 0) {}

void ProgressDisplay::update(int64_t step, double bpc, double tokens_per_s, double elapsed_s) {
  if (!out_) return;
  const double eta = step > 0 ? elapsed_s / static_cast<double>(step) * static_cast<double>(total_ - step) : 0;
  const int eta_min = static_cast<int>(eta) / 60, eta_sec = static_cast<int>(eta) % 60;
  if (tty_) {
    std::fprintf(out_, "\r\033[Kstep %lld/%lld  bpc %.4f  %.0f tok/s  ETA %d:%02d", static_cast<long long>(step),
                 static_cast<long long>(total_), bpc, tokens_per_s, eta_min, eta_sec);
    open_line_ = true;
  } else {
    std::fprintf(out_, "step %lld/%lld bpc %.4f tok/s %.0f eta %d:%02d\n", static_cast<long long>(step),
                 static_cast<long long>(total_), bpc, tokens_per_s, eta_min, eta_sec);
  }
  std::fflush(out_);
}

void ProgressDisplay::message(const char* text) {
  if (!out_) return;
  if (open_line_) std::fputc('\n', out_);
  open_line_ = false;
  std::fprintf(out_, "%s\n", text);
  std::fflush(out_);
}

void ProgressDisplay::finish() {
  if (!out_) return;
  if (open_line_) std::fputc('\n', out_);
  open_line_ = false;
  std::fflush(out_);
}

}  // namespace adaspan::trainer
