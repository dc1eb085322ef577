// fedsim's process manager (issue 17): rank 0 hands clients to the worker
// ranks and takes their results back; the workers are started once and
// serve every round (or, under FedBuff, the whole asynchronous run), each
// running its clients in a ClientPool under their budgets.
//
// Messages from rank 0 to a worker, received in the order sent: the global
// model (whenever it changed since the worker last got one, before the next
// task that must start from it), a task, or the end of the run. From a
// worker to rank 0: an outcome header, then the client's weights if it
// trained. With one rank, WorkerGroup drives a local pool instead.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dist/communicator.hpp"
#include "fl/pool.hpp"

namespace turbine::fl {

// A worker rank's life: serves rank 0 until the end of the run; returns
// whether rank 0 stopped early (a stop request, resumable).
bool serve_clients(dist::Communicator& comm, ClientPool& pool);

// A finished client and the worker (0-based) that ran it.
struct Ran {
  ClientOutcome outcome;
  int worker = 0;
};

class WorkerGroup {
 public:
  // scheduler: "dynamic" (FedHC: packed by share and memory, longest
  // predicted first, refilled as clients return) or "naive" (dealt round
  // robin, one at a time per worker). local: the pool rank 0 runs clients
  // in when it is alone (comm.size() == 1).
  WorkerGroup(dist::Communicator& comm, ClientPool* local, int64_t numel, std::string scheduler,
              double worker_memory_mb);
  int workers() const { return workers_; }
  bool remote() const { return remote_; }
  // The model the next tasks start from (sent to each worker before its
  // next task; clients already running keep theirs).
  void set_model(const std::vector<float>& weights);
  // Queues a task (its index unique among those outstanding); it starts
  // when the scheduler finds it room.
  void submit(const ClientTask& task, double predicted_seconds);
  // The next finished client, waiting up to timeout_s (0: not at all).
  std::optional<Ran> next(double timeout_s);
  int64_t outstanding() const { return outstanding_; }
  // Seconds since task `index` went to its worker; nullopt while it waits.
  std::optional<double> running_for(int64_t index) const;
  // naive: the next task is dealt to the first worker again (a new round).
  void restart_dealing() { dealt_count_ = 0; }
  // Drops the tasks not started yet and waits out (discarding) those
  // running: the end of an asynchronous run or a stop.
  void drain();
  // Ends the workers' service (they return from serve_clients).
  void shutdown(bool stopped_early);

 private:
  struct Queued {
    ClientTask task;
    double predicted = 0;
  };
  void fill(int worker);
  void send(int worker, const Queued& q);

  dist::Communicator& comm_;
  ClientPool* local_;
  int64_t numel_;
  std::string scheduler_;
  double worker_memory_mb_;
  int workers_;
  bool remote_;
  std::vector<float> model_;
  int64_t model_version_ = 0;
  std::vector<int64_t> worker_version_;
  std::vector<double> free_share_, free_memory_;
  std::vector<int64_t> in_flight_;
  std::vector<Queued> pending_;            // dynamic: longest predicted first
  std::vector<std::deque<Queued>> dealt_;  // naive: per worker
  int64_t dealt_count_ = 0;
  std::map<int64_t, std::pair<ClientTask, std::chrono::steady_clock::time_point>> running_;
  int64_t outstanding_ = 0;
  bool shut_down_ = false;
};

}  // namespace turbine::fl
