// Error checking for every CUDA and cuBLAS call, and launch helpers. A
// failed call throws turbine::Error naming the call, the library's message
// and the file and line, so a GPU failure reads like any other error.
// Kept free of fmt (and of core/error.hpp): nvcc's front end cannot compile
// fmt's headers, so .cu files format with TURBINE_CUDA_REQUIRE's printf
// style, and host-only code lives in .cpp files compiled by g++.
#pragma once

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace turbine::kernels::cuda {

[[noreturn]] void fail_cuda(cudaError_t status, const char* call, const char* file, int line);
[[noreturn]] void fail_cublas(cublasStatus_t status, const char* call, const char* file,
                              int line);
// Throws turbine::Error with a printf-formatted message.
[[noreturn]] void fail_printf(const char* file, int line, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

// Blocks for a grid-stride loop over n elements.
inline unsigned blocks_for(size_t n, unsigned threads = 256) {
  const size_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? (blocks == 0 ? 1 : blocks) : 65535 * 16);
}

}  // namespace turbine::kernels::cuda

#define TURBINE_CUDA_CHECK(call)                                                      \
  do {                                                                                \
    const cudaError_t turbine_status_ = (call);                                       \
    if (turbine_status_ != cudaSuccess)                                               \
      ::turbine::kernels::cuda::fail_cuda(turbine_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define TURBINE_CUBLAS_CHECK(call)                                                      \
  do {                                                                                  \
    const cublasStatus_t turbine_status_ = (call);                                      \
    if (turbine_status_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::turbine::kernels::cuda::fail_cublas(turbine_status_, #call, __FILE__, __LINE__); \
  } while (0)

// TURBINE_CUDA_REQUIRE(cond, "printf format", args...) for .cu files.
#define TURBINE_CUDA_REQUIRE(cond, ...) \
  do {                                  \
    if (!(cond)) ::turbine::kernels::cuda::fail_printf(__FILE__, __LINE__, __VA_ARGS__); \
  } while (0)

// After a <<<...>>> launch: reports a bad configuration at the launch site.
#define TURBINE_CUDA_LAUNCH_CHECK() TURBINE_CUDA_CHECK(cudaGetLastError())
