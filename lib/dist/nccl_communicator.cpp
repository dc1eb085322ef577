// NCCL collectives on the CUDA backend's stream (or, in a build without
// CUDA, a constructor that says so).
#include "dist/nccl_communicator.hpp"

#include "core/error.hpp"

#ifdef TURBINE_HAVE_CUDA
#include <nccl.h>

#include "kernels/backend.hpp"
#include "kernels/cuda/check.hpp"

#define TURBINE_NCCL_CHECK(call)                                                              \
  do {                                                                                        \
    const ncclResult_t turbine_nccl_ = (call);                                                \
    TURBINE_CHECK(turbine_nccl_ == ncclSuccess, "NCCL error {} ({}) in {}",                   \
                  static_cast<int>(turbine_nccl_), ncclGetErrorString(turbine_nccl_), #call); \
  } while (0)
#endif

namespace turbine::dist {

#ifdef TURBINE_HAVE_CUDA

struct NcclCommunicator::State {
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;       // the backend's compute stream
  cudaStream_t side_stream = nullptr;  // overlapped collectives
  cudaEvent_t event = nullptr;
  bool side_pending = false;
  // The side stream starts after what the compute stream has queued so far.
  void fork() {
    TURBINE_CUDA_CHECK(cudaEventRecord(event, stream));
    TURBINE_CUDA_CHECK(cudaStreamWaitEvent(side_stream, event, 0));
    side_pending = true;
  }
};

bool nccl_available() {
  return true;
}

namespace {
ncclDataType_t nccl_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return ncclFloat32;
    case DType::bf16:
      return ncclBfloat16;
    case DType::f16:
      return ncclFloat16;
    case DType::i32:
      return ncclInt32;
    case DType::i64:
      return ncclInt64;
    case DType::u8:
      return ncclUint8;
    case DType::i8:
      return ncclInt8;
    case DType::u16:
      break;  // NCCL has no 16-bit integer type
  }
  TURBINE_FAIL("NCCL collective on {}: NCCL has no such type (use i32)", dtype_name(dtype));
}

bool is_float(DType dtype) {
  return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16;
}
}  // namespace

NcclCommunicator::NcclCommunicator(Communicator& comm, Device device)
    : state_(std::make_unique<State>()), rank_(comm.rank()), size_(comm.size()) {
  TURBINE_CHECK(device.is_cuda(), "NCCL communicator on {}: NCCL needs a CUDA device",
                device.str());
  // The device's own backend's stream (a profiling wrapper forwards the same).
  state_->stream = static_cast<cudaStream_t>(kernels::cuda_backend(device.index).native_stream());
  TURBINE_CHECK(state_->stream != nullptr, "NCCL communicator on {}: its backend has no stream",
                device.str());
  ncclUniqueId id{};
  if (comm.rank() == 0) TURBINE_NCCL_CHECK(ncclGetUniqueId(&id));
  comm.broadcast(&id, sizeof(id), 0);
  TURBINE_NCCL_CHECK(ncclCommInitRank(&state_->comm, size_, id, rank_));
  TURBINE_CUDA_CHECK(cudaStreamCreateWithFlags(&state_->side_stream, cudaStreamNonBlocking));
  TURBINE_CUDA_CHECK(cudaEventCreateWithFlags(&state_->event, cudaEventDisableTiming));
}

NcclCommunicator::~NcclCommunicator() {
  if (!state_) return;
  if (state_->side_stream) cudaStreamSynchronize(state_->side_stream);
  if (state_->comm) ncclCommDestroy(state_->comm);
  if (state_->event) cudaEventDestroy(state_->event);
  if (state_->side_stream) cudaStreamDestroy(state_->side_stream);
}

void NcclCommunicator::start_allreduce_sum(float* data, int64_t count) {
  state_->fork();
  TURBINE_NCCL_CHECK(ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclSum, state_->comm,
                                   state_->side_stream));
  stats_.allreduce_bytes += count * 4;
  ++stats_.calls;
}

void NcclCommunicator::start_reduce_sum(float* data, int64_t count, int root) {
  state_->fork();
  TURBINE_NCCL_CHECK(ncclReduce(data, data, size_t(count), ncclFloat32, ncclSum, root, state_->comm,
                                state_->side_stream));
  stats_.reduce_scatter_bytes += count * 4;
  ++stats_.calls;
}

void NcclCommunicator::wait_all() {
  if (!state_->side_pending) return;
  TURBINE_CUDA_CHECK(cudaEventRecord(state_->event, state_->side_stream));
  TURBINE_CUDA_CHECK(cudaStreamWaitEvent(state_->stream, state_->event, 0));
  state_->side_pending = false;
}

void NcclCommunicator::allreduce_sum(float* data, int64_t count) {
  TURBINE_NCCL_CHECK(
      ncclAllReduce(data, data, size_t(count), ncclFloat32, ncclSum, state_->comm, state_->stream));
  stats_.allreduce_bytes += count * 4;
  ++stats_.calls;
}

void NcclCommunicator::reduce_scatter_sum_inplace(float* data, int64_t block) {
  TURBINE_NCCL_CHECK(ncclReduceScatter(data, data + block * rank_, size_t(block), ncclFloat32,
                                       ncclSum, state_->comm, state_->stream));
  stats_.reduce_scatter_bytes += block * size_ * 4;
  ++stats_.calls;
}

void NcclCommunicator::allgather_inplace(float* data, int64_t block) {
  TURBINE_NCCL_CHECK(ncclAllGather(data + block * rank_, data, size_t(block), ncclFloat32,
                                   state_->comm, state_->stream));
  stats_.allgather_bytes += block * size_ * 4;
  ++stats_.calls;
}

void NcclCommunicator::broadcast(void* data, int64_t bytes, int root) {
  TURBINE_NCCL_CHECK(
      ncclBroadcast(data, data, size_t(bytes), ncclUint8, root, state_->comm, state_->stream));
  stats_.broadcast_bytes += bytes;
  ++stats_.calls;
}

void NcclCommunicator::all_to_all(const void* send, void* recv, int64_t block, DType dtype) {
  const size_t esize = dtype_size(dtype);
  const int64_t bytes = block * size_ * int64_t(esize);
  check_out_of_place("all_to_all", send, bytes, recv, bytes);
  const ncclDataType_t type = nccl_type(dtype);
  TURBINE_NCCL_CHECK(ncclGroupStart());
  for (int peer = 0; peer < size_; ++peer) {
    TURBINE_NCCL_CHECK(ncclSend(static_cast<const char*>(send) + block * peer * esize,
                                size_t(block), type, peer, state_->comm, state_->stream));
    TURBINE_NCCL_CHECK(ncclRecv(static_cast<char*>(recv) + block * peer * esize, size_t(block),
                                type, peer, state_->comm, state_->stream));
  }
  TURBINE_NCCL_CHECK(ncclGroupEnd());
  stats_.all_to_all_bytes += bytes;
  ++stats_.calls;
}

void NcclCommunicator::allgather(const void* send, void* recv, int64_t block, DType dtype) {
  const int64_t bytes = block * int64_t(dtype_size(dtype));
  check_out_of_place("allgather", send, bytes, recv, bytes * size_);
  TURBINE_NCCL_CHECK(
      ncclAllGather(send, recv, size_t(block), nccl_type(dtype), state_->comm, state_->stream));
  stats_.allgather_bytes += bytes * size_;
  ++stats_.calls;
}

void NcclCommunicator::reduce_scatter_sum(const void* send, void* recv, int64_t block,
                                          DType dtype) {
  TURBINE_CHECK(is_float(dtype), "reduce_scatter_sum of {}: sums are of f32, bf16 or f16",
                dtype_name(dtype));
  const int64_t bytes = block * int64_t(dtype_size(dtype));
  check_out_of_place("reduce_scatter_sum", send, bytes * size_, recv, bytes);
  TURBINE_NCCL_CHECK(ncclReduceScatter(send, recv, size_t(block), nccl_type(dtype), ncclSum,
                                       state_->comm, state_->stream));
  stats_.reduce_scatter_bytes += bytes * size_;
  ++stats_.calls;
}

#else

struct NcclCommunicator::State {};

bool nccl_available() {
  return false;
}

NcclCommunicator::NcclCommunicator(Communicator&, Device device) {
  TURBINE_FAIL(
      "NCCL communicator on {}: this build has no CUDA backend (rebuild where nvcc "
      "is available)",
      device.str());
}

NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::allreduce_sum(float*, int64_t) {}
void NcclCommunicator::reduce_scatter_sum_inplace(float*, int64_t) {}
void NcclCommunicator::allgather_inplace(float*, int64_t) {}
void NcclCommunicator::broadcast(void*, int64_t, int) {}
void NcclCommunicator::all_to_all(const void*, void*, int64_t, DType) {}
void NcclCommunicator::allgather(const void*, void*, int64_t, DType) {}
void NcclCommunicator::reduce_scatter_sum(const void*, void*, int64_t, DType) {}
void NcclCommunicator::start_allreduce_sum(float*, int64_t) {}
void NcclCommunicator::start_reduce_sum(float*, int64_t, int) {}
void NcclCommunicator::wait_all() {}

#endif

}  // namespace turbine::dist
