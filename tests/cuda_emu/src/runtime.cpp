// The emulated CUDA runtime's host half: devices, the device-memory registry
// (allocation, copies, fills, use-after-free quarantine), streams, events,
// function attributes and the per-thread last error. Every check follows
// the CUDA Runtime API reference; where the real runtime's behaviour is
// undefined (overlapping copies) the emulator fails loudly instead.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "host_internal.hpp"

struct CUstream_st {
  int device;
  unsigned flags;
  const void* green = nullptr;  // the green context it was made in (driver.cpp)
};

struct CUevent_st {
  int device;
  unsigned flags;
  bool recorded = false;
  std::chrono::steady_clock::time_point time{};
};

namespace turbine_emu {

namespace {

// cudaMalloc's guaranteed alignment.
constexpr size_t kAllocationAlignment = 256;
// Freed memory held back from reuse (and poisoned) so late uses are caught.
constexpr size_t kQuarantineBytes = size_t(256) << 20;

struct Config {
  int devices = 4;
  std::vector<int> physical;  // the machine's device behind each visible index
  size_t capacity = size_t(16384) << 20;
  bool quiet = false;
};

const Config& config() {
  static const Config c = [] {
    Config c;
    if (const char* v = std::getenv("TURBINE_EMU_DEVICES"); v && *v) c.devices = std::atoi(v);
    if (c.devices < 0) c.devices = 0;
    // CUDA_VISIBLE_DEVICES as the runtime reads it: a comma-separated list of
    // the machine's device indices, cut at the first invalid one.
    for (int i = 0; i < c.devices; ++i) c.physical.push_back(i);
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES"); v != nullptr) {
      std::vector<int> visible;
      for (const char* p = v; *p != '\0';) {
        char* end = nullptr;
        const long index = std::strtol(p, &end, 10);
        if (end == p || index < 0 || index >= c.devices) break;
        visible.push_back(static_cast<int>(index));
        p = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0') break;
      }
      c.physical = visible;
      c.devices = static_cast<int>(visible.size());
    }
    if (const char* v = std::getenv("TURBINE_EMU_MEMORY_MB"); v && *v)
      c.capacity = size_t(std::strtoull(v, nullptr, 10)) << 20;
    if (const char* v = std::getenv("TURBINE_EMU_QUIET"); v && *v && std::strcmp(v, "0") != 0)
      c.quiet = true;
    return c;
  }();
  return c;
}

struct AlignedDelete {
  void operator()(std::byte* p) const {
    ::operator delete[](p, std::align_val_t(kAllocationAlignment));
  }
};
using Storage = std::unique_ptr<std::byte[], AlignedDelete>;

struct Block {
  Storage storage;
  size_t bytes = 0;
  int device = 0;
};

// Every live and quarantined allocation, by base address.
struct Registry {
  std::mutex mutex;
  std::map<uintptr_t, Block> live;
  std::map<uintptr_t, Block> freed;
  std::deque<uintptr_t> freed_order;
  size_t freed_bytes = 0;
  std::vector<size_t> used;  // bytes held per device

  // The block containing [p, p + bytes) in `blocks`, or nullptr; bytes == 0
  // also accepts p one past the end.
  static const Block* find(const std::map<uintptr_t, Block>& blocks, const void* p, size_t bytes,
                           uintptr_t* base = nullptr) {
    const auto address = reinterpret_cast<uintptr_t>(p);
    auto it = blocks.upper_bound(address);
    if (it == blocks.begin()) return nullptr;
    --it;
    const uintptr_t end = it->first + it->second.bytes;
    const bool inside = bytes == 0 ? address <= end : address < end && bytes <= end - address;
    if (!inside) return nullptr;
    if (base) *base = it->first;
    return &it->second;
  }
  // The block p points into at all (for describing overruns).
  static const Block* containing(const std::map<uintptr_t, Block>& blocks, const void* p,
                                 uintptr_t* base) {
    return find(blocks, p, 1, base);
  }
};

// Never destroyed: the CUDA backends are static objects too, and their
// destructors free memory and sync streams during exit, in any order.
Registry& registry() {
  static Registry& r = *new Registry;
  return r;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local int current = 0;

struct Handles {
  std::mutex mutex;
  std::set<const CUstream_st*> streams;
  std::set<const CUevent_st*> events;
  // Destroyed handles are kept, never freed, so a stale handle can never
  // alias a new one and always reads as destroyed.
  std::vector<std::unique_ptr<CUstream_st>> stream_storage;
  std::vector<std::unique_ptr<CUevent_st>> event_storage;
  std::map<const void*, size_t> max_dynamic_shared;  // per kernel
};

Handles& handles() {  // never destroyed, like the registry
  static Handles& h = *new Handles;
  return h;
}

bool special_stream(cudaStream_t s) {
  return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread;
}

void vdiagnose(const char* api, const char* format, va_list args) {
  if (config().quiet) return;
  char message[1024];
  std::vsnprintf(message, sizeof(message), format, args);
  std::fprintf(stderr, "turbine_emu: %s: %s\n", api, message);
}

cudaError_t check_devices(const char* api) {
  if (config().devices == 0)
    return fail(cudaErrorNoDevice, api, "TURBINE_EMU_DEVICES=0: no emulated device");
  return cudaSuccess;
}

const char* kind_name(cudaMemcpyKind kind) {
  switch (kind) {
    case cudaMemcpyHostToHost:
      return "cudaMemcpyHostToHost";
    case cudaMemcpyHostToDevice:
      return "cudaMemcpyHostToDevice";
    case cudaMemcpyDeviceToHost:
      return "cudaMemcpyDeviceToHost";
    case cudaMemcpyDeviceToDevice:
      return "cudaMemcpyDeviceToDevice";
    case cudaMemcpyDefault:
      return "cudaMemcpyDefault";
  }
  return "an invalid cudaMemcpyKind";
}

// What one side of a copy or fill is.
enum class Side { host, device, overrun, freed };

Side classify(const void* p, size_t bytes) {
  if (is_device_range(p, bytes)) return Side::device;
  if (is_freed_device_pointer(p)) return Side::freed;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  uintptr_t base = 0;
  if (Registry::containing(r.live, p, &base)) return Side::overrun;
  return Side::host;
}

bool overlap(const void* a, const void* b, size_t bytes) {
  const auto x = reinterpret_cast<uintptr_t>(a);
  const auto y = reinterpret_cast<uintptr_t>(b);
  return x < y + bytes && y < x + bytes;
}

// The shared checks of cudaMemcpy and cudaMemcpyAsync, then the copy.
cudaError_t copy(const char* api, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDefault)
    return fail(cudaErrorInvalidMemcpyDirection, api, "kind %d is no cudaMemcpyKind",
                static_cast<int>(kind));
  if (bytes == 0) return cudaSuccess;
  if (dst == nullptr || src == nullptr)
    return fail(cudaErrorInvalidValue, api, "null %s pointer", dst == nullptr ? "dst" : "src");
  const Side d = classify(dst, bytes);
  const Side s = classify(src, bytes);
  for (auto [side, name, p] :
       {std::tuple{d, "dst", static_cast<const void*>(dst)}, std::tuple{s, "src", src}}) {
    if (side == Side::freed || side == Side::overrun)
      return fail(cudaErrorInvalidValue, api, "%s: %s", name, describe_range(p, bytes).c_str());
  }
  const bool want_dst_device = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool want_src_device = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind != cudaMemcpyDefault) {
    if ((d == Side::device) != want_dst_device || (s == Side::device) != want_src_device)
      return fail(cudaErrorInvalidValue, api, "%s of %zu bytes, but dst is %s and src is %s",
                  kind_name(kind), bytes, describe_range(dst, bytes).c_str(),
                  describe_range(src, bytes).c_str());
  }
  if (overlap(dst, src, bytes))
    return fail(cudaErrorInvalidValue, api,
                "dst %p and src %p overlap in a %zu-byte copy (undefined on a GPU)", dst, src,
                bytes);
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t fill(const char* api, void* ptr, int value, size_t bytes) {
  if (bytes == 0) return cudaSuccess;
  if (!is_device_range(ptr, bytes))
    return fail(cudaErrorInvalidValue, api, "%zu bytes at %s", bytes,
                describe_range(ptr, bytes).c_str());
  std::memset(ptr, value, bytes);
  return cudaSuccess;
}

cudaError_t check_stream(const char* api, cudaStream_t stream) {
  if (stream_device(stream) < 0)
    return fail(cudaErrorInvalidResourceHandle, api, "stream %p was destroyed or never created",
                static_cast<void*>(stream));
  return cudaSuccess;
}

CUevent_st* find_event(const char* api, cudaEvent_t event, cudaError_t* err) {
  Handles& h = handles();
  {
    std::lock_guard lock(h.mutex);
    if (event != nullptr && h.events.count(event)) {
      *err = cudaSuccess;
      return event;
    }
  }
  *err = fail(cudaErrorInvalidResourceHandle, api, "event %p was destroyed or never created",
              static_cast<void*>(event));
  return nullptr;
}

}  // namespace

// Shared with the other host-half files ---------------------------------

int current_device() {
  return current;
}

int stream_device(cudaStream_t stream) {
  if (special_stream(stream)) return current;
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  return h.streams.count(stream) ? stream->device : -1;
}

int device_of(const void* p) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  uintptr_t base = 0;
  const Block* b = Registry::containing(r.live, p, &base);
  return b ? b->device : -1;
}

void diagnose(const char* api, const char* format, ...) {
  va_list args;
  va_start(args, format);
  vdiagnose(api, format, args);
  va_end(args);
}

cudaError_t fail(cudaError_t err, const char* api, const char* format, ...) {
  va_list args;
  va_start(args, format);
  vdiagnose(api, format, args);
  va_end(args);
  set_last_error(err);
  return err;
}

std::string describe_range(const void* p, size_t bytes) {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  char text[256];
  uintptr_t base = 0;
  const auto address = reinterpret_cast<uintptr_t>(p);
  if (const Block* b = Registry::containing(r.live, p, &base)) {
    std::snprintf(text, sizeof(text),
                  "%p, offset %zu in a %zu-byte device allocation on device %d%s", p,
                  size_t(address - base), b->bytes, b->device,
                  bytes <= b->bytes - (address - base) ? "" : " (the range runs past its end)");
  } else if (const Block* f = Registry::containing(r.freed, p, &base)) {
    std::snprintf(text, sizeof(text),
                  "%p, offset %zu in a %zu-byte device allocation that was freed (use after "
                  "cudaFree)",
                  p, size_t(address - base), f->bytes);
  } else {
    std::snprintf(text, sizeof(text), "%p, host memory (in no device allocation)", p);
  }
  return text;
}

// common.hpp's host half --------------------------------------------------

void set_last_error(cudaError_t err) {
  if (err != cudaSuccess) last_error = err;
}

bool is_device_range(const void* p, size_t bytes) {
  if (p == nullptr) return false;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  return Registry::find(r.live, p, bytes) != nullptr;
}

int physical_device(int device) {
  const Config& c = config();
  return device >= 0 && device < c.devices ? c.physical[size_t(device)] : -1;
}

bool is_freed_device_pointer(const void* p) {
  if (p == nullptr) return false;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  uintptr_t base = 0;
  return Registry::containing(r.live, p, &base) == nullptr &&
         Registry::containing(r.freed, p, &base) != nullptr;
}

size_t max_dynamic_shared_bytes(const void* kernel) {
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  auto it = h.max_dynamic_shared.find(kernel);
  return it == h.max_dynamic_shared.end() ? kDefaultDynamicShared : it->second;
}

cudaError_t check_launch_stream(cudaStream_t stream) {
  const int device = stream_device(stream);
  if (device < 0)
    return fail(cudaErrorInvalidResourceHandle, "kernel launch",
                "stream %p was destroyed or never created", static_cast<void*>(stream));
  if (device != current)
    return fail(cudaErrorInvalidResourceHandle, "kernel launch",
                "stream %p belongs to device %d, but device %d is current",
                static_cast<void*>(stream), device, current);
  return cudaSuccess;
}

}  // namespace turbine_emu

using turbine_emu::fail;

// Errors ------------------------------------------------------------------

cudaError_t cudaGetLastError() {
  const cudaError_t err = turbine_emu::last_error;
  turbine_emu::last_error = cudaSuccess;
  return err;
}

cudaError_t cudaPeekAtLastError() {
  return turbine_emu::last_error;
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInitializationError:
      return "initialization error";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer:
      return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection:
      return "invalid copy direction for memcpy";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice:
      return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle:
      return "invalid resource handle";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorNotSupported:
      return "operation not supported";
    case cudaErrorUnknown:
      return "unknown error";
  }
  return "unrecognized error code";
}

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError:
      return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer:
      return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection:
      return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported:
      return "cudaErrorNotSupported";
    case cudaErrorUnknown:
      return "cudaErrorUnknown";
  }
  return "unrecognized error code";
}

// Devices -----------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  if (count == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount", "null count");
  *count = turbine_emu::config().devices;
  return turbine_emu::check_devices("cudaGetDeviceCount");
}

cudaError_t cudaSetDevice(int device) {
  if (const cudaError_t err = turbine_emu::check_devices("cudaSetDevice")) return err;
  if (device < 0 || device >= turbine_emu::config().devices)
    return fail(cudaErrorInvalidDevice, "cudaSetDevice", "device %d of %d", device,
                turbine_emu::config().devices);
  turbine_emu::current = device;
  return cudaSuccess;
}

cudaError_t cudaGetDevice(int* device) {
  if (device == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDevice", "null device");
  if (const cudaError_t err = turbine_emu::check_devices("cudaGetDevice")) return err;
  *device = turbine_emu::current;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (prop == nullptr) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties", "null prop");
  if (const cudaError_t err = turbine_emu::check_devices("cudaGetDeviceProperties")) return err;
  if (device < 0 || device >= turbine_emu::config().devices)
    return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties", "device %d of %d", device,
                turbine_emu::config().devices);
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof(prop->name), "Turbine CUDA emulator (H100 SXM limits)");
  // One UUID per device of the machine, whatever index a process sees it under.
  std::snprintf(prop->uuid.bytes, sizeof(prop->uuid.bytes), "emu-gpu-%d",
                turbine_emu::physical_device(device));
  prop->totalGlobalMem = turbine_emu::config().capacity;
  prop->sharedMemPerBlock = turbine_emu::kDefaultDynamicShared;
  prop->regsPerBlock = 65536;
  prop->warpSize = turbine_emu::kWarpSize;
  prop->maxThreadsPerBlock = turbine_emu::kMaxThreadsPerBlock;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->totalConstMem = 65536;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 132;
  prop->l2CacheSize = 50 << 20;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->sharedMemPerMultiprocessor = 228 * 1024;
  prop->sharedMemPerBlockOptin = turbine_emu::kMaxSharedPerBlockOptin;
  prop->memoryBusWidth = 5120;
  prop->unifiedAddressing = 1;
  prop->concurrentKernels = 1;
  prop->pciBusID = device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp prop;
  if (value == nullptr) return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute", "null value");
  if (const cudaError_t err = cudaGetDeviceProperties(&prop, device)) return err;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = prop.maxThreadsPerBlock;
      break;
    case cudaDevAttrMaxBlockDimX:
      *value = prop.maxThreadsDim[0];
      break;
    case cudaDevAttrMaxBlockDimY:
      *value = prop.maxThreadsDim[1];
      break;
    case cudaDevAttrMaxBlockDimZ:
      *value = prop.maxThreadsDim[2];
      break;
    case cudaDevAttrMaxGridDimX:
      *value = prop.maxGridSize[0];
      break;
    case cudaDevAttrMaxGridDimY:
      *value = prop.maxGridSize[1];
      break;
    case cudaDevAttrMaxGridDimZ:
      *value = prop.maxGridSize[2];
      break;
    case cudaDevAttrMaxSharedMemoryPerBlock:
      *value = int(prop.sharedMemPerBlock);
      break;
    case cudaDevAttrWarpSize:
      *value = prop.warpSize;
      break;
    case cudaDevAttrMultiProcessorCount:
      *value = prop.multiProcessorCount;
      break;
    case cudaDevAttrComputeCapabilityMajor:
      *value = prop.major;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = prop.minor;
      break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor:
      *value = int(prop.sharedMemPerMultiprocessor);
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = int(prop.sharedMemPerBlockOptin);
      break;
    default:
      return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute", "attribute %d not emulated",
                  static_cast<int>(attr));
  }
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  return turbine_emu::check_devices("cudaDeviceSynchronize");
}

// Memory ------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  using namespace turbine_emu;
  if (ptr == nullptr) return fail(cudaErrorInvalidValue, "cudaMalloc", "null ptr");
  *ptr = nullptr;
  if (const cudaError_t err = check_devices("cudaMalloc")) return err;
  if (bytes == 0) return cudaSuccess;  // the runtime hands out a null pointer
  Registry& r = registry();
  const int device = current;
  const size_t capacity = config().capacity;
  const size_t held =
      (bytes + kAllocationAlignment - 1) / kAllocationAlignment * kAllocationAlignment;
  {
    std::lock_guard lock(r.mutex);
    if (r.used.size() < size_t(config().devices)) r.used.resize(config().devices, 0);
    if (held > capacity - r.used[device])
      return fail(cudaErrorMemoryAllocation, "cudaMalloc",
                  "%zu bytes asked on device %d with %zu of %zu held (TURBINE_EMU_MEMORY_MB)",
                  bytes, device, r.used[device], capacity);
    r.used[device] += held;
  }
  Block block;
  try {
    block.storage.reset(new (std::align_val_t(kAllocationAlignment)) std::byte[held]);
  } catch (const std::bad_alloc&) {
    std::lock_guard lock(r.mutex);
    r.used[device] -= held;
    return fail(cudaErrorMemoryAllocation, "cudaMalloc", "host memory exhausted (%zu bytes)",
                bytes);
  }
  // Fresh device memory reads as NaN until written.
  std::memset(block.storage.get(), 0xFF, held);
  block.bytes = bytes;
  block.device = device;
  *ptr = block.storage.get();
  std::lock_guard lock(r.mutex);
  r.live.emplace(reinterpret_cast<uintptr_t>(*ptr), std::move(block));
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  using namespace turbine_emu;
  if (ptr == nullptr) return cudaSuccess;
  Registry& r = registry();
  std::unique_lock lock(r.mutex);
  const auto address = reinterpret_cast<uintptr_t>(ptr);
  auto it = r.live.find(address);
  if (it == r.live.end()) {
    lock.unlock();
    return fail(cudaErrorInvalidValue, "cudaFree", "%s is no allocation's start%s",
                describe_range(ptr, 0).c_str(),
                is_freed_device_pointer(ptr) ? " (double free)" : "");
  }
  Block block = std::move(it->second);
  r.live.erase(it);
  const size_t held =
      (block.bytes + kAllocationAlignment - 1) / kAllocationAlignment * kAllocationAlignment;
  r.used[block.device] -= held;
  std::memset(block.storage.get(), 0xFF, held);
  r.freed_bytes += held;
  r.freed_order.push_back(address);
  r.freed.emplace(address, std::move(block));
  while (r.freed_bytes > kQuarantineBytes && r.freed_order.size() > 1) {
    auto oldest = r.freed.find(r.freed_order.front());
    r.freed_order.pop_front();
    r.freed_bytes -= (oldest->second.bytes + kAllocationAlignment - 1) / kAllocationAlignment *
                     kAllocationAlignment;
    r.freed.erase(oldest);
  }
  return cudaSuccess;
}

namespace turbine_emu {
namespace {
std::mutex pinned_mutex;
std::set<void*> pinned;
}  // namespace
}  // namespace turbine_emu

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  using namespace turbine_emu;
  if (ptr == nullptr) return fail(cudaErrorInvalidValue, "cudaMallocHost", "null ptr");
  *ptr = std::malloc(std::max<size_t>(bytes, 1));
  if (*ptr == nullptr) return fail(cudaErrorMemoryAllocation, "cudaMallocHost", "out of memory");
  std::lock_guard lock(pinned_mutex);
  pinned.insert(*ptr);
  return cudaSuccess;
}

cudaError_t cudaFreeHost(void* ptr) {
  using namespace turbine_emu;
  if (ptr == nullptr) return cudaSuccess;
  {
    std::lock_guard lock(pinned_mutex);
    if (pinned.erase(ptr) == 0)
      return fail(cudaErrorInvalidValue, "cudaFreeHost", "%p is not from cudaMallocHost", ptr);
  }
  std::free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  using namespace turbine_emu;
  if (free_bytes == nullptr || total_bytes == nullptr)
    return fail(cudaErrorInvalidValue, "cudaMemGetInfo", "null argument");
  if (const cudaError_t err = check_devices("cudaMemGetInfo")) return err;
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  if (r.used.size() < size_t(config().devices)) r.used.resize(config().devices, 0);
  *total_bytes = config().capacity;
  *free_bytes = config().capacity - r.used[current];
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return turbine_emu::copy("cudaMemcpy", dst, src, bytes, kind);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (const cudaError_t err = turbine_emu::check_stream("cudaMemcpyAsync", stream)) return err;
  return turbine_emu::copy("cudaMemcpyAsync", dst, src, bytes, kind);
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  return turbine_emu::fill("cudaMemset", ptr, value, bytes);
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  if (const cudaError_t err = turbine_emu::check_stream("cudaMemsetAsync", stream)) return err;
  return turbine_emu::fill("cudaMemsetAsync", ptr, value, bytes);
}

// Streams -----------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  using namespace turbine_emu;
  if (stream == nullptr) return fail(cudaErrorInvalidValue, "cudaStreamCreate", "null stream");
  if (flags != cudaStreamDefault && flags != cudaStreamNonBlocking)
    return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags", "flags %#x", flags);
  if (const cudaError_t err = check_devices("cudaStreamCreate")) return err;
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  h.stream_storage.push_back(std::make_unique<CUstream_st>(CUstream_st{current, flags}));
  *stream = h.stream_storage.back().get();
  h.streams.insert(*stream);
  return cudaSuccess;
}

namespace turbine_emu {

cudaStream_t create_stream(int device, unsigned flags, const void* green) {
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  h.stream_storage.push_back(std::make_unique<CUstream_st>(CUstream_st{device, flags, green}));
  h.streams.insert(h.stream_storage.back().get());
  return h.stream_storage.back().get();
}

const void* stream_green(cudaStream_t stream) {
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  return !special_stream(stream) && h.streams.count(stream) ? stream->green : nullptr;
}

int live_streams_of(const void* green) {
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  int n = 0;
  for (const CUstream_st* s : h.streams) n += s->green == green ? 1 : 0;
  return n;
}

}  // namespace turbine_emu

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  using namespace turbine_emu;
  Handles& h = handles();
  {
    std::lock_guard lock(h.mutex);
    if (!special_stream(stream) && h.streams.erase(stream)) return cudaSuccess;
  }
  return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy", "stream %p is %s",
              static_cast<void*>(stream),
              special_stream(stream) ? "a built-in stream" : "destroyed or was never created");
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return turbine_emu::check_stream("cudaStreamSynchronize", stream);
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  return turbine_emu::check_stream("cudaStreamQuery", stream);
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  using namespace turbine_emu;
  if (const cudaError_t err = check_stream("cudaStreamWaitEvent", stream)) return err;
  cudaError_t err;
  if (find_event("cudaStreamWaitEvent", event, &err) == nullptr) return err;
  // cudaEventWaitDefault or cudaEventWaitExternal (0x01).
  if (flags > 0x01) return fail(cudaErrorInvalidValue, "cudaStreamWaitEvent", "flags %#x", flags);
  return cudaSuccess;
}

// Events ------------------------------------------------------------------

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  using namespace turbine_emu;
  if (event == nullptr) return fail(cudaErrorInvalidValue, "cudaEventCreate", "null event");
  const unsigned known = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
  if ((flags & ~known) != 0 ||
      ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)))
    return fail(cudaErrorInvalidValue, "cudaEventCreateWithFlags",
                "flags %#x (cudaEventInterprocess needs cudaEventDisableTiming)", flags);
  if (const cudaError_t err = check_devices("cudaEventCreate")) return err;
  Handles& h = handles();
  std::lock_guard lock(h.mutex);
  auto e = std::make_unique<CUevent_st>();
  e->device = current;
  e->flags = flags;
  h.event_storage.push_back(std::move(e));
  *event = h.event_storage.back().get();
  h.events.insert(*event);
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  using namespace turbine_emu;
  Handles& h = handles();
  {
    std::lock_guard lock(h.mutex);
    if (event != nullptr && h.events.erase(event)) return cudaSuccess;
  }
  return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy",
              "event %p was destroyed or never created", static_cast<void*>(event));
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  using namespace turbine_emu;
  cudaError_t err;
  CUevent_st* e = find_event("cudaEventRecord", event, &err);
  if (e == nullptr) return err;
  const int device = stream_device(stream);
  if (device < 0)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord",
                "stream %p was destroyed or never created", static_cast<void*>(stream));
  if (device != e->device)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord",
                "event of device %d recorded on a stream of device %d", e->device, device);
  e->recorded = true;
  e->time = std::chrono::steady_clock::now();
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  cudaError_t err;
  turbine_emu::find_event("cudaEventSynchronize", event, &err);
  return err;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  cudaError_t err;
  turbine_emu::find_event("cudaEventQuery", event, &err);
  return err;
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  using namespace turbine_emu;
  if (ms == nullptr) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime", "null ms");
  cudaError_t err;
  const CUevent_st* a = find_event("cudaEventElapsedTime", start, &err);
  if (a == nullptr) return err;
  const CUevent_st* b = find_event("cudaEventElapsedTime", end, &err);
  if (b == nullptr) return err;
  if ((a->flags | b->flags) & cudaEventDisableTiming)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime",
                "an event was created with cudaEventDisableTiming");
  if (!a->recorded || !b->recorded)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime",
                "an event was never recorded");
  if (a->device != b->device)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime",
                "events of devices %d and %d", a->device, b->device);
  *ms = std::chrono::duration<float, std::milli>(b->time - a->time).count();
  return cudaSuccess;
}

// Kernel attributes -------------------------------------------------------

cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  using namespace turbine_emu;
  if (func == nullptr) return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute", "null func");
  switch (attr) {
    case cudaFuncAttributeMaxDynamicSharedMemorySize: {
      if (value < 0 || size_t(value) > kMaxSharedPerBlockOptin)
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute",
                    "cudaFuncAttributeMaxDynamicSharedMemorySize %d is outside 0..%zu "
                    "(cudaDevAttrMaxSharedMemoryPerBlockOptin)",
                    value, kMaxSharedPerBlockOptin);
      Handles& h = handles();
      std::lock_guard lock(h.mutex);
      h.max_dynamic_shared[func] = size_t(value);
      return cudaSuccess;
    }
    case cudaFuncAttributePreferredSharedMemoryCarveout:
      if (value < -1 || value > 100)
        return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute",
                    "cudaFuncAttributePreferredSharedMemoryCarveout %d is outside -1..100", value);
      return cudaSuccess;
  }
  return fail(cudaErrorInvalidValue, "cudaFuncSetAttribute", "attribute %d not emulated",
              static_cast<int>(attr));
}
