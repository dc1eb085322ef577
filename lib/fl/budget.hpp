// A federated client's compute budget on a worker (fedsim, issue 17):
// FedHC gives every client a dedicated, constrained share of the hardware so
// its runtime reflects its device. A client with share s of a worker of C
// cores runs its kernels on ceil(s C) OpenMP threads and is paced to a duty
// cycle: after each unit of work (a training step) it sleeps until the CPU
// time it has used is at most s C times the wall time since it started, as
// cgroup v2's cpu.max quota would hold it (a token bucket of CPU seconds).
// The CPU time is the client thread's own (CLOCK_THREAD_CPUTIME_ID) times the
// threads: exact with one thread, an upper bound with more (the OpenMP team
// idles through the serial parts). The budget's memory cap is a MemoryBudget
// (lib/tensor) charged by every allocation the client makes. On a GPU the
// same pacing runs on busy wall time (ClientPool): a time slice of the
// device; CUDA MPS percentages and green-context SM partitions need one
// process or context per client, which the thread-per-client pool lacks.
#pragma once

#include <cstdint>
#include <functional>

namespace turbine::fl {

class CpuBudget {
 public:
  // share: of the worker, in (0, 1]; cores: the worker's cores (>= 1).
  CpuBudget(double share, double cores);
  int threads() const { return threads_; }
  double duty() const { return duty_; }    // of each of the threads, in (0, 1]
  double cores() const { return cores_; }  // share x worker cores

  // The clocks the pacing reads and the sleep it takes: seconds. Tests pass
  // their own; the defaults are the thread's CPU clock, the steady clock and
  // std::this_thread::sleep_for.
  struct Clocks {
    std::function<double()> cpu, wall;
    std::function<void(double)> sleep;
  };
  // Begins a budgeted run on the calling thread: its OpenMP threads set to
  // threads() and the clocks zeroed.
  void start(Clocks clocks = {});
  // After a unit of work: sleeps as long as the quota needs; returns the
  // seconds slept.
  double pace();
  double cpu_seconds() const;  // used since start, x threads
  double slept_seconds() const { return slept_; }

 private:
  double share_, cores_, duty_;
  int threads_;
  Clocks clocks_;
  double cpu0_ = 0, wall0_ = 0, slept_ = 0;
};

}  // namespace turbine::fl
