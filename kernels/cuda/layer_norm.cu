// LayerNorm over the last dim on CUDA, x (rows, cols): forward saves mean and
// rstd per row; backward recomputes xhat from them. Same formulas as
// kernels/cpu/layer_norm.cpp (two-pass variance, 1 / sqrt, not rsqrt).
// One block per row; rows are read as float4 when every row start is 16-byte
// aligned. dweight / dbias are column sums over rows, reduced in two
// deterministic passes (per-chunk partials in scratch, then chunks in order).
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::F32Storage;
using cuda::load_pack;
using cuda::load_pack_as;
using cuda::Pack;
using cuda::store_pack_as;
using cuda::to_f32;

// x, y, dy and dx are in storage S (f32, or 16-bit read one value at a
// time); weights, statistics and parameter gradients are f32.

namespace {

constexpr unsigned kMaxRowThreads = 512;

// y (rows, cols) from x; mean, rstd (rows). V floats per load.
template <int V, typename S>
__global__ void layer_norm_forward_kernel(const typename S::type* __restrict__ x,
                                          const float* __restrict__ weight,
                                          const float* __restrict__ bias,
                                          typename S::type* __restrict__ y,
                                          float* __restrict__ mean, float* __restrict__ rstd,
                                          int cols, float eps) {
  __shared__ float shared[32];
  const size_t r = blockIdx.x;
  const typename S::type* xr = x + r * cols;
  typename S::type* yr = y + r * cols;
  const int packs = cols / V;

  float total = 0.0f;
  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(xr + p * V);
    for (int j = 0; j < V; ++j) total += xv.v[j];
  }
  const float m = cuda::block_sum(total, shared) / cols;

  float var = 0.0f;
  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(xr + p * V);
    for (int j = 0; j < V; ++j) var += (xv.v[j] - m) * (xv.v[j] - m);
  }
  const float s = 1.0f / sqrtf(cuda::block_sum(var, shared) / cols + eps);

  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(xr + p * V);
    const Pack<V> wv = load_pack<V>(weight + p * V);
    const Pack<V> bv = load_pack<V>(bias + p * V);
    Pack<V> yv;
    for (int j = 0; j < V; ++j) yv.v[j] = (xv.v[j] - m) * s * wv.v[j] + bv.v[j];
    store_pack_as<V, S>(yr + p * V, yv);
  }
  if (threadIdx.x == 0) {
    mean[r] = m;
    rstd[r] = s;
  }
}

// dx of one row per block. dx may alias dy (each element is read before it is
// written, and the parameter sums have already read dy), so no __restrict__.
template <int V, typename S>
__global__ void layer_norm_backward_dx_kernel(const typename S::type* __restrict__ x,
                                              const float* __restrict__ weight,
                                              const float* __restrict__ mean,
                                              const float* __restrict__ rstd,
                                              const typename S::type* dy, typename S::type* dx,
                                              int cols, bool accumulate) {
  __shared__ float shared[32];
  const size_t r = blockIdx.x;
  const typename S::type* xr = x + r * cols;
  const typename S::type* dyr = dy + r * cols;
  typename S::type* dxr = dx + r * cols;
  const float m = mean[r], s = rstd[r];
  const int packs = cols / V;

  float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(xr + p * V);
    const Pack<V> dyv = load_pack_as<V, S>(dyr + p * V);
    const Pack<V> wv = load_pack<V>(weight + p * V);
    for (int j = 0; j < V; ++j) {
      const float xhat = (xv.v[j] - m) * s;
      const float dxhat = dyv.v[j] * wv.v[j];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * xhat;
    }
  }
  const float mean_dxhat = cuda::block_sum(sum_dxhat, shared) / cols;
  const float mean_dxhat_xhat = cuda::block_sum(sum_dxhat_xhat, shared) / cols;

  for (int p = threadIdx.x; p < packs; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(xr + p * V);
    const Pack<V> dyv = load_pack_as<V, S>(dyr + p * V);
    const Pack<V> wv = load_pack<V>(weight + p * V);
    Pack<V> dxv{};
    if (accumulate) dxv = load_pack_as<V, S>(dxr + p * V);
    for (int j = 0; j < V; ++j) {
      const float xhat = (xv.v[j] - m) * s;
      const float g = s * (dyv.v[j] * wv.v[j] - mean_dxhat - xhat * mean_dxhat_xhat);
      dxv.v[j] = accumulate ? dxv.v[j] + g : g;
    }
    store_pack_as<V, S>(dxr + p * V, dxv);
  }
}

// First pass of dweight / dbias: partials (chunks, cols) of dy * xhat and dy,
// one block per (column tile, chunk of rows); see device.cuh.
template <typename S>
__global__ void layer_norm_param_partials_kernel(const typename S::type* __restrict__ x,
                                                 const float* __restrict__ mean,
                                                 const float* __restrict__ rstd,
                                                 const typename S::type* __restrict__ dy,
                                                 float* __restrict__ dw_partials,
                                                 float* __restrict__ db_partials, int rows,
                                                 int cols, int rows_per_chunk) {
  __shared__ float dw_tile[cuda::kColumnLanes][cuda::kColumnTile + 1];
  __shared__ float db_tile[cuda::kColumnLanes][cuda::kColumnTile + 1];
  const int c = blockIdx.x * cuda::kColumnTile + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(rows, r0 + rows_per_chunk);
  float dw = 0.0f, db = 0.0f;
  if (c < cols) {
    for (int r = r0 + threadIdx.y; r < r1; r += cuda::kColumnLanes) {
      const size_t at = size_t(r) * cols + c;
      const float xhat = (to_f32<S>(x[at]) - mean[r]) * rstd[r];
      const float g = to_f32<S>(dy[at]);
      dw += g * xhat;
      db += g;
    }
  }
  dw_tile[threadIdx.y][threadIdx.x] = dw;
  db_tile[threadIdx.y][threadIdx.x] = db;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    dw_partials[size_t(blockIdx.y) * cols + c] = cuda::sum_column_lanes(dw_tile, threadIdx.x);
    db_partials[size_t(blockIdx.y) * cols + c] = cuda::sum_column_lanes(db_tile, threadIdx.x);
  }
}

__global__ void layer_norm_param_finish_kernel(const float* __restrict__ dw_partials,
                                               const float* __restrict__ db_partials, int chunks,
                                               int cols, float* __restrict__ dweight,
                                               float* __restrict__ dbias, bool accumulate) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  cuda::finish_column(dw_partials, chunks, cols, c, dweight, accumulate);
  cuda::finish_column(db_partials, chunks, cols, c, dbias, accumulate);
}

}  // namespace

namespace {

template <typename S>
void launch_layer_norm_forward(cudaStream_t stream, const typename S::type* x, const float* weight,
                               const float* bias, typename S::type* y, float* mean, float* rstd,
                               int rows, int cols, float eps) {
  if (rows <= 0 || cols <= 0) return;
  const unsigned threads = cuda::row_threads(cols, kMaxRowThreads);
  auto kernel = layer_norm_forward_kernel<1, S>;
  if constexpr (std::is_same_v<S, F32Storage>)
    if (cuda::rows_aligned16(cols, x, weight, bias, y)) kernel = layer_norm_forward_kernel<4, S>;
  kernel<<<rows, threads, 0, stream>>>(x, weight, bias, y, mean, rstd, cols, eps);
  TURBINE_CUDA_LAUNCH_CHECK();
}

template <typename S>
void launch_layer_norm_backward(CudaBackend& be, const typename S::type* x, const float* weight,
                                const float* mean, const float* rstd, const typename S::type* dy,
                                typename S::type* dx, float* dweight, float* dbias, int rows,
                                int cols, bool accumulate_dx, bool accumulate_params) {
  if (cols <= 0) return;
  if (rows <= 0) {
    // No rows: the parameter gradients are zero sums, as on the CPU.
    if (!accumulate_params) {
      TURBINE_CUDA_CHECK(cudaMemsetAsync(dweight, 0, sizeof(float) * cols, be.stream()));
      TURBINE_CUDA_CHECK(cudaMemsetAsync(dbias, 0, sizeof(float) * cols, be.stream()));
    }
    return;
  }
  // Parameter sums first: they read dy, which dx may overwrite in place.
  const cuda::ColumnChunks split = cuda::column_chunks(rows, cols);
  const size_t partial_count = size_t(split.chunks) * cols;
  auto* dw_partials = static_cast<float*>(be.scratch(sizeof(float) * 2 * partial_count));
  float* db_partials = dw_partials + partial_count;
  const dim3 grid((cols + cuda::kColumnTile - 1) / cuda::kColumnTile, split.chunks);
  const dim3 block(cuda::kColumnTile, cuda::kColumnLanes);
  layer_norm_param_partials_kernel<S><<<grid, block, 0, be.stream()>>>(
      x, mean, rstd, dy, dw_partials, db_partials, rows, cols, split.rows_per_chunk);
  TURBINE_CUDA_LAUNCH_CHECK();
  layer_norm_param_finish_kernel<<<(cols + 255) / 256, 256, 0, be.stream()>>>(
      dw_partials, db_partials, split.chunks, cols, dweight, dbias, accumulate_params);
  TURBINE_CUDA_LAUNCH_CHECK();

  const unsigned threads = cuda::row_threads(cols, kMaxRowThreads);
  auto kernel = layer_norm_backward_dx_kernel<1, S>;
  if constexpr (std::is_same_v<S, F32Storage>)
    if (cuda::rows_aligned16(cols, x, weight, dy, dx)) kernel = layer_norm_backward_dx_kernel<4, S>;
  kernel<<<rows, threads, 0, be.stream()>>>(x, weight, mean, rstd, dy, dx, cols, accumulate_dx);
  TURBINE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void CudaBackend::layer_norm_forward(const float* x, const float* weight, const float* bias,
                                     float* y, float* mean, float* rstd, int rows, int cols,
                                     float eps) {
  launch_layer_norm_forward<F32Storage>(stream(), x, weight, bias, y, mean, rstd, rows, cols, eps);
}

void CudaBackend::layer_norm_forward16(FloatType t, const uint16_t* x, const float* weight,
                                       const float* bias, uint16_t* y, float* mean, float* rstd,
                                       int rows, int cols, float eps) {
  cuda::with_half_storage(t, [&](auto s) {
    launch_layer_norm_forward<decltype(s)>(stream(), x, weight, bias, y, mean, rstd, rows, cols,
                                           eps);
  });
}

void CudaBackend::layer_norm_backward(const float* x, const float* weight, const float* mean,
                                      const float* rstd, const float* dy, float* dx, float* dweight,
                                      float* dbias, int rows, int cols, bool accumulate_dx,
                                      bool accumulate_params) {
  launch_layer_norm_backward<F32Storage>(*this, x, weight, mean, rstd, dy, dx, dweight, dbias, rows,
                                         cols, accumulate_dx, accumulate_params);
}

void CudaBackend::layer_norm_backward16(FloatType t, const uint16_t* x, const float* weight,
                                        const float* mean, const float* rstd, const uint16_t* dy,
                                        uint16_t* dx, float* dweight, float* dbias, int rows,
                                        int cols, bool accumulate_dx, bool accumulate_params) {
  cuda::with_half_storage(t, [&](auto s) {
    launch_layer_norm_backward<decltype(s)>(*this, x, weight, mean, rstd, dy, dx, dweight, dbias,
                                            rows, cols, accumulate_dx, accumulate_params);
  });
}

}  // namespace turbine::kernels
