// Graceful stop on request: SIGUSR1 (what mpirun forwards to the ranks, and
// what Slurm's --signal=USR1@T sends before a time limit), SIGTERM and a
// first SIGINT set a flag that a long job polls between steps, so it can
// write a checkpoint and exit resumably. A second SIGINT kills as usual.
//
// No signal handler ever runs on a compute thread: install_stop_signals()
// blocks the three signals in the calling thread (and so in every thread
// started after it, which inherits the mask: MPI's, OpenMP's, NCCL's) and
// receives them on a thread of its own with sigwait(). A handler frame pushed
// onto a computing thread's stack is not safe here: oneDNN 2.6's JIT sgemm
// keeps data below the stack pointer, past the ABI's 128-byte red zone, and a
// signal delivered during it corrupted the heap (tests/test_cpu_gemm.cpp,
// suite stop_signals). Call it first in main, before MPI_Init starts threads.
#pragma once

namespace turbine {

void install_stop_signals();  // idempotent
bool stop_requested();
int stop_signal();  // the first signal that asked, 0 if none
const char* stop_signal_name();

// Exit status of a job that stopped on request after saving its state
// (EX_TEMPFAIL: run it again with --resume to continue).
inline constexpr int kExitStoppedResumable = 75;

}  // namespace turbine
