#pragma once
// A refusal every rank has reached together (the same file, the same config, an agreed check):
// rank 0's message is the one to print, the exit status is 2 (bad usage), and restarting the same
// command would be refused again, so `adaspan launch` does not.
#include <stdexcept>

namespace adaspan::trainer {

struct RunRefused : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace adaspan::trainer
