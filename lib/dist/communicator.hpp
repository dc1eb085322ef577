// Communicators over MPI for host tensors: a process group (world or a
// split of it) with the collectives data, tensor and sequence parallelism
// need, and byte counters for every collective. MpiSession initializes and
// finalizes MPI (a lone process without mpirun is a world of one).
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tensor/dtype.hpp"

namespace turbine::dist {

// Throws naming `what` and MPI's own words unless code is MPI_SUCCESS.
void check_mpi(int code, const char* what);

class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
};

// Bytes each rank's collectives worked on, by collective: every call adds the
// size of its whole buffer on this rank (an all-reduce's buffer, a
// reduce-scatter's input, an all-gather's output, an all-to-all's send
// buffer, including the block a rank keeps), the message size of NCCL's and
// DeepSpeed's tables. The traffic on a link follows from it by the usual
// factors ((P-1)/P for all-gather, reduce-scatter and all-to-all; twice that
// for a ring all-reduce).
struct CommStats {
  int64_t allreduce_bytes = 0, reduce_scatter_bytes = 0, allgather_bytes = 0, broadcast_bytes = 0,
          all_to_all_bytes = 0, calls = 0;
  int64_t p2p_bytes = 0;  // sent and received point to point (not in total_bytes())
  int64_t total_bytes() const {
    return allreduce_bytes + reduce_scatter_bytes + allgather_bytes + broadcast_bytes +
           all_to_all_bytes;
  }
  CommStats& operator+=(const CommStats& other);
};

// The collectives on buffers whether they are in host memory (Communicator,
// MPI) or on a GPU (NcclCommunicator): DataParallelOptimizer and the tensor
// collectives (dist/collectives.hpp) call one of them through this. The
// in-place ones are f32 (gradients); the out-of-place ones move activations
// of any dtype (sums: f32 everywhere, bf16/f16 on NCCL only).
class BufferCollectives {
 public:
  virtual ~BufferCollectives() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const CommStats& stats() const = 0;
  virtual void allreduce_sum(float* data, int64_t count) = 0;
  // data holds size() blocks of `block` values; afterwards block rank() holds
  // the sum over ranks of that block (the others are undefined).
  virtual void reduce_scatter_sum_inplace(float* data, int64_t block) = 0;
  // data holds size() blocks; block rank() is this rank's; all are filled.
  virtual void allgather_inplace(float* data, int64_t block) = 0;
  virtual void broadcast(void* data, int64_t bytes, int root) = 0;
  // Out of place (send and recv must not overlap), `block` elements of
  // `dtype` per rank. all_to_all: send and recv hold size() blocks; block j
  // of send goes to rank j, and recv's block j comes from rank j (Ulysses'
  // exchange). allgather: send is one block, recv's block j is rank j's.
  // reduce_scatter_sum: send holds size() blocks, recv gets the sum over
  // ranks of their block rank().
  virtual void all_to_all(const void* send, void* recv, int64_t block, DType dtype) = 0;
  virtual void allgather(const void* send, void* recv, int64_t block, DType dtype) = 0;
  virtual void reduce_scatter_sum(const void* send, void* recv, int64_t block, DType dtype) = 0;
  // Nonblocking collectives (in place): started now, complete after
  // wait_all(); the buffer must not be touched in between. Every rank
  // starts the same ones in the same order.
  virtual void start_allreduce_sum(float* data, int64_t count) = 0;
  // Rank `root` ends up with the sum; the others' buffers are unchanged.
  virtual void start_reduce_sum(float* data, int64_t count, int root) = 0;
  virtual void wait_all() = 0;
};

// What every out-of-place collective checks before it starts: a
// non-negative block and disjoint send and recv buffers.
void check_out_of_place(const char* collective, const void* send, int64_t send_bytes,
                        const void* recv, int64_t recv_bytes);

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

  int rank() const override { return rank_; }
  // The MPI communicator, for code that calls MPI itself (the heartbeat thread).
  MPI_Comm handle() const { return comm_; }
  int size() const override { return size_; }
  const std::string& name() const { return name_; }

  void allreduce_sum(float* data, int64_t count) override;
  void allreduce_sum(double* data, int64_t count);
  void allreduce_max(double* data, int64_t count);
  void reduce_scatter_sum_inplace(float* data, int64_t block) override;
  void allgather_inplace(float* data, int64_t block) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  // A small broadcast (under 2 GiB) that ranks may wait on for long (a
  // server's other ranks between requests): they poll it, sleeping between
  // polls once it has not come for a millisecond, instead of spinning in
  // MPI. Costs up to `poll_us` of latency after an idle spell.
  void broadcast_idle(void* data, int64_t bytes, int root, int poll_us = 500);
  void all_to_all(const void* send, void* recv, int64_t block, DType dtype) override;
  void allgather(const void* send, void* recv, int64_t block, DType dtype) override;
  void reduce_scatter_sum(const void* send, void* recv, int64_t block, DType dtype) override;
  void barrier();
  // Point to point (fedsim's server and its workers), bytes of any size, in
  // order per (source, tag). recv_any takes the next message with `tag` from
  // any rank and returns its source; its size must be `bytes`.
  void send(const void* data, int64_t bytes, int dest, int tag);
  void recv(void* data, int64_t bytes, int source, int tag);
  int recv_any(void* data, int64_t bytes, int tag);
  // A send that does not wait (fedsim's workers return results while rank 0
  // may be sending them a model): `data` must stay valid until
  // send_done(request) returns true or wait_send(request) returns.
  using SendRequest = std::vector<MPI_Request>;
  SendRequest start_send(const void* data, int64_t bytes, int dest, int tag);
  bool send_done(SendRequest& request);
  void wait_send(SendRequest& request);
  // Without waiting: the source of a message with `tag` (any tag if -1)
  // ready to receive from `source` (any rank if -1), or -1 if there is none;
  // *found_tag gets its tag.
  int probe(int tag, int source = -1, int* found_tag = nullptr);
  // True on every rank if `value` is true on any rank.
  bool any(bool value);
  // Every rank's string, in rank order; root's string on every rank.
  std::vector<std::string> allgather_strings(const std::string& mine);
  std::string broadcast_string(const std::string& text, int root);

  void start_allreduce_sum(float* data, int64_t count) override;
  void start_reduce_sum(float* data, int64_t count, int root) override;
  void wait_all() override;

  const CommStats& stats() const override { return stats_; }

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
