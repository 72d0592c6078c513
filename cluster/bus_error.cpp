#include "cluster/bus_error.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>

namespace adaspan::cluster {
namespace {

void on_bus_error(int) {
  // Only async-signal-safe calls here.
  static const char kMessage[] =
      "adaspan: error: bus error reading a memory-mapped file: a data or checkpoint file was truncated or "
      "replaced while in use\n";
  const ssize_t ignored = ::write(STDERR_FILENO, kMessage, sizeof(kMessage) - 1);
  (void)ignored;
  ::_exit(1);
}

}  // namespace

void report_bus_errors() {
  struct sigaction action {};
  action.sa_handler = on_bus_error;
  sigemptyset(&action.sa_mask);
  sigaction(SIGBUS, &action, nullptr);
}

}  // namespace adaspan::cluster
