// A worker's clients running together (fedsim, issue 17): FedHC's process
// manager and resource sharing. A ClientPool lives as long as its worker
// rank: it holds the global model once, the training split once, and a set
// of ClientTrainer slots (model, flat weights and gradients) created as
// more clients run at once and reused for every later client, round after
// round. Each client runs on its own thread under its budget: its compute
// share as OpenMP threads and a paced duty cycle (CpuBudget), its memory cap
// charged by every allocation it makes (MemoryBudget); a client over its cap
// fails as the device would and is reported, and the others go on. On a GPU
// each client's thread holds a lane of the device (its own stream, scratch
// and GEMM workspace: backend.hpp) and its share is an SM partition of the
// device (a green context over share x its SM groups, disjoint from the
// partitions running beside it while their shares fit) or, where the device
// has none or the config asks, a time slice paced by busy wall time.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "fl/client.hpp"

namespace turbine::fl {

// One client to run: which, under what budget, with what workload.
struct ClientTask {
  int64_t client = -1;
  int64_t index = -1;                       // in the round's selection
  double share = 1.0;                       // of the worker's compute, (0, 1]
  double memory_mb = 0;                     // cap; 0: none
  int64_t batch_size = 0, local_steps = 0;  // 0: the config's
  uint64_t seed = 0;
};

// The local training a task runs: `base` (the config's) with its workload.
LocalTraining local_for(const LocalTraining& base, const ClientTask& task);

enum class ClientStatus { ok = 0, out_of_memory = 1 };

// How a client holds its share of a GPU (budget.gpu_share): automatic is an
// SM partition where the device offers them, else a time slice.
enum class GpuShare { automatic, sm_partition, time_slice };
GpuShare gpu_share_named(const std::string& name);  // auto | sm_partition | time_slice
// Whether clients on `device` hold SM partitions under `gpu` (false off a
// GPU); `note` says which and why. Fails for sm_partition where the device
// has none.
bool gpu_partitions(Device device, GpuShare gpu, std::string* note = nullptr);

struct ClientOutcome {
  ClientTask task;
  ClientStatus status = ClientStatus::ok;
  LocalResult result;  // weights empty unless ok
  double cpu_seconds = 0, slept_seconds = 0;
  int64_t peak_bytes = 0;  // under the memory cap (0 without one)
  int threads = 1;
  int sms = 0;  // of its SM partition on a GPU (0: none)
  std::string error;
};

class ClientPool {
 public:
  // cores: the worker's cores that shares are of. gpu: how shares of a GPU
  // are held (sm_partition on a device without partitions fails here).
  ClientPool(const Task& task, Device device, const std::vector<std::vector<int64_t>>& parts,
             const LocalTraining& local, double cores, GpuShare gpu = GpuShare::automatic);
  ~ClientPool();
  ClientPool(const ClientPool&) = delete;
  ClientPool& operator=(const ClientPool&) = delete;

  // The global model the next clients start from (those running keep the
  // one they started from: FedBuff's stale clients).
  void set_global(std::vector<float> global);
  const std::vector<float>& global() const { return *global_; }
  // Starts `task` on a free slot (a new one if none is free).
  void start(const ClientTask& task);
  // A finished client's outcome, waiting up to `timeout_s` (0: not at all).
  std::optional<ClientOutcome> finished(double timeout_s);
  int64_t running() const;
  int64_t slots() const { return int64_t(slots_.size()); }
  double cores() const { return cores_; }
  bool partitions() const { return partitions_; }  // on a GPU, else time slices
  ClientTrainer& trainer(int64_t slot) { return *slots_.at(size_t(slot))->trainer; }

 private:
  struct Slot {
    std::unique_ptr<ClientTrainer> trainer;
    std::thread thread;
    bool busy = false;
  };
  ClientOutcome run(Slot& slot, const ClientTask& task,
                    const std::shared_ptr<const std::vector<float>>& global);

  const Task& task_;
  Device device_;
  const std::vector<std::vector<int64_t>>& parts_;
  LocalTraining local_;
  double cores_;
  bool partitions_ = false;
  std::shared_ptr<const std::vector<float>> global_;
  std::vector<std::unique_ptr<Slot>> slots_;
  mutable std::mutex mutex_;
  std::condition_variable done_cv_;
  struct Done {
    Slot* slot;
    ClientOutcome outcome;
    std::exception_ptr error;
  };
  std::deque<Done> done_;
};

}  // namespace turbine::fl
