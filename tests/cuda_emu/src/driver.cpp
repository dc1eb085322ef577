// The emulated driver API (cuda.h): SM resources, their split, green
// contexts, their streams and the thread's context stack, handed out by
// cudaGetDriverEntryPointByVersion. Rules are the driver reference's for a
// compute capability 9.0 device; where the real driver leaks or misbehaves
// silently (a green context destroyed before its streams) the emulator
// fails loudly instead.
#include <cuda.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "host_internal.hpp"

// What a green context is here: its device and SMs.
struct CUgreenCtx_st {
  int device;
  unsigned sms;
};
struct CUctx_st {
  CUgreenCtx green;
};
struct CUdevResourceDesc_st {
  unsigned sms;
};

namespace turbine_emu {

namespace {

constexpr unsigned kMinPartition = 8, kAlignment = 8;  // compute capability 9.0

// What the driver keeps in a resource's internal bytes: the split that made
// it (0: the whole device) and a mask of the SMs it holds.
struct ResourceTag {
  uint64_t split;
  uint64_t sms[3];  // up to 192 SMs
};
static_assert(sizeof(ResourceTag) <= sizeof(CUdevResource::_internal_padding));

ResourceTag tag_of(const CUdevResource& r) {
  ResourceTag t{};
  std::memcpy(&t, r._internal_padding, sizeof t);
  return t;
}
void set_tag(CUdevResource& r, const ResourceTag& t) {
  std::memcpy(r._internal_padding, &t, sizeof t);
}

struct Driver {
  std::mutex mutex;
  uint64_t splits = 0;
  std::set<const CUgreenCtx_st*> greens;
  std::vector<std::unique_ptr<CUgreenCtx_st>> green_storage;  // never freed: stale reads as dead
  std::vector<std::unique_ptr<CUctx_st>> context_storage;
  std::vector<std::unique_ptr<CUdevResourceDesc_st>> desc_storage;
  std::set<const CUgreenCtx_st*> current_somewhere;  // on some thread's stack
};
Driver& driver() {
  static Driver& d = *new Driver;
  return d;
}
thread_local std::vector<CUcontext> context_stack;

CUresult driver_fail(CUresult status, const char* api, const char* what) {
  diagnose(api, "%s", what);
  return status;
}

bool live(CUgreenCtx g) {
  std::lock_guard lock(driver().mutex);
  return driver().greens.count(g) > 0;
}

CUresult cuGetErrorName(CUresult status, const char** name) {
  if (name == nullptr) return CUDA_ERROR_INVALID_VALUE;
  switch (status) {
    case CUDA_SUCCESS:
      *name = "CUDA_SUCCESS";
      break;
    case CUDA_ERROR_INVALID_VALUE:
      *name = "CUDA_ERROR_INVALID_VALUE";
      break;
    case CUDA_ERROR_INVALID_CONTEXT:
      *name = "CUDA_ERROR_INVALID_CONTEXT";
      break;
    case CUDA_ERROR_INVALID_HANDLE:
      *name = "CUDA_ERROR_INVALID_HANDLE";
      break;
    case CUDA_ERROR_NOT_SUPPORTED:
      *name = "CUDA_ERROR_NOT_SUPPORTED";
      break;
    case CUDA_ERROR_INVALID_RESOURCE_TYPE:
      *name = "CUDA_ERROR_INVALID_RESOURCE_TYPE";
      break;
    case CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION:
      *name = "CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION";
      break;
    default:
      return CUDA_ERROR_INVALID_VALUE;
  }
  return CUDA_SUCCESS;
}

CUresult cuDeviceGetDevResource(CUdevice device, CUdevResource* resource, CUdevResourceType type) {
  int count = 0;
  cudaGetDeviceCount(&count);
  if (device < 0 || device >= count)
    return driver_fail(CUDA_ERROR_INVALID_VALUE, "cuDeviceGetDevResource", "no such device");
  if (resource == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (type != CU_DEV_RESOURCE_TYPE_SM)
    return driver_fail(CUDA_ERROR_INVALID_RESOURCE_TYPE, "cuDeviceGetDevResource",
                       "only CU_DEV_RESOURCE_TYPE_SM exists");
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  *resource = CUdevResource{};
  resource->type = CU_DEV_RESOURCE_TYPE_SM;
  resource->sm = {unsigned(sms), kMinPartition, kAlignment};
  ResourceTag t{};
  for (int i = 0; i < sms; ++i) t.sms[i / 64] |= uint64_t(1) << (i % 64);
  set_tag(*resource, t);
  return CUDA_SUCCESS;
}

CUresult cuDevSmResourceSplitByCount(CUdevResource* result, unsigned* nbGroups,
                                     const CUdevResource* input, CUdevResource* remaining,
                                     unsigned useFlags, unsigned minCount) {
  const char* api = "cuDevSmResourceSplitByCount";
  if (nbGroups == nullptr || input == nullptr)
    return driver_fail(CUDA_ERROR_INVALID_VALUE, api, "null nbGroups or input");
  if (input->type != CU_DEV_RESOURCE_TYPE_SM)
    return driver_fail(CUDA_ERROR_INVALID_RESOURCE_TYPE, api, "input is not an SM resource");
  if (useFlags != 0) return driver_fail(CUDA_ERROR_INVALID_VALUE, api, "unsupported useFlags");
  if (tag_of(*input).split != 0)
    return driver_fail(CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION, api,
                       "a split's result cannot be split again without a green context");
  if (minCount > input->sm.smCount)
    return driver_fail(CUDA_ERROR_INVALID_VALUE, api, "minCount above the input's SM count");
  // Rounded up to the minimum and the alignment, as the driver does.
  const unsigned size =
      std::max(kMinPartition, (std::max(minCount, 1u) + kAlignment - 1) / kAlignment * kAlignment);
  const unsigned possible = input->sm.smCount / size;
  if (result == nullptr) {
    *nbGroups = possible;
    return CUDA_SUCCESS;
  }
  const unsigned made = std::min(*nbGroups, possible);
  ResourceTag in = tag_of(*input);
  uint64_t split = 0;
  {
    std::lock_guard lock(driver().mutex);
    split = ++driver().splits;
  }
  std::vector<int> sms;
  for (int i = 0; i < 192; ++i)
    if (in.sms[i / 64] >> (i % 64) & 1) sms.push_back(i);
  size_t next = 0;
  for (unsigned g = 0; g < made; ++g) {
    ResourceTag t{split, {}};
    for (unsigned k = 0; k < size; ++k, ++next)
      t.sms[sms[next] / 64] |= uint64_t(1) << (sms[next] % 64);
    result[g] = CUdevResource{};
    result[g].type = CU_DEV_RESOURCE_TYPE_SM;
    result[g].sm = {size, kMinPartition, kAlignment};
    set_tag(result[g], t);
  }
  if (remaining != nullptr) {
    ResourceTag t{split, {}};
    for (; next < sms.size(); ++next) t.sms[sms[next] / 64] |= uint64_t(1) << (sms[next] % 64);
    *remaining = CUdevResource{};
    remaining->type = CU_DEV_RESOURCE_TYPE_SM;
    remaining->sm = {unsigned(sms.size() - made * size), kMinPartition, kAlignment};
    set_tag(*remaining, t);
  }
  *nbGroups = made;
  return CUDA_SUCCESS;
}

CUresult cuDevResourceGenerateDesc(CUdevResourceDesc* desc, CUdevResource* resources,
                                   unsigned count) {
  const char* api = "cuDevResourceGenerateDesc";
  if (desc == nullptr || resources == nullptr || count == 0)
    return driver_fail(CUDA_ERROR_INVALID_VALUE, api, "no resources");
  ResourceTag all{};
  const uint64_t split = tag_of(resources[0]).split;
  for (unsigned i = 0; i < count; ++i) {
    if (resources[i].type != CU_DEV_RESOURCE_TYPE_SM)
      return driver_fail(CUDA_ERROR_INVALID_RESOURCE_TYPE, api, "not an SM resource");
    const ResourceTag t = tag_of(resources[i]);
    if (count > 1 && (t.split == 0 || t.split != split))
      return driver_fail(CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION, api,
                         "SM resources combined must come from the same split");
    for (int w = 0; w < 3; ++w) {
      if (all.sms[w] & t.sms[w])
        return driver_fail(CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION, api,
                           "the same SMs given twice");
      all.sms[w] |= t.sms[w];
    }
  }
  unsigned sms = 0;
  for (const uint64_t w : all.sms) sms += unsigned(__builtin_popcountll(w));
  std::lock_guard lock(driver().mutex);
  driver().desc_storage.push_back(
      std::make_unique<CUdevResourceDesc_st>(CUdevResourceDesc_st{sms}));
  *desc = driver().desc_storage.back().get();
  return CUDA_SUCCESS;
}

CUresult cuGreenCtxCreate(CUgreenCtx* green, CUdevResourceDesc desc, CUdevice device,
                          unsigned flags) {
  const char* api = "cuGreenCtxCreate";
  if (green == nullptr || desc == nullptr)
    return driver_fail(CUDA_ERROR_INVALID_VALUE, api, "null handle or descriptor");
  if (!(flags & CU_GREEN_CTX_DEFAULT_STREAM))
    return driver_fail(CUDA_ERROR_INVALID_VALUE, api,
                       "CU_GREEN_CTX_DEFAULT_STREAM is required (CUDA 13)");
  std::lock_guard lock(driver().mutex);
  driver().green_storage.push_back(
      std::make_unique<CUgreenCtx_st>(CUgreenCtx_st{device, desc->sms}));
  *green = driver().green_storage.back().get();
  driver().greens.insert(*green);
  return CUDA_SUCCESS;
}

CUresult cuGreenCtxDestroy(CUgreenCtx green) {
  const char* api = "cuGreenCtxDestroy";
  if (!live(green)) return driver_fail(CUDA_ERROR_INVALID_HANDLE, api, "destroyed or never made");
  if (const int n = live_streams_of(green); n > 0) {
    diagnose(api, "%d stream(s) of the green context still live (the driver would leak them)", n);
    return CUDA_ERROR_INVALID_CONTEXT;
  }
  std::lock_guard lock(driver().mutex);
  if (driver().current_somewhere.count(green))
    return driver_fail(CUDA_ERROR_INVALID_CONTEXT, api, "the green context is current on a thread");
  driver().greens.erase(green);
  return CUDA_SUCCESS;
}

CUresult cuCtxFromGreenCtx(CUcontext* context, CUgreenCtx green) {
  if (context == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (!live(green))
    return driver_fail(CUDA_ERROR_INVALID_HANDLE, "cuCtxFromGreenCtx", "destroyed or never made");
  std::lock_guard lock(driver().mutex);
  driver().context_storage.push_back(std::make_unique<CUctx_st>(CUctx_st{green}));
  *context = driver().context_storage.back().get();
  return CUDA_SUCCESS;
}

CUresult cuCtxPushCurrent(CUcontext context) {
  const char* api = "cuCtxPushCurrent";
  if (context == nullptr || !live(context->green))
    return driver_fail(CUDA_ERROR_INVALID_CONTEXT, api, "not a live context");
  std::lock_guard lock(driver().mutex);
  if (!driver().current_somewhere.insert(context->green).second)
    return driver_fail(CUDA_ERROR_INVALID_CONTEXT, api,
                       "a green context can be current to only one thread at a time");
  context_stack.push_back(context);
  return CUDA_SUCCESS;
}

CUresult cuCtxPopCurrent(CUcontext* context) {
  if (context_stack.empty())
    return driver_fail(CUDA_ERROR_INVALID_CONTEXT, "cuCtxPopCurrent", "no context pushed");
  if (context) *context = context_stack.back();
  std::lock_guard lock(driver().mutex);
  driver().current_somewhere.erase(context_stack.back()->green);
  context_stack.pop_back();
  return CUDA_SUCCESS;
}

CUresult cuGreenCtxStreamCreate(CUstream* stream, CUgreenCtx green, unsigned flags, int) {
  const char* api = "cuGreenCtxStreamCreate";
  if (stream == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (flags != CU_STREAM_NON_BLOCKING)
    return driver_fail(CUDA_ERROR_INVALID_VALUE, api, "CU_STREAM_NON_BLOCKING must be specified");
  if (!live(green)) return driver_fail(CUDA_ERROR_INVALID_HANDLE, api, "destroyed or never made");
  *stream = create_stream(green->device, cudaStreamNonBlocking, green);
  return CUDA_SUCCESS;
}

CUresult cuStreamGetGreenCtx(CUstream stream, CUgreenCtx* green) {
  if (green == nullptr) return CUDA_ERROR_INVALID_VALUE;
  if (stream_device(stream) < 0)
    return driver_fail(CUDA_ERROR_INVALID_HANDLE, "cuStreamGetGreenCtx", "not a live stream");
  *green = static_cast<CUgreenCtx>(const_cast<void*>(stream_green(stream)));
  return CUDA_SUCCESS;
}

CUresult cuGreenCtxGetDevResource(CUgreenCtx green, CUdevResource* resource,
                                  CUdevResourceType type) {
  if (resource == nullptr || type != CU_DEV_RESOURCE_TYPE_SM) return CUDA_ERROR_INVALID_VALUE;
  if (!live(green))
    return driver_fail(CUDA_ERROR_INVALID_HANDLE, "cuGreenCtxGetDevResource", "not live");
  *resource = CUdevResource{};
  resource->type = CU_DEV_RESOURCE_TYPE_SM;
  resource->sm = {green->sms, kMinPartition, kAlignment};
  return CUDA_SUCCESS;
}

struct Entry {
  const char* name;
  void* fn;
};
const Entry kEntries[] = {
    {"cuGetErrorName", reinterpret_cast<void*>(&cuGetErrorName)},
    {"cuDeviceGetDevResource", reinterpret_cast<void*>(&cuDeviceGetDevResource)},
    {"cuDevSmResourceSplitByCount", reinterpret_cast<void*>(&cuDevSmResourceSplitByCount)},
    {"cuDevResourceGenerateDesc", reinterpret_cast<void*>(&cuDevResourceGenerateDesc)},
    {"cuGreenCtxCreate", reinterpret_cast<void*>(&cuGreenCtxCreate)},
    {"cuGreenCtxDestroy", reinterpret_cast<void*>(&cuGreenCtxDestroy)},
    {"cuCtxFromGreenCtx", reinterpret_cast<void*>(&cuCtxFromGreenCtx)},
    {"cuCtxPushCurrent", reinterpret_cast<void*>(&cuCtxPushCurrent)},
    {"cuCtxPopCurrent", reinterpret_cast<void*>(&cuCtxPopCurrent)},
    {"cuGreenCtxStreamCreate", reinterpret_cast<void*>(&cuGreenCtxStreamCreate)},
    {"cuStreamGetGreenCtx", reinterpret_cast<void*>(&cuStreamGetGreenCtx)},
    {"cuGreenCtxGetDevResource", reinterpret_cast<void*>(&cuGreenCtxGetDevResource)},
};

}  // namespace

}  // namespace turbine_emu

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** funcPtr,
                                             unsigned int cudaVersion, unsigned long long flags,
                                             cudaDriverEntryPointQueryResult* driverStatus) {
  using namespace turbine_emu;
  if (symbol == nullptr || funcPtr == nullptr || flags != cudaEnableDefault)
    return fail(cudaErrorInvalidValue, "cudaGetDriverEntryPointByVersion", "bad arguments");
  *funcPtr = nullptr;
  cudaDriverEntryPointQueryResult status = cudaDriverEntryPointSymbolNotFound;
  // TURBINE_EMU_GREEN_CONTEXTS=0: a driver without them (before 12.4).
  const char* green = std::getenv("TURBINE_EMU_GREEN_CONTEXTS");
  const bool none = green != nullptr && std::strcmp(green, "0") == 0;
  for (const Entry& e : kEntries) {
    if (std::strcmp(e.name, symbol) != 0) continue;
    if (none && std::strcmp(e.name, "cuGetErrorName") != 0) break;
    // The emulated driver is a 13.0 one; green contexts came with 12.4.
    status = cudaVersion >= 12040 ? cudaDriverEntryPointSuccess
                                  : cudaDriverEntryPointVersionNotSufficent;
    if (status == cudaDriverEntryPointSuccess) *funcPtr = e.fn;
  }
  if (driverStatus) *driverStatus = status;
  return cudaSuccess;
}
