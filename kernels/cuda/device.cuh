// Device-side helpers shared by the CUDA kernels: grid-stride indexing,
// warp and block sums, and the launch shapes of row and column reductions.
// Every reduction here adds in a fixed tree that depends only on the launch
// shape, and the shapes depend only on the sizes, so results are bitwise
// reproducible from run to run (no atomics on floats).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "kernels/backend.hpp"
#include "kernels/cuda/check.hpp"

namespace turbine::kernels::cuda {

// The first element of this thread and the step of a grid-stride loop.
__device__ inline size_t grid_index() {
  return size_t(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline size_t grid_stride() {
  return size_t(gridDim.x) * blockDim.x;
}

// Launches a grid-stride kernel over n elements on `stream`: nothing when n
// is 0, and a launch check after.
constexpr unsigned kElementwiseThreads = 256;

template <typename... Params, typename... Args>
void launch_elementwise(cudaStream_t stream, size_t n, void (*kernel)(Params...), Args&&... args) {
  if (n == 0) return;
  kernel<<<blocks_for(n, kElementwiseThreads), kElementwiseThreads, 0, stream>>>(
      std::forward<Args>(args)...);
  TURBINE_CUDA_LAUNCH_CHECK();
}

// V consecutive floats, loaded and stored as one float4 when V == 4 (the
// address must then be 16-byte aligned) or one float when V == 1.
template <int V>
struct Pack {
  float v[V];
};

template <int V>
__device__ inline Pack<V> load_pack(const float* p) {
  static_assert(V == 1 || V == 4);
  if constexpr (V == 4) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    return {{q.x, q.y, q.z, q.w}};
  } else {
    return {{*p}};
  }
}

template <int V>
__device__ inline void store_pack(float* p, const Pack<V>& q) {
  static_assert(V == 1 || V == 4);
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(q.v[0], q.v[1], q.v[2], q.v[3]);
  } else {
    *p = q.v[0];
  }
}

// ---- storage: f32, or 16-bit activations (bf16 / f16 bits in uint16_t)
// Kernels templated on a storage S read each element widened to f32
// (to_f32<S>) and round each result once (from_f32<S>), to nearest even as
// the CPU's conversions (kernels/cpu/precision.hpp), NaN kept NaN.
struct F32Storage {
  using type = float;
};
struct BF16Storage {
  using type = uint16_t;
};
struct F16Storage {
  using type = uint16_t;
};

// bf16 bits of f, rounded to nearest even; a NaN stays a (quiet) NaN, bit
// for bit the CPU's f32_to_bf16 (__float2bfloat16_rn would canonicalize it).
__device__ inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

template <typename S>
__device__ inline float to_f32(typename S::type v) {
  if constexpr (std::is_same_v<S, BF16Storage>) {
    return __uint_as_float(static_cast<uint32_t>(v) << 16);
  } else if constexpr (std::is_same_v<S, F16Storage>) {
    return __half2float(__ushort_as_half(v));
  } else {
    return v;
  }
}

template <typename S>
__device__ inline typename S::type from_f32(float v) {
  if constexpr (std::is_same_v<S, BF16Storage>) {
    return f32_to_bf16_bits(v);
  } else if constexpr (std::is_same_v<S, F16Storage>) {
    return __half_as_ushort(__float2half_rn(v));
  } else {
    return v;
  }
}

// Runs fn(S{}) with the 16-bit storage of t (bf16 or f16).
template <typename Fn>
void with_half_storage(FloatType t, Fn&& fn) {
  if (t == FloatType::bf16)
    fn(BF16Storage{});
  else
    fn(F16Storage{});
}

// Packs from and to any storage: f32 as above; 16-bit one value at a time.
template <int V, typename S>
__device__ inline Pack<V> load_pack_as(const typename S::type* p) {
  if constexpr (std::is_same_v<S, F32Storage>) {
    return load_pack<V>(p);
  } else {
    static_assert(V == 1, "16-bit storage is read one value at a time");
    return {{to_f32<S>(*p)}};
  }
}

template <int V, typename S>
__device__ inline void store_pack_as(typename S::type* p, const Pack<V>& q) {
  if constexpr (std::is_same_v<S, F32Storage>) {
    store_pack<V>(p, q);
  } else {
    static_assert(V == 1, "16-bit storage is written one value at a time");
    *p = from_f32<S>(q.v[0]);
  }
}

// Whether rows of `cols` floats starting at each pointer can be read as
// float4: every row start 16-byte aligned.
template <typename... Pointers>
inline bool rows_aligned16(int cols, const Pointers*... pointers) {
  return cols % 4 == 0 && ((reinterpret_cast<uintptr_t>(pointers) % 16 == 0) && ...);
}

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Sum over a 1-D block whose size is a multiple of 32 (at most 1024); every
// thread gets the total. `shared` holds 32 values; the leading barrier lets
// one buffer serve consecutive calls.
template <typename T>
__device__ inline T block_sum(T v, T* shared) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_sum(lane < warps ? shared[lane] : T(0));
}

// Threads for a block that owns one row of `cols`: about four elements per
// thread, a whole number of warps, at most `max_threads`.
inline unsigned row_threads(size_t cols, unsigned max_threads) {
  const size_t per_four = (cols + 3) / 4;
  const size_t warps = (per_four + 31) / 32;
  const size_t threads = warps * 32;
  return threads < 32 ? 32 : (threads > max_threads ? max_threads : static_cast<unsigned>(threads));
}

// Blocks for kernels that copy whole rows: block x = row unit (one of
// `units`), block y = chunk of up to 256 threads over the row's `packs`.
struct RowGrid {
  dim3 grid;
  unsigned threads;
};

inline RowGrid row_grid(size_t units, int packs) {
  const unsigned rounded = (static_cast<unsigned>(packs) + 31) / 32 * 32;
  const unsigned threads = rounded < 256 ? rounded : 256;
  TURBINE_CUDA_REQUIRE(units < (size_t(1) << 31), "%zu rows exceed the CUDA grid", units);
  return {dim3(static_cast<unsigned>(units), (packs + threads - 1) / threads), threads};
}

// Column sums of a (rows, cols) matrix in two deterministic passes: blocks of
// kColumnTile columns x kColumnLanes row lanes write one partial per chunk of
// rows into scratch, then one thread per column adds the chunks in order.
constexpr int kColumnTile = 32;
constexpr int kColumnLanes = 8;

struct ColumnChunks {
  int chunks;          // partial sums per column
  int rows_per_chunk;  // rows summed into each
};

// About a thousand blocks in the first pass (enough to fill an H100 several
// times over), and no chunk shorter than 32 rows. rows and cols are positive.
inline ColumnChunks column_chunks(int rows, int cols) {
  const int tiles = (cols + kColumnTile - 1) / kColumnTile;
  const int chunks = std::min(std::max(1, 1024 / tiles), (rows + 31) / 32);
  const int rows_per_chunk = (rows + chunks - 1) / chunks;
  return {(rows + rows_per_chunk - 1) / rows_per_chunk, rows_per_chunk};
}

// Adds the per-lane sums of one column tile (tile[lane][column]) in lane
// order; called by the threads of row lane 0 after a barrier.
__device__ inline float sum_column_lanes(const float (*tile)[kColumnTile + 1], unsigned column) {
  float total = 0.0f;
  for (int lane = 0; lane < kColumnLanes; ++lane) total += tile[lane][column];
  return total;
}

// out[c] = (out[c] if accumulate, else 0) + the chunks' partials in order,
// the CPU's order of "start value, then partials".
__device__ inline void finish_column(const float* __restrict__ partials, int chunks, int cols,
                                     int c, float* __restrict__ out, bool accumulate) {
  float total = accumulate ? out[c] : 0.0f;
  for (int k = 0; k < chunks; ++k) total += partials[size_t(k) * cols + c];
  out[c] = total;
}

}  // namespace turbine::kernels::cuda
