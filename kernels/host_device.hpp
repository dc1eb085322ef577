// TURBINE_HOST_DEVICE marks the inline formulas that the CPU kernels and the
// CUDA kernels share (kernels/window2d.hpp, pointwise_math.hpp): host code on
// the CPU and in the CUDA emulator, __host__ __device__ under nvcc.
#pragma once

#if defined(__CUDACC__)
#define TURBINE_HOST_DEVICE __host__ __device__
#else
#define TURBINE_HOST_DEVICE
#endif
