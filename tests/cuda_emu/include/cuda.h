// The CUDA driver API of the emulator: the subset Turbine calls, through
// cudaGetDriverEntryPointByVersion (kernels/cuda/lanes.cpp: green contexts
// over SM partitions), with the real header's names, values and layouts.
// The emulated device is an H100 (compute capability 9.0, 132 SMs): SM
// partitions come in groups of at least 8 SMs, a multiple of 8, as the
// driver documents for 9.0. Work still runs at the call on the CPU: a
// partition changes no result, but every handle and rule is checked (a
// green context destroyed while a stream of it lives, or while it is
// current on a thread, fails loudly).
#pragma once

#include <cuda_runtime.h>

enum CUresult : int {
  CUDA_SUCCESS = 0,
  CUDA_ERROR_INVALID_VALUE = 1,
  CUDA_ERROR_INVALID_CONTEXT = 201,
  CUDA_ERROR_INVALID_HANDLE = 400,
  CUDA_ERROR_NOT_SUPPORTED = 801,
  CUDA_ERROR_INVALID_RESOURCE_TYPE = 914,
  CUDA_ERROR_INVALID_RESOURCE_CONFIGURATION = 915,
};

using CUdevice = int;
struct CUctx_st;
using CUcontext = CUctx_st*;
struct CUgreenCtx_st;
using CUgreenCtx = CUgreenCtx_st*;
using CUstream = CUstream_st*;
struct CUdevResourceDesc_st;
using CUdevResourceDesc = CUdevResourceDesc_st*;

enum CUdevResourceType : int {
  CU_DEV_RESOURCE_TYPE_INVALID = 0,
  CU_DEV_RESOURCE_TYPE_SM = 1,
};

struct CUdevSmResource {
  unsigned int smCount;
  unsigned int minSmPartitionSize;
  unsigned int smCoscheduledAlignment;
};

// The real layout: a type, 92 bytes the driver keeps to itself (here: which
// split made the resource and which SMs it holds), then the union.
struct CUdevResource {
  CUdevResourceType type;
  unsigned char _internal_padding[92];
  union {
    CUdevSmResource sm;
    unsigned char _oversize[48];
  };
};

enum CUgreenCtxCreate_flags : int { CU_GREEN_CTX_DEFAULT_STREAM = 0x1 };
#define CU_STREAM_DEFAULT 0x0
#define CU_STREAM_NON_BLOCKING 0x1
