#include "cluster/stop_signals.h"

#include <signal.h>
#include <unistd.h>

#include <csignal>

namespace adaspan::cluster {
namespace {

volatile std::sig_atomic_t g_signal = 0;
volatile std::sig_atomic_t g_interrupts = 0;

extern "C" void on_stop_signal(int sig) {
  if (sig == SIGINT && ++g_interrupts >= 2) ::_exit(130);  // async-signal-safe
  if (g_signal == 0) g_signal = sig;
}

}  // namespace

void install_stop_signals() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // blocking calls (file reads, MPI) go on; the flag is read between steps
  for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaction(sig, &action, nullptr);
}

int stop_signal() { return g_signal; }

void clear_stop_signal() {
  g_signal = 0;
  g_interrupts = 0;
}

}  // namespace adaspan::cluster
