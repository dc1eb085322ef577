// The CUDA backend's construction (host code: compiled by g++, not nvcc),
// caching allocator, copies and error reporting. Freed blocks are kept by
// the stream they were freed on and their rounded size, and handed out
// again to work on that stream: it runs in order, so a block freed by the
// host can be reused by the next kernel without waiting. Blocks freed on a
// lane (lanes.cpp) become idle, anyone's, when the lane closes (its work
// done). When cudaMalloc fails the cache is emptied and the allocation
// retried; a real out-of-memory error says how much was asked, held and free.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <memory>
#include <mutex>

#include "core/error.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"

namespace turbine::kernels {

namespace cuda {

void fail_cuda(cudaError_t status, const char* call, const char* file, int line) {
  throw_error(file, line,
              fmt::format("CUDA error {} ({}) in {}", cudaGetErrorName(status),
                          cudaGetErrorString(status), call));
}

void fail_printf(const char* file, int line, const char* format, ...) {
  char buffer[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buffer, sizeof(buffer), format, args);
  va_end(args);
  throw_error(file, line, buffer);
}

void fail_cublas(cublasStatus_t status, const char* call, const char* file, int line) {
  throw_error(file, line,
              fmt::format("cuBLAS error {} ({}) in {}", cublasGetStatusName(status),
                          cublasGetStatusString(status), call));
}

}  // namespace cuda

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device / no driver" status
    return 0;
  }
  return count;
}

std::string cuda_device_uuid(int device) {
  cudaDeviceProp prop{};
  TURBINE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  std::string hex;
  for (const char byte : prop.uuid.bytes) hex += fmt::format("{:02x}", uint8_t(byte));
  return hex;
}

namespace {
constexpr size_t kLtWorkspaceBytes = size_t(32) << 20;
constexpr size_t kSmallBlock = size_t(1) << 20;
}  // namespace

CudaBackend::CudaBackend(int device) : device_(device), name_(fmt::format("cuda:{}", device)) {
  const int count = cuda_device_count();
  TURBINE_CHECK(device >= 0 && device < count,
                "device cuda:{} requested, but {} CUDA device(s) are visible{}", device, count,
                count == 0 ? " (no GPU or no NVIDIA driver on this machine): use device cpu" : "");
  TURBINE_CUDA_CHECK(cudaSetDevice(device));
  TURBINE_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  TURBINE_CUDA_CHECK(cudaStreamCreateWithFlags(&transfer_stream_, cudaStreamNonBlocking));
  TURBINE_CUDA_CHECK(cudaEventCreateWithFlags(&compute_mark_, cudaEventDisableTiming));
  TURBINE_CUDA_CHECK(cudaEventCreateWithFlags(&transfer_mark_, cudaEventDisableTiming));
  TURBINE_CUBLAS_CHECK(cublasLtCreate(&lt_));
  lt_workspace_bytes_ = kLtWorkspaceBytes;
  TURBINE_CUDA_CHECK(cudaMalloc(&lt_workspace_, lt_workspace_bytes_));
}

CudaBackend::~CudaBackend() {
  // Destructors must not throw: errors at teardown are ignored.
  cudaSetDevice(device_);
  if (stream_) cudaStreamSynchronize(stream_);
  if (transfer_stream_) cudaStreamSynchronize(transfer_stream_);
  release_cached();
  if (scratch_) cudaFree(scratch_);
  if (alibi_device_) cudaFree(alibi_device_);
  if (lt_workspace_) cudaFree(lt_workspace_);
  if (lt_) cublasLtDestroy(lt_);
  if (blas_) cublasDestroy(blas_);
  if (compute_mark_) cudaEventDestroy(compute_mark_);
  if (transfer_mark_) cudaEventDestroy(transfer_mark_);
  if (transfer_stream_) cudaStreamDestroy(transfer_stream_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaBackend::synchronize() {
  if (const LaneState* l = lane()) {  // a lane's transfers run on its stream
    TURBINE_CUDA_CHECK(cudaStreamSynchronize(l->stream));
    return;
  }
  TURBINE_CUDA_CHECK(cudaStreamSynchronize(stream_));
  TURBINE_CUDA_CHECK(cudaStreamSynchronize(transfer_stream_));
}

void* CudaBackend::allocate_host(size_t bytes) {
  void* ptr = nullptr;
  TURBINE_CUDA_CHECK(cudaMallocHost(&ptr, std::max<size_t>(bytes, 1)));
  return ptr;
}

void CudaBackend::deallocate_host(void* ptr, size_t) {
  if (ptr) TURBINE_CUDA_CHECK(cudaFreeHost(ptr));
}

void CudaBackend::start_transfer() {
  TURBINE_CUDA_CHECK(cudaEventRecord(compute_mark_, stream_));
  TURBINE_CUDA_CHECK(cudaStreamWaitEvent(transfer_stream_, compute_mark_, 0));
}

// On a lane the transfers queue on the lane's stream: in order with its
// work, and apart from other threads' (the transfer stream and its marks are
// the backend's, one thread's).
void CudaBackend::copy_from_host_async(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  if (const LaneState* l = lane()) {
    TURBINE_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, l->stream));
    return;
  }
  start_transfer();
  TURBINE_CUDA_CHECK(
      cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, transfer_stream_));
}

void CudaBackend::copy_to_host_async(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (const LaneState* l = lane()) {
    TURBINE_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, l->stream));
    return;
  }
  start_transfer();
  TURBINE_CUDA_CHECK(
      cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, transfer_stream_));
}

void CudaBackend::wait_for_transfers() {
  if (lane()) return;
  TURBINE_CUDA_CHECK(cudaEventRecord(transfer_mark_, transfer_stream_));
  TURBINE_CUDA_CHECK(cudaStreamWaitEvent(stream_, transfer_mark_, 0));
}

void CudaBackend::synchronize_transfers() {
  if (const LaneState* l = lane()) {
    TURBINE_CUDA_CHECK(cudaStreamSynchronize(l->stream));
    return;
  }
  TURBINE_CUDA_CHECK(cudaStreamSynchronize(transfer_stream_));
}

size_t CudaBackend::rounded(size_t bytes) {
  if (bytes <= kSmallBlock) return bytes == 0 ? 512 : (bytes + 511) / 512 * 512;
  return (bytes + kSmallBlock - 1) / kSmallBlock * kSmallBlock;
}

int64_t CudaBackend::reserved_bytes() const {
  std::lock_guard lock(mutex_);
  return reserved_;
}

int64_t CudaBackend::available_bytes() const {
  size_t free_bytes = 0, total_bytes = 0;
  if (!lane()) TURBINE_CUDA_CHECK(cudaSetDevice(device_));  // a lane keeps its context
  TURBINE_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  int64_t cached = 0;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [stream, sizes] : free_blocks_)
      for (const auto& [size, blocks] : sizes) cached += int64_t(size * blocks.size());
  }
  return int64_t(free_bytes) + cached;
}

void* CudaBackend::allocate(size_t bytes) {
  const size_t size = rounded(bytes);
  const cudaStream_t on = stream();
  {
    std::lock_guard lock(mutex_);
    // A block freed on this stream (its earlier uses are queued before what
    // comes next), else an idle one.
    for (const cudaStream_t from : {on, cudaStream_t(nullptr)}) {
      auto sizes = free_blocks_.find(from);
      if (sizes == free_blocks_.end()) continue;
      auto it = sizes->second.find(size);
      if (it != sizes->second.end() && !it->second.empty()) {
        void* ptr = it->second.back();
        it->second.pop_back();
        return ptr;
      }
    }
  }
  void* ptr = nullptr;
  cudaError_t status = cudaMalloc(&ptr, size);
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    release_cached();
    status = cudaMalloc(&ptr, size);
  }
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    TURBINE_FAIL(
        "out of GPU memory on {}: asked for {:.1f} MiB with {:.1f} MiB held by Turbine and "
        "{:.1f} of {:.1f} MiB free on the card; use a smaller micro batch, sequence or model, or "
        "more ranks with ZeRO",
        name_, size / 1048576.0, reserved_bytes() / 1048576.0, free_bytes / 1048576.0,
        total_bytes / 1048576.0);
  }
  TURBINE_CUDA_CHECK(status);
  std::lock_guard lock(mutex_);
  reserved_ += static_cast<int64_t>(size);
  return ptr;
}

void CudaBackend::deallocate(void* ptr, size_t bytes) {
  if (ptr == nullptr) return;
  const cudaStream_t on = stream();
  std::lock_guard lock(mutex_);
  free_blocks_[on][rounded(bytes)].push_back(ptr);
}

void CudaBackend::close_lane_blocks(cudaStream_t lane_stream) {
  std::lock_guard lock(mutex_);
  auto sizes = free_blocks_.find(lane_stream);
  if (sizes == free_blocks_.end()) return;
  auto& idle = free_blocks_[nullptr];
  for (auto& [size, blocks] : sizes->second)
    idle[size].insert(idle[size].end(), blocks.begin(), blocks.end());
  free_blocks_.erase(sizes);
}

void CudaBackend::release_cached() {
  // Blocks may have been freed on any stream (lanes): wait for all of them.
  if (stream_) synchronize_all();
  std::lock_guard lock(mutex_);
  for (auto& [stream, sizes] : free_blocks_)
    for (auto& [size, blocks] : sizes)
      for (void* ptr : blocks) {
        cudaFree(ptr);
        reserved_ -= static_cast<int64_t>(size);
      }
  free_blocks_.clear();
}

void CudaBackend::add_lane_stream(cudaStream_t s) {
  std::lock_guard lock(mutex_);
  lane_streams_.push_back(s);
}

void CudaBackend::remove_lane_stream(cudaStream_t s) {
  std::lock_guard lock(mutex_);
  std::erase(lane_streams_, s);
}

void CudaBackend::synchronize_all() {
  std::vector<cudaStream_t> streams = {stream_, transfer_stream_};
  {
    std::lock_guard lock(mutex_);
    streams.insert(streams.end(), lane_streams_.begin(), lane_streams_.end());
  }
  for (const cudaStream_t s : streams) cudaStreamSynchronize(s);
}

void* CudaBackend::scratch(size_t bytes) {
  if (LaneState* l = lane()) {
    if (bytes > l->scratch_bytes) {  // the old one is freed in the lane's stream order
      deallocate(l->scratch, l->scratch_bytes);
      l->scratch_bytes = std::max(bytes, size_t(1) << 16);
      l->scratch = allocate(l->scratch_bytes);
    }
    return l->scratch;
  }
  if (bytes > scratch_bytes_) {
    if (scratch_) {
      TURBINE_CUDA_CHECK(cudaStreamSynchronize(stream_));
      TURBINE_CUDA_CHECK(cudaFree(scratch_));
    }
    scratch_bytes_ = std::max(bytes, size_t(1) << 16);
    TURBINE_CUDA_CHECK(cudaMalloc(&scratch_, scratch_bytes_));
  }
  return scratch_;
}

const float* CudaBackend::stage_alibi(const float* host_slopes, int heads) {
  if (host_slopes == nullptr) return nullptr;
  const std::vector<float> wanted(host_slopes, host_slopes + heads);
  std::lock_guard lock(alibi_mutex_);  // lanes' threads share the copy
  if (wanted != alibi_host_) {
    if (alibi_device_) {
      synchronize_all();  // lanes' threads may be using it
      TURBINE_CUDA_CHECK(cudaFree(alibi_device_));
      alibi_device_ = nullptr;
    }
    TURBINE_CUDA_CHECK(cudaMalloc(&alibi_device_, sizeof(float) * heads));
    TURBINE_CUDA_CHECK(
        cudaMemcpy(alibi_device_, host_slopes, sizeof(float) * heads, cudaMemcpyHostToDevice));
    alibi_host_ = wanted;
  }
  return alibi_device_;
}

void CudaBackend::copy(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  TURBINE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void CudaBackend::copy_to_host(void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  const cudaStream_t on = stream();
  TURBINE_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, on));
  TURBINE_CUDA_CHECK(cudaStreamSynchronize(on));
}

void CudaBackend::copy_from_host(void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  // The caller may free host_src on return: wait for the copy.
  const cudaStream_t on = stream();
  TURBINE_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, on));
  TURBINE_CUDA_CHECK(cudaStreamSynchronize(on));
}

Backend& cuda_backend(int device_index) {
  static std::mutex mutex;
  static std::array<std::unique_ptr<CudaBackend>, 16> backends;
  TURBINE_CHECK(device_index >= 0 && device_index < static_cast<int>(backends.size()),
                "device cuda:{} is out of range (0..{})", device_index, backends.size() - 1);
  std::lock_guard lock(mutex);
  auto& slot = backends[device_index];
  if (!slot) slot = std::make_unique<CudaBackend>(device_index);
  return *slot;
}

}  // namespace turbine::kernels
