// The device side of CUDA C++ for g++: the qualifiers (empty), the built-in
// variables (the running emulated thread's values), __syncthreads, warp
// shuffles and votes, the m16n8k16 tensor-core product, the math and bit
// intrinsics the kernels use, and the launch that rewrite_cu.py puts in place
// of kernel<<<grid, block, shared, stream>>>(args). Every CUDA thread runs as
// a fiber (launch.cpp); barriers, shuffles, votes and mma are the points where
// the scheduler switches threads, in a seeded random order, so a missing
// barrier shows up as a wrong (NaN) result and a divergent one as an error.
// Included through cuda_runtime.h, by host .cpp files as well.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <tuple>
#include <turbine_emu/common.hpp>
#include <type_traits>
#include <utility>

// ---- Qualifiers ---------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// __shared__ is deliberately left undefined: rewrite_cu.py turns every
// __shared__ declaration into emulated per-block storage, and one it missed
// must not compile into an ordinary (per-thread) variable.

// ---- Vector types beyond common.hpp's ---------------------------------------------------

struct alignas(8) int2 {
  int x, y;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(16) double2 {
  double x, y;
};
inline int2 make_int2(int x, int y) {
  return {x, y};
}
inline uint2 make_uint2(unsigned x, unsigned y) {
  return {x, y};
}
inline int4 make_int4(int x, int y, int z, int w) {
  return {x, y, z, w};
}
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return {x, y, z, w};
}
inline double2 make_double2(double x, double y) {
  return {x, y};
}
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) {
  return {x, y, z};
}

// ---- Built-in variables --------------------------------------------------------------------

// The running emulated thread's index and its launch's shape; set by the
// scheduler before it resumes a thread (one scheduler per host thread).
extern thread_local constinit uint3 threadIdx;
extern thread_local constinit uint3 blockIdx;
extern thread_local constinit dim3 blockDim;
extern thread_local constinit dim3 gridDim;
constexpr int warpSize = turbine_emu::kWarpSize;

// ---- Math, as CUDA declares it at global scope ------------------------------------------

using std::isfinite;
using std::isinf;
using std::isnan;
using std::signbit;

// CUDA's integer and float min/max overloads (crt/math_functions.hpp).
inline int min(int a, int b) {
  return a < b ? a : b;
}
inline unsigned min(unsigned a, unsigned b) {
  return a < b ? a : b;
}
inline unsigned min(int a, unsigned b) {
  return min(static_cast<unsigned>(a), b);
}
inline unsigned min(unsigned a, int b) {
  return min(a, static_cast<unsigned>(b));
}
inline long min(long a, long b) {
  return a < b ? a : b;
}
inline unsigned long min(unsigned long a, unsigned long b) {
  return a < b ? a : b;
}
inline long long min(long long a, long long b) {
  return a < b ? a : b;
}
inline unsigned long long min(unsigned long long a, unsigned long long b) {
  return a < b ? a : b;
}
inline float min(float a, float b) {
  return std::fmin(a, b);
}
inline double min(double a, double b) {
  return std::fmin(a, b);
}
inline double min(float a, double b) {
  return std::fmin(double(a), b);
}
inline double min(double a, float b) {
  return std::fmin(a, double(b));
}
inline int max(int a, int b) {
  return a > b ? a : b;
}
inline unsigned max(unsigned a, unsigned b) {
  return a > b ? a : b;
}
inline unsigned max(int a, unsigned b) {
  return max(static_cast<unsigned>(a), b);
}
inline unsigned max(unsigned a, int b) {
  return max(a, static_cast<unsigned>(b));
}
inline long max(long a, long b) {
  return a > b ? a : b;
}
inline unsigned long max(unsigned long a, unsigned long b) {
  return a > b ? a : b;
}
inline long long max(long long a, long long b) {
  return a > b ? a : b;
}
inline unsigned long long max(unsigned long long a, unsigned long long b) {
  return a > b ? a : b;
}
inline float max(float a, float b) {
  return std::fmax(a, b);
}
inline double max(double a, double b) {
  return std::fmax(a, b);
}
inline double max(float a, double b) {
  return std::fmax(double(a), b);
}
inline double max(double a, float b) {
  return std::fmax(a, double(b));
}

inline float rsqrtf(float x) {
  return 1.0f / std::sqrt(x);
}
inline float __expf(float x) {
  return std::exp(x);
}
inline float __logf(float x) {
  return std::log(x);
}
inline float __fdividef(float x, float y) {
  return x / y;
}
inline float __saturatef(float x) {
  return x > 1.0f ? 1.0f : (x > 0.0f ? x : 0.0f);
}

// ---- Bits ------------------------------------------------------------------------------------

inline unsigned __float_as_uint(float x) {
  return std::bit_cast<unsigned>(x);
}
inline float __uint_as_float(unsigned x) {
  return std::bit_cast<float>(x);
}
inline int __float_as_int(float x) {
  return std::bit_cast<int>(x);
}
inline float __int_as_float(int x) {
  return std::bit_cast<float>(x);
}
inline long long __double_as_longlong(double x) {
  return std::bit_cast<long long>(x);
}
inline double __longlong_as_double(long long x) {
  return std::bit_cast<double>(x);
}
inline int __popc(unsigned x) {
  return __builtin_popcount(x);
}
inline int __popcll(unsigned long long x) {
  return __builtin_popcountll(x);
}
inline int __clz(int x) {
  return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x));
}
inline int __ffs(int x) {
  return __builtin_ffs(x);
}

// Read-only cached load: a plain load here.
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- Atomics: threads of a host thread never run at once, so plain updates -------------

template <class T>
inline T atomicAdd(T* address, T value) {
  const T old = *address;
  *address = old + value;
  return old;
}
template <class T>
inline T atomicMax(T* address, T value) {
  const T old = *address;
  *address = old < value ? value : old;
  return old;
}
template <class T>
inline T atomicMin(T* address, T value) {
  const T old = *address;
  *address = value < old ? value : old;
  return old;
}
template <class T>
inline T atomicExch(T* address, T value) {
  const T old = *address;
  *address = value;
  return old;
}
template <class T>
inline T atomicCAS(T* address, T compare, T value) {
  const T old = *address;
  if (old == compare) *address = value;
  return old;
}

// ---- Scheduling points (launch.cpp) -----------------------------------------------------

namespace turbine_emu {

using Site = std::source_location;

// __syncthreads and its reductions: every thread of the block must reach the
// same call site in the same phase.
enum class BarrierReduce { none, count, all, any };
int block_barrier(BarrierReduce reduce, int predicate, const Site& site);

// A warp-collective exchange of up-to-8-byte values among the lanes of mask
// (which must all arrive, at the same call site, and include the caller).
enum class WarpOp { shfl_idx, shfl_xor, shfl_up, shfl_down, ballot, any, all, sync };
uint64_t warp_collective(WarpOp op, unsigned mask, uint64_t value, int argument, int width,
                         const Site& site);

// D += A * B for one m16n8k16 tile, A row-major and B column-major, 16-bit
// inputs and f32 accumulators, over a whole warp: every lane passes its
// fragments in the PTX ISA's layout (mma.m16n8k16 floating point fragments).
void mma_m16n8k16_bf16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                       const Site& site = Site::current());
void mma_m16n8k16_f16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2],
                      const Site& site = Site::current());

// The storage of a __shared__ declaration in the running block: the first
// thread to reach it in a block carves it from the block's arena and fills it
// with 0xFF bytes; `key` identifies the declaration (per template instance).
void* static_shared_storage(const void* key, size_t bytes, size_t align, const Site& site);
// The block's dynamic shared memory (extern __shared__), 0xFF at block start.
void* dynamic_shared_storage(const Site& site);

template <class T>
struct SharedKey {
  static constexpr char key = 0;
};

// What rewrite_cu.py puts in place of `__shared__ T name[dims];`:
// `auto& name = ::turbine_emu::static_shared<T[dims]>([] {});` (the lambda
// makes the key distinct per declaration and per template instance), with
// the alignment of an __align__(n) as the second template argument.
template <class T, size_t Align = alignof(T), class Tag>
inline T& static_shared(Tag, const Site& site = Site::current()) {
  static_assert(std::is_trivially_default_constructible_v<std::remove_all_extents_t<T>>,
                "__shared__ variables cannot have constructors");
  constexpr size_t align = Align > alignof(T) ? Align : alignof(T);
  return *static_cast<T*>(
      static_shared_storage(&SharedKey<std::pair<T, Tag>>::key, sizeof(T), align, site));
}
template <class T>
inline T* dynamic_shared(const Site& site = Site::current()) {
  return static_cast<T*>(dynamic_shared_storage(site));
}

template <class T>
inline uint64_t to_lane_bits(T value) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "warp shuffles exchange trivially copyable values of at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  return bits;
}
template <class T>
inline T from_lane_bits(uint64_t bits) {
  T value;
  std::memcpy(&value, &bits, sizeof(T));
  return value;
}

// ---- Launch ------------------------------------------------------------------------------

struct LaunchConfig {
  const char* name;  // the kernel expression at the launch site
  Site site;         // the launch site in the .cu source
  const void* kernel;
  dim3 grid, block;
  size_t dynamic_shared;
  cudaStream_t stream;
};

// Checks the configuration like the runtime does (set_last_error and false
// when refused), then runs every block to completion; entry(closure) is the
// body of one thread.
bool check_launch(const LaunchConfig& config);
void run_grid(const LaunchConfig& config, void (*entry)(const void*), const void* closure);
// Reports a kernel argument that is not device memory (stderr and the last
// error); the launch does not run.
void reject_pointer_argument(const LaunchConfig& config, int index, const void* pointer);

template <class T>
inline bool device_argument_ok(const LaunchConfig& config, int index, const T& value) {
  if constexpr (std::is_pointer_v<T>) {
    if (value != nullptr && !is_device_range(value, 0)) {
      reject_pointer_argument(config, index, value);
      return false;
    }
  }
  return true;
}

// kernel<<<grid, block, shared, stream>>>(args...): the arguments converted
// to the kernel's parameter types (once, as the runtime copies them), the
// configuration and every raw pointer argument checked, then the grid run
// synchronously.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), const char* name, const Site& site, dim3 grid, dim3 block,
            size_t dynamic_shared, cudaStream_t stream, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong arity");
  static_assert((!std::is_reference_v<Params> && ...), "kernel parameters are passed by value");
  struct Closure {
    void (*kernel)(Params...);
    std::tuple<std::remove_cv_t<Params>...> args;
  };
  const LaunchConfig config{
      name, site, reinterpret_cast<const void*>(kernel), grid, block, dynamic_shared, stream};
  if (!check_launch(config)) return;
  const Closure closure{kernel,
                        std::tuple<std::remove_cv_t<Params>...>(std::forward<Args>(args)...)};
  const bool pointers_ok = std::apply(
      [&](const auto&... values) {
        [[maybe_unused]] int index = 0;
        return (device_argument_ok(config, index++, values) && ...);
      },
      closure.args);
  if (!pointers_ok) return;
  run_grid(
      config,
      [](const void* p) {
        const Closure& c = *static_cast<const Closure*>(p);
        std::apply(c.kernel, c.args);
      },
      &closure);
}

}  // namespace turbine_emu

// ---- The CUDA spellings --------------------------------------------------------------------

inline void __syncthreads(const std::source_location& site = std::source_location::current()) {
  turbine_emu::block_barrier(turbine_emu::BarrierReduce::none, 0, site);
}
inline int __syncthreads_or(int predicate,
                            const std::source_location& site = std::source_location::current()) {
  return turbine_emu::block_barrier(turbine_emu::BarrierReduce::any, predicate, site);
}
inline int __syncthreads_and(int predicate,
                             const std::source_location& site = std::source_location::current()) {
  return turbine_emu::block_barrier(turbine_emu::BarrierReduce::all, predicate, site);
}
inline int __syncthreads_count(int predicate,
                               const std::source_location& site = std::source_location::current()) {
  return turbine_emu::block_barrier(turbine_emu::BarrierReduce::count, predicate, site);
}

inline void __syncwarp(unsigned mask = 0xffffffffu,
                       const std::source_location& site = std::source_location::current()) {
  turbine_emu::warp_collective(turbine_emu::WarpOp::sync, mask, 0, 0, warpSize, site);
}

template <class T>
inline T __shfl_sync(unsigned mask, T value, int src_lane, int width = warpSize,
                     const std::source_location& site = std::source_location::current()) {
  return turbine_emu::from_lane_bits<T>(
      turbine_emu::warp_collective(turbine_emu::WarpOp::shfl_idx, mask,
                                   turbine_emu::to_lane_bits(value), src_lane, width, site));
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize,
                         const std::source_location& site = std::source_location::current()) {
  return turbine_emu::from_lane_bits<T>(
      turbine_emu::warp_collective(turbine_emu::WarpOp::shfl_xor, mask,
                                   turbine_emu::to_lane_bits(value), lane_mask, width, site));
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize,
                        const std::source_location& site = std::source_location::current()) {
  return turbine_emu::from_lane_bits<T>(
      turbine_emu::warp_collective(turbine_emu::WarpOp::shfl_up, mask,
                                   turbine_emu::to_lane_bits(value), int(delta), width, site));
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize,
                          const std::source_location& site = std::source_location::current()) {
  return turbine_emu::from_lane_bits<T>(
      turbine_emu::warp_collective(turbine_emu::WarpOp::shfl_down, mask,
                                   turbine_emu::to_lane_bits(value), int(delta), width, site));
}
inline unsigned __ballot_sync(unsigned mask, int predicate,
                              const std::source_location& site = std::source_location::current()) {
  return unsigned(turbine_emu::warp_collective(turbine_emu::WarpOp::ballot, mask, predicate != 0, 0,
                                               warpSize, site));
}
inline int __any_sync(unsigned mask, int predicate,
                      const std::source_location& site = std::source_location::current()) {
  return int(turbine_emu::warp_collective(turbine_emu::WarpOp::any, mask, predicate != 0, 0,
                                          warpSize, site));
}
inline int __all_sync(unsigned mask, int predicate,
                      const std::source_location& site = std::source_location::current()) {
  return int(turbine_emu::warp_collective(turbine_emu::WarpOp::all, mask, predicate != 0, 0,
                                          warpSize, site));
}
