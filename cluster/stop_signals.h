#pragma once
// Requests to stop, from the scheduler or the user: SIGUSR1 (Slurm's --signal before the time
// limit), SIGTERM (preemption, scancel) and SIGINT (Ctrl-C) set a flag that the training loop
// reads at each step boundary, where every rank agrees to checkpoint and exit. A second SIGINT
// exits at once (status 130).
namespace adaspan::cluster {

void install_stop_signals();
// The signal number received first, or 0.
int stop_signal();
// Tests: forget a received signal.
void clear_stop_signal();

}  // namespace adaspan::cluster
