// The CUDA emulator's shared vocabulary: the runtime's plain types (dim3,
// vector types, error codes, streams) and the few calls through which the
// device half (launch.cpp: blocks, threads as fibers, shared memory) and the
// host half (runtime.cpp: memory, streams, errors, function attributes) talk.
// Only the emulated CUDA headers in tests/cuda_emu/include include this.
#pragma once

#include <cstddef>
#include <cstdint>

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) {
  return {x, y};
}
inline float4 make_float4(float x, float y, float z, float w) {
  return {x, y, z, w};
}

// The codes the emulator can return, with the real runtime's values.
enum cudaError_t : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorUnknown = 999,
};
using cudaError = cudaError_t;

struct CUstream_st;
struct CUevent_st;
using cudaStream_t = CUstream_st*;
using cudaEvent_t = CUevent_st*;

namespace turbine_emu {

// Host half (runtime.cpp) -------------------------------------------------

// Records err as the runtime's sticky-until-read last error (what
// cudaGetLastError returns and clears) unless err is cudaSuccess.
void set_last_error(cudaError_t err);

// Whether [p, p + bytes) lies inside one live cudaMalloc allocation.
bool is_device_range(const void* p, size_t bytes);

// The dynamic shared memory a kernel may request: 48 KiB unless raised by
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize).
size_t max_dynamic_shared_bytes(const void* kernel);

// Added by the host half:
// Whether a kernel may be launched into stream: cudaSuccess, or
// cudaErrorInvalidResourceHandle for a destroyed or unknown stream or one
// of another device than the current (the Programming Guide: "a kernel
// launch will fail if it is issued to a stream that is not associated to the
// current device"). Null, cudaStreamLegacy and cudaStreamPerThread are valid.
cudaError_t check_launch_stream(cudaStream_t stream);

// Whether p lies in a device allocation that has been freed (freed blocks
// are held back from reuse for a while so that late uses are caught).
bool is_freed_device_pointer(const void* p);

// The machine's index of visible device `device` (CUDA_VISIBLE_DEVICES maps
// one to the other); -1 for an invalid one.
int physical_device(int device);

// Device half (launch.cpp) ------------------------------------------------

// The properties the emulated device reports (an H100 SXM's limits).
constexpr int kMaxThreadsPerBlock = 1024;
constexpr size_t kDefaultDynamicShared = 48 * 1024;
constexpr size_t kMaxSharedPerBlockOptin = 227 * 1024;
constexpr int kWarpSize = 32;

}  // namespace turbine_emu
