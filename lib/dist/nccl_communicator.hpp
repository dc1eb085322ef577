// Collectives over NCCL for buffers in GPU memory: the device twin of
// Communicator's buffer collectives, built from an MPI communicator (rank 0
// makes the NCCL id and broadcasts it over MPI). Every call is queued on the
// device backend's stream (Backend::native_stream), in order with the
// kernels that produce and consume the buffers, so no extra synchronization
// is needed and the caching allocator's reuse rule (one stream) holds. One
// GPU per rank.
#pragma once

#include <cstdint>
#include <memory>

#include "dist/communicator.hpp"
#include "tensor/dtype.hpp"

namespace turbine::dist {

class NcclCommunicator final : public BufferCollectives {
 public:
  // Collective over `comm`: every rank calls it with its own device.
  NcclCommunicator(Communicator& comm, Device device);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void allreduce_sum(float* data, int64_t count) override;
  void reduce_scatter_sum_inplace(float* data, int64_t block) override;
  void allgather_inplace(float* data, int64_t block) override;
  void broadcast(void* data, int64_t bytes, int root) override;
  // all_to_all is grouped ncclSend/ncclRecv pairs, as NCCL documents it.
  void all_to_all(const void* send, void* recv, int64_t block, DType dtype) override;
  void allgather(const void* send, void* recv, int64_t block, DType dtype) override;
  void reduce_scatter_sum(const void* send, void* recv, int64_t block, DType dtype) override;

  // The overlapped ones run on a second stream, started once the work
  // queued so far on the compute stream is done; wait_all() makes the
  // compute stream wait for them (no host blocking).
  void start_allreduce_sum(float* data, int64_t count) override;
  void start_reduce_sum(float* data, int64_t count, int root) override;
  void wait_all() override;

  const CommStats& stats() const override { return stats_; }

 private:
  struct State;
  std::unique_ptr<State> state_;
  int rank_ = 0, size_ = 1;
  CommStats stats_;
};

// True when this build has NCCL (the CUDA backend was compiled).
bool nccl_available();

}  // namespace turbine::dist
