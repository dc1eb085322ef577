// Communicators over MPI for host tensors: a process group (world or a
// split of it) with the collectives data parallelism needs, and byte
// counters for every collective. MpiSession initializes and finalizes MPI
// (a lone process without mpirun is a world of one).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace turbine::dist {

class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

struct CommStats {
  int64_t allreduce_bytes = 0, reduce_scatter_bytes = 0, allgather_bytes = 0,
          broadcast_bytes = 0, calls = 0;
  int64_t total_bytes() const {
    return allreduce_bytes + reduce_scatter_bytes + allgather_bytes + broadcast_bytes;
  }
};

// The collectives on float buffers that data parallelism needs, whether the
// buffers are in host memory (Communicator, MPI) or on a GPU
// (NcclCommunicator): DataParallelOptimizer calls one of them through this.
class BufferCollectives {
 public:
  virtual ~BufferCollectives() = default;
  virtual void allreduce_sum(float* data, int64_t count) = 0;
  // data holds size() blocks of `block` values; afterwards block rank() holds
  // the sum over ranks of that block (the others are undefined).
  virtual void reduce_scatter_sum_inplace(float* data, int64_t block) = 0;
  // data holds size() blocks; block rank() is this rank's; all are filled.
  virtual void allgather_inplace(float* data, int64_t block) = 0;
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // Nonblocking collectives (in place): started now, complete after
  // wait_all(); the buffer must not be touched in between. Every rank
  // starts the same ones in the same order.
  virtual void start_allreduce_sum(float* data, int64_t count) = 0;
  // Rank `root` ends up with the sum; the others' buffers are unchanged.
  virtual void start_reduce_sum(float* data, int64_t count, int root) = 0;
  virtual void wait_all() = 0;
};

class Communicator final : public BufferCollectives {
 public:
  static Communicator world();
  // Ranks with the same color form a group, ordered by key.
  Communicator split(int color, int key) const;
  // The ranks of this group on the same node (shared memory), in rank order:
  // its rank() is the local rank that picks this process's GPU.
  Communicator node_local() const;
  ~Communicator() override;
  Communicator(Communicator&& other) noexcept;
  Communicator& operator=(Communicator&& other) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return name_; }

  void allreduce_sum(float* data, int64_t count) override;
  void allreduce_sum(double* data, int64_t count);
  void allreduce_max(double* data, int64_t count);
  void reduce_scatter_sum_inplace(float* data, int64_t block) override;
  void allgather_inplace(float* data, int64_t block) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  void barrier();
  // True on every rank if `value` is true on any rank.
  bool any(bool value);

  void start_allreduce_sum(float* data, int64_t count) override;
  void start_reduce_sum(float* data, int64_t count, int root) override;
  void wait_all() override;

  const CommStats& stats() const { return stats_; }

 private:
  Communicator(MPI_Comm comm, bool owned, std::string name);
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
  int rank_ = 0, size_ = 1;
  std::string name_;
  CommStats stats_;
  std::vector<MPI_Request> pending_;
};

}  // namespace turbine::dist
