// Heartbeats between the ranks of a job, so that a rank that stops answering
// ends the job within a bounded time. A rank killed outright is noticed by
// mpirun (or srun) at once, but one that is stopped (SIGSTOP, a debugger, a
// node that froze without closing its sockets) leaves the others waiting in
// a collective until the wall-clock limit burns the allocation: MPI and NCCL
// collectives have no timeout.
//
// A thread on every rank exchanges small messages with rank 0 over a
// duplicate of the world communicator (a star: rank 0 hears every rank and
// every rank hears rank 0). A peer not heard from for `timeout_s` is
// reported, naming its rank, host and pid, and the detecting rank exits with
// status kExitRankLost, which makes mpirun (or srun --kill-on-bad-exit) end
// the others; the checkpoints already written are complete (they
// are renamed into place only when every rank has finished writing), so the
// job continues from the newest with --resume. The thread runs beside the
// work, so a long step, a slow checkpoint or a GPU kernel never looks like a
// lost rank; only a process that no longer runs does.
//
// The ranks leave together: the destructor says goodbye and waits, still
// watching, until its peers have said goodbye too, so a rank that stops
// while the others finish is still caught, and MPI_Finalize (which waits for
// every rank) is entered only when all are alive and done.
//
// TURBINE_HEARTBEAT_TIMEOUT (seconds, default 300; 0 turns it off) sets the
// timeout; heartbeats go every timeout/10 (0.1 s to 10 s). It needs
// MPI_THREAD_MULTIPLE (MpiSession asks for it); an MPI without it gets a
// warning and no heartbeat.
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dist/communicator.hpp"

namespace turbine::dist {

// Exit status of a job ended because a rank stopped answering
// (EX_UNAVAILABLE; 75 is a stop on request, 1 an error).
inline constexpr int kExitRankLost = 69;

struct HeartbeatOptions {
  double timeout_s = 300;  // 0: no heartbeat
  double interval_s = 10;
  // TURBINE_HEARTBEAT_TIMEOUT, else the defaults; a bad value is an error.
  static HeartbeatOptions from_environment();
};

class Heartbeat {
 public:
  // Collective over `world` (it is duplicated, and hosts and pids gathered).
  Heartbeat(const Communicator& world, HeartbeatOptions options);
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  bool active() const { return thread_.joinable(); }

 private:
  void watch();
  [[noreturn]] void lost(int peer, double silent_s);

  HeartbeatOptions options_;
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;  // rank 0: every rank's; others: rank 0's at [0]
  std::vector<long> pids_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> leaving_{false};
};

}  // namespace turbine::dist
