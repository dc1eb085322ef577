// Graceful stop on request: SIGUSR1 (what mpirun forwards to the ranks, and
// what Slurm's --signal=USR1@T sends before a time limit), SIGTERM and a
// first SIGINT set a flag that a long job polls between steps, so it can
// write a checkpoint and exit resumably. A second SIGINT kills as usual.
#pragma once

namespace turbine {

void install_stop_signals();
bool stop_requested();
int stop_signal();  // the signal that asked, 0 if none
const char* stop_signal_name();

// Exit status of a job that stopped on request after saving its state
// (EX_TEMPFAIL: run it again with --resume to continue).
inline constexpr int kExitStoppedResumable = 75;

}  // namespace turbine
