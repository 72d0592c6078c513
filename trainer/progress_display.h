#pragma once
// Training progress on the terminal: one line rewritten in place when stdout is a TTY, plain
// lines (one per log record) otherwise, so logs and pipes stay readable.
#include <cstdint>
#include <cstdio>

namespace adaspan::trainer {

class ProgressDisplay {
 public:
  // out == nullptr: silent.
  ProgressDisplay(int64_t total_steps, std::FILE* out = stdout);
  void update(int64_t step, double bpc, double tokens_per_s, double elapsed_s);
  void message(const char* text);  // a line of its own (e.g. validation), not overwritten
  void finish();

 private:
  int64_t total_;
  std::FILE* out_;
  bool tty_;
  bool open_line_ = false;
};

}  // namespace adaspan::trainer
