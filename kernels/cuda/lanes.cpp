// The CUDA backend's lanes (backend.hpp's Lane; host code, compiled by g++):
// a stream, scratch and cuBLASLt workspace per thread that holds one, and,
// with a partition, a green context over some of the device's SM groups.
//
// The device's SMs are split once into groups of its minimum partition size
// (cuDevSmResourceSplitByCount; 8 SMs on Hopper: 16 groups of H100's 132,
// the other 4 SMs unused by partitioned lanes). A lane of share s takes
// round(s x groups) groups, at least one, the least used by the lanes open
// at that time (lowest index first), makes a green context of them, makes
// it current on its thread (as PyTorch's green contexts do: work the runtime
// queues from the thread runs there) and queues on a stream of it. Green
// contexts share the primary context's memory, so buffers move freely
// between lanes. The driver's entry points are looked up through the
// runtime (cudaGetDriverEntryPointByVersion): no link to libcuda, and a
// driver without green contexts leaves lanes without partitions.
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"

namespace turbine::kernels {

thread_local CudaBackend::LaneState* CudaBackend::tls_lane_ = nullptr;

namespace {
constexpr size_t kLaneWorkspaceBytes = size_t(32) << 20;  // as the backend's own
}  // namespace

CudaBackend::LaneState* CudaBackend::lane() const {
  return tls_lane_ != nullptr && tls_lane_->owner == this ? tls_lane_ : nullptr;
}

cudaStream_t CudaBackend::stream() const {
  const LaneState* l = lane();
  return l ? l->stream : stream_;
}

// The device's SM groups and the driver entry points that make green
// contexts of them.
class CudaBackend::SmGroups {
 public:
  explicit SmGroups(int device);
  bool ok() const { return why_not_.empty(); }
  const std::string& why_not() const { return why_not_; }
  int groups() const { return int(groups_.size()); }
  int sms_per_group() const { return sms_per_group_; }
  int device_sms() const { return device_sms_; }

  // A green context over `count` groups, the least used; made current on the
  // calling thread, with a stream of its own.
  struct Partition {
    std::vector<int> groups;
    CUgreenCtx green = nullptr;
    bool pushed = false;  // current on the calling thread
    CUstream stream = nullptr;
  };
  Partition open(int count);
  void close(Partition& p);  // after the stream's work is done

 private:
#if CUDART_VERSION >= 12040
  template <typename F>
  void entry(const char* symbol, F*& fn);
  CUresult (*get_resource_)(CUdevice, CUdevResource*, CUdevResourceType) = nullptr;
  CUresult (*split_)(CUdevResource*, unsigned*, const CUdevResource*, CUdevResource*, unsigned,
                     unsigned) = nullptr;
  CUresult (*describe_)(CUdevResourceDesc*, CUdevResource*, unsigned) = nullptr;
  CUresult (*create_)(CUgreenCtx*, CUdevResourceDesc, CUdevice, unsigned) = nullptr;
  CUresult (*destroy_)(CUgreenCtx) = nullptr;
  CUresult (*to_context_)(CUcontext*, CUgreenCtx) = nullptr;
  CUresult (*push_)(CUcontext) = nullptr;
  CUresult (*pop_)(CUcontext*) = nullptr;
  CUresult (*stream_create_)(CUstream*, CUgreenCtx, unsigned, int) = nullptr;
  CUresult (*error_name_)(CUresult, const char**) = nullptr;
  std::vector<CUdevResource> groups_;
  void check(CUresult status, const char* call) const;
#else
  std::vector<int> groups_;
#endif
  int device_ = 0, sms_per_group_ = 0, device_sms_ = 0;
  std::string why_not_;
  std::vector<int> use_;  // lanes open on each group
  std::mutex mutex_;
};

#if CUDART_VERSION >= 12040

template <typename F>
void CudaBackend::SmGroups::entry(const char* symbol, F*& fn) {
  void* ptr = nullptr;
  cudaDriverEntryPointQueryResult found{};
  // 12.4: the driver version that added green contexts.
  const cudaError_t status =
      cudaGetDriverEntryPointByVersion(symbol, &ptr, 12040, cudaEnableDefault, &found);
  if (status != cudaSuccess || found != cudaDriverEntryPointSuccess || ptr == nullptr) {
    cudaGetLastError();
    if (why_not_.empty())
      why_not_ = fmt::format(
          "the NVIDIA driver lacks {} (green contexts need a 12.4 driver or "
          "newer)",
          symbol);
    return;
  }
  fn = reinterpret_cast<F*>(ptr);
}

void CudaBackend::SmGroups::check(CUresult status, const char* call) const {
  if (status == CUDA_SUCCESS) return;
  const char* name = "?";
  if (error_name_) error_name_(status, &name);
  TURBINE_FAIL("CUDA driver error {} in {} (green contexts on cuda:{})", name, call, device_);
}

CudaBackend::SmGroups::SmGroups(int device) : device_(device) {
  TURBINE_CUDA_CHECK(cudaDeviceGetAttribute(&device_sms_, cudaDevAttrMultiProcessorCount, device));
  entry("cuGetErrorName", error_name_);
  entry("cuDeviceGetDevResource", get_resource_);
  entry("cuDevSmResourceSplitByCount", split_);
  entry("cuDevResourceGenerateDesc", describe_);
  entry("cuGreenCtxCreate", create_);
  entry("cuGreenCtxDestroy", destroy_);
  entry("cuCtxFromGreenCtx", to_context_);
  entry("cuCtxPushCurrent", push_);
  entry("cuCtxPopCurrent", pop_);
  entry("cuGreenCtxStreamCreate", stream_create_);
  if (!ok()) return;
  // The runtime's primary context first (green contexts retain it).
  TURBINE_CUDA_CHECK(cudaFree(nullptr));
  CUdevResource sms{};
  CUresult status = get_resource_(CUdevice(device), &sms, CU_DEV_RESOURCE_TYPE_SM);
  if (status != CUDA_SUCCESS) {
    const char* name = "?";
    error_name_(status, &name);
    why_not_ = fmt::format(
        "cuDeviceGetDevResource failed ({}): this device or its mode (MIG, "
        "vGPU) offers no SM partitions",
        name);
    return;
  }
  const unsigned min_count = std::max(1u, sms.sm.minSmPartitionSize);
  unsigned count = 0;
  status = split_(nullptr, &count, &sms, nullptr, 0, min_count);
  if (status != CUDA_SUCCESS || count < 2) {
    why_not_ = fmt::format("the device's {} SMs split into {} group(s) of {}: nothing to share",
                           sms.sm.smCount, count, min_count);
    return;
  }
  groups_.resize(count);
  check(split_(groups_.data(), &count, &sms, nullptr, 0, min_count), "cuDevSmResourceSplitByCount");
  groups_.resize(count);
  sms_per_group_ = int(groups_.front().sm.smCount);
  use_.assign(groups_.size(), 0);
}

CudaBackend::SmGroups::Partition CudaBackend::SmGroups::open(int count) {
  Partition p;
  std::vector<CUdevResource> chosen;
  {
    std::lock_guard lock(mutex_);
    std::vector<int> order(groups_.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return use_[size_t(a)] < use_[size_t(b)]; });
    p.groups.assign(order.begin(), order.begin() + std::clamp(count, 1, groups()));
    std::sort(p.groups.begin(), p.groups.end());
    for (const int g : p.groups) {
      ++use_[size_t(g)];
      chosen.push_back(groups_[size_t(g)]);
    }
  }
  try {
    CUdevResourceDesc desc = nullptr;
    check(describe_(&desc, chosen.data(), unsigned(chosen.size())), "cuDevResourceGenerateDesc");
    check(create_(&p.green, desc, CUdevice(device_), CU_GREEN_CTX_DEFAULT_STREAM),
          "cuGreenCtxCreate");
    CUcontext context = nullptr;
    check(to_context_(&context, p.green), "cuCtxFromGreenCtx");
    check(push_(context), "cuCtxPushCurrent");
    p.pushed = true;
    check(stream_create_(&p.stream, p.green, CU_STREAM_NON_BLOCKING, 0), "cuGreenCtxStreamCreate");
  } catch (...) {
    close(p);
    throw;
  }
  return p;
}

void CudaBackend::SmGroups::close(Partition& p) {
  if (p.stream) cudaStreamDestroy(p.stream);
  if (p.pushed) {
    CUcontext popped = nullptr;
    pop_(&popped);
  }
  if (p.green) destroy_(p.green);
  std::lock_guard lock(mutex_);
  for (const int g : p.groups) --use_[size_t(g)];
  p = Partition{};
}

#else  // a toolkit before 12.4: no green contexts

CudaBackend::SmGroups::SmGroups(int device) : device_(device) {
  why_not_ = "Turbine was built with a CUDA toolkit before 12.4 (no green contexts)";
}
CudaBackend::SmGroups::Partition CudaBackend::SmGroups::open(int) {
  return {};
}
void CudaBackend::SmGroups::close(Partition&) {}

#endif

CudaBackend::SmGroups& CudaBackend::sm_groups() {
  std::lock_guard lock(mutex_);
  if (!groups_) groups_ = std::make_shared<SmGroups>(device_);
  return *groups_;
}

Backend::LaneSupport CudaBackend::lanes() {
  SmGroups& g = sm_groups();
  return {true, g.ok(), g.why_not()};
}

// One thread's lane: made current on construction, closed (its work waited
// for, its cached blocks made idle) on destruction, on the same thread.
class CudaLane final : public Backend::Lane {
 public:
  CudaLane(CudaBackend& backend, double share, bool partition) : backend_(backend) {
    TURBINE_CHECK(share > 0 && share <= 1, "a lane's share of cuda:{} is {}: (0, 1] expected",
                  backend.device(), share);
    TURBINE_CHECK(CudaBackend::tls_lane_ == nullptr, "this thread already holds a lane of {}",
                  CudaBackend::tls_lane_ ? CudaBackend::tls_lane_->owner->name() : "");
    TURBINE_CUDA_CHECK(cudaSetDevice(backend.device()));
    state_.owner = &backend;
    try {
      // The lane's work starts after what the backend's stream holds now (the
      // weights it was given, say): an event of the primary context, recorded
      // before the green one is made current (a stream may wait on an event
      // of another context).
      TURBINE_CUDA_CHECK(cudaEventCreateWithFlags(&start_, cudaEventDisableTiming));
      TURBINE_CUDA_CHECK(cudaEventRecord(start_, backend.stream_));
      if (partition) {
        CudaBackend::SmGroups& g = backend.sm_groups();
        TURBINE_CHECK(g.ok(), "SM partitions of cuda:{} are unavailable: {}", backend.device(),
                      g.why_not());
        partition_ = g.open(int(std::lround(share * g.groups())));
        state_.stream = cudaStream_t(partition_.stream);
        units_ = int(partition_.groups.size()) * g.sms_per_group();
        device_units_ = g.device_sms();
      } else {
        TURBINE_CUDA_CHECK(cudaStreamCreateWithFlags(&state_.stream, cudaStreamNonBlocking));
      }
      TURBINE_CUDA_CHECK(cudaStreamWaitEvent(state_.stream, start_, 0));
      backend.add_lane_stream(state_.stream);
      CudaBackend::tls_lane_ = &state_;
      // Handles and buffers of its own, made in its context.
      TURBINE_CUBLAS_CHECK(cublasLtCreate(&state_.lt));
      state_.lt_workspace = backend.allocate(kLaneWorkspaceBytes);
    } catch (...) {
      release();
      throw;
    }
  }
  ~CudaLane() override { release(); }
  CudaLane(const CudaLane&) = delete;
  CudaLane& operator=(const CudaLane&) = delete;
  int units() const override { return units_; }
  int device_units() const override { return device_units_; }
  std::vector<int> groups() const override { return partition_.groups; }

 private:
  // Destructors must not throw: errors at teardown are ignored.
  void release() {
    if (state_.stream) cudaStreamSynchronize(state_.stream);
    if (CudaBackend::tls_lane_ == &state_) {
      if (state_.lt_workspace) backend_.deallocate(state_.lt_workspace, kLaneWorkspaceBytes);
      if (state_.scratch) backend_.deallocate(state_.scratch, state_.scratch_bytes);
      CudaBackend::tls_lane_ = nullptr;
    }
    if (state_.blas) cublasDestroy(state_.blas);
    if (state_.lt) cublasLtDestroy(state_.lt);
    if (state_.stream) {
      backend_.close_lane_blocks(state_.stream);
      backend_.remove_lane_stream(state_.stream);
    }
    if (partition_.green) {
      backend_.sm_groups().close(partition_);  // destroys the stream, pops the context
    } else if (state_.stream) {
      cudaStreamDestroy(state_.stream);
    }
    if (start_) cudaEventDestroy(start_);  // the primary context's again
    state_ = {};
    start_ = nullptr;
  }

  CudaBackend& backend_;
  CudaBackend::LaneState state_;
  CudaBackend::SmGroups::Partition partition_;
  cudaEvent_t start_ = nullptr;
  int units_ = 0, device_units_ = 0;
};

std::unique_ptr<Backend::Lane> CudaBackend::open_lane(double share, bool partition) {
  return std::make_unique<CudaLane>(*this, share, partition);
}

}  // namespace turbine::kernels
