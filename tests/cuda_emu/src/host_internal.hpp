// What the emulator's host-half libraries (runtime.cpp, cublas.cpp, cub.cpp,
// nccl.cpp) share beyond the public CUDA API: the current device, stream
// checks and loud diagnostics for failed calls.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

namespace turbine_emu {

// The calling thread's current device (cudaSetDevice), 0 by default.
int current_device();

// The device a valid stream belongs to (the current device for the null and
// special handles), or -1 for a destroyed or unknown handle.
int stream_device(cudaStream_t stream);

// Green contexts' streams (driver.cpp): a new stream made in `green`, the
// green context of a live stream (null for others), and how many live
// streams a green context has.
cudaStream_t create_stream(int device, unsigned flags, const void* green);
const void* stream_green(cudaStream_t stream);
int live_streams_of(const void* green);

// The device of the live allocation holding p, or -1 when p is in none.
int device_of(const void* p);

// Prints "turbine_emu: <api>: <message>" on stderr unless TURBINE_EMU_QUIET=1:
// every failed call says why, beyond its error code.
void diagnose(const char* api, const char* format, ...) __attribute__((format(printf, 2, 3)));

// diagnose(), then records err as the last runtime error and returns it.
cudaError_t fail(cudaError_t err, const char* api, const char* format, ...)
    __attribute__((format(printf, 3, 4)));

// What [p, p + bytes) is, for diagnostics: in which device allocation (or
// freed one) it lies and at what offset, or host memory.
std::string describe_range(const void* p, size_t bytes);

}  // namespace turbine_emu
