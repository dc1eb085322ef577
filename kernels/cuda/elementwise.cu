// Elementwise CUDA kernels: fill, dtype casts, add, scale, bias, the double
// reductions sum / sum_squares, GeLU (tanh form) and the loss-scaling
// unscale. Same formulas as kernels/cpu/elementwise.cpp and memory.cpp.
#include <cuda_fp16.h>

#include <algorithm>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::grid_index;
using cuda::grid_stride;

namespace {

constexpr unsigned kThreads = cuda::kElementwiseThreads;

__global__ void fill_kernel(float* __restrict__ x, size_t n, float value) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) x[i] = value;
}

using cuda::f32_to_bf16_bits;

__global__ void f32_to_bf16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y,
                                   size_t n) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) y[i] = f32_to_bf16_bits(x[i]);
}

__global__ void bf16_to_f32_kernel(const uint16_t* __restrict__ x, float* __restrict__ y,
                                   size_t n) {
  for (size_t i = grid_index(); i < n; i += grid_stride())
    y[i] = __uint_as_float(static_cast<uint32_t>(x[i]) << 16);
}

__global__ void f32_to_f16_kernel(const float* __restrict__ x, uint16_t* __restrict__ y, size_t n) {
  for (size_t i = grid_index(); i < n; i += grid_stride())
    y[i] = __half_as_ushort(__float2half_rn(x[i]));
}

__global__ void f16_to_f32_kernel(const uint16_t* __restrict__ x, float* __restrict__ y, size_t n) {
  for (size_t i = grid_index(); i < n; i += grid_stride())
    y[i] = __half2float(__ushort_as_half(x[i]));
}

// The kernels below are templated on the storage S of their activations
// (device.cuh): f32, or 16-bit widened to f32 and rounded once per output.
using cuda::F32Storage;
using cuda::from_f32;
using cuda::to_f32;

// y may alias a or b, so no __restrict__ here.
template <typename S>
__global__ void add_kernel(const typename S::type* a, const typename S::type* b,
                           typename S::type* y, size_t n, float alpha, float beta) {
  for (size_t i = grid_index(); i < n; i += grid_stride())
    y[i] = from_f32<S>(alpha * to_f32<S>(a[i]) + beta * to_f32<S>(b[i]));
}

// y may alias x (in-place scaling).
template <typename S>
__global__ void scale_kernel(const typename S::type* x, typename S::type* y, size_t n, float alpha,
                             bool accumulate) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const float v = alpha * to_f32<S>(x[i]);
    y[i] = from_f32<S>(accumulate ? to_f32<S>(y[i]) + v : v);
  }
}

// One thread per column, looping over a stride of rows: bias is read once.
template <typename S>
__global__ void add_bias_kernel(typename S::type* __restrict__ y, const float* __restrict__ bias,
                                int rows, int cols) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const float b = bias[c];
  for (int r = blockIdx.y; r < rows; r += gridDim.y) {
    typename S::type& out = y[size_t(r) * cols + c];
    out = from_f32<S>(to_f32<S>(out) + b);
  }
}

// First pass of bias_backward: partials (chunks, cols), see device.cuh.
template <typename S>
__global__ void bias_partials_kernel(const typename S::type* __restrict__ dy,
                                     float* __restrict__ partials, int rows, int cols,
                                     int rows_per_chunk) {
  __shared__ float tile[cuda::kColumnLanes][cuda::kColumnTile + 1];
  const int c = blockIdx.x * cuda::kColumnTile + threadIdx.x;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = min(rows, r0 + rows_per_chunk);
  float acc = 0.0f;
  if (c < cols)
    for (int r = r0 + threadIdx.y; r < r1; r += cuda::kColumnLanes)
      acc += to_f32<S>(dy[size_t(r) * cols + c]);
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols)
    partials[size_t(blockIdx.y) * cols + c] = cuda::sum_column_lanes(tile, threadIdx.x);
}

__global__ void bias_finish_kernel(const float* __restrict__ partials, int chunks, int cols,
                                   float* __restrict__ dbias, bool accumulate) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < cols) cuda::finish_column(partials, chunks, cols, c, dbias, accumulate);
}

// sum / sum_squares: each block writes its double partial, then one block
// adds the partials. The block count depends only on n (deterministic).
constexpr unsigned kSumBlocks = 1024;

template <bool kSquares>
__global__ void sum_partials_kernel(const float* __restrict__ x, size_t n,
                                    double* __restrict__ partials) {
  __shared__ double shared[32];
  double total = 0.0;
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const double v = x[i];
    total += kSquares ? v * v : v;
  }
  total = cuda::block_sum(total, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void sum_finish_kernel(const double* __restrict__ partials, unsigned count,
                                  double* __restrict__ result) {
  __shared__ double shared[32];
  double total = 0.0;
  for (unsigned i = threadIdx.x; i < count; i += blockDim.x) total += partials[i];
  total = cuda::block_sum(total, shared);
  if (threadIdx.x == 0) *result = total;
}

constexpr float kGeluC = 0.79788456f;  // sqrt(2/pi), the constant BLOOM uses

// The CPU uses a polynomial tanh (vec_math.hpp) so that its loop vectorizes;
// here the loop is memory-bound and the accurate tanhf costs nothing. The two
// agree to a few ulp.
// y may alias x (in place).
template <typename S>
__global__ void gelu_forward_kernel(const typename S::type* x, typename S::type* y, size_t n) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const float v = to_f32<S>(x[i]);
    y[i] = from_f32<S>(0.5f * v * (1.0f + tanhf(kGeluC * v * (1.0f + 0.044715f * v * v))));
  }
}

// dx may alias dy (an in-place gradient).
template <typename S>
__global__ void gelu_backward_kernel(const typename S::type* x, const typename S::type* dy,
                                     typename S::type* dx, size_t n, bool accumulate) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const float v = to_f32<S>(x[i]);
    const float t = tanhf(kGeluC * v * (1.0f + 0.044715f * v * v));
    const float d =
        0.5f * v * ((1.0f - t * t) * (kGeluC + 0.1070322243f * v * v)) + 0.5f * (1.0f + t);
    const float g = d * to_f32<S>(dy[i]);
    dx[i] = from_f32<S>(accumulate ? to_f32<S>(dx[i]) + g : g);
  }
}

// Scales x and raises *nonfinite if any element was inf or NaN before
// scaling; every raising thread writes the same value, so the race is benign.
__global__ void unscale_kernel(float* __restrict__ x, size_t n, float alpha,
                               int* __restrict__ nonfinite) {
  bool bad = false;
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const float v = x[i];
    bad = bad || !isfinite(v);
    x[i] = v * alpha;
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) *nonfinite = 1;
}

}  // namespace

void CudaBackend::fill(float* x, size_t n, float value) {
  cuda::launch_elementwise(stream(), n, fill_kernel, x, n, value);
}

void CudaBackend::convert_f32_to_bf16(const float* x, uint16_t* y, size_t n) {
  cuda::launch_elementwise(stream(), n, f32_to_bf16_kernel, x, y, n);
}

void CudaBackend::convert_bf16_to_f32(const uint16_t* x, float* y, size_t n) {
  cuda::launch_elementwise(stream(), n, bf16_to_f32_kernel, x, y, n);
}

void CudaBackend::convert_f32_to_f16(const float* x, uint16_t* y, size_t n) {
  cuda::launch_elementwise(stream(), n, f32_to_f16_kernel, x, y, n);
}

void CudaBackend::convert_f16_to_f32(const uint16_t* x, float* y, size_t n) {
  cuda::launch_elementwise(stream(), n, f16_to_f32_kernel, x, y, n);
}

void CudaBackend::add(const float* a, const float* b, float* y, size_t n, float alpha, float beta) {
  cuda::launch_elementwise(stream(), n, add_kernel<F32Storage>, a, b, y, n, alpha, beta);
}

void CudaBackend::add16(FloatType t, const uint16_t* a, const uint16_t* b, uint16_t* y, size_t n,
                        float alpha, float beta) {
  cuda::with_half_storage(t, [&](auto s) {
    cuda::launch_elementwise(stream(), n, add_kernel<decltype(s)>, a, b, y, n, alpha, beta);
  });
}

void CudaBackend::scale(const float* x, float* y, size_t n, float alpha, bool accumulate) {
  cuda::launch_elementwise(stream(), n, scale_kernel<F32Storage>, x, y, n, alpha, accumulate);
}

void CudaBackend::scale16(FloatType t, const uint16_t* x, uint16_t* y, size_t n, float alpha,
                          bool accumulate) {
  cuda::with_half_storage(t, [&](auto s) {
    cuda::launch_elementwise(stream(), n, scale_kernel<decltype(s)>, x, y, n, alpha, accumulate);
  });
}

namespace {
template <typename S>
void launch_add_bias(cudaStream_t stream, typename S::type* y, const float* bias, int rows,
                     int cols) {
  if (rows <= 0 || cols <= 0) return;
  const dim3 grid((cols + kThreads - 1) / kThreads, static_cast<unsigned>(std::min(rows, 4096)));
  add_bias_kernel<S><<<grid, kThreads, 0, stream>>>(y, bias, rows, cols);
  TURBINE_CUDA_LAUNCH_CHECK();
}
}  // namespace

void CudaBackend::add_bias(float* y, const float* bias, int rows, int cols) {
  launch_add_bias<F32Storage>(stream(), y, bias, rows, cols);
}

void CudaBackend::add_bias16(FloatType t, uint16_t* y, const float* bias, int rows, int cols) {
  cuda::with_half_storage(
      t, [&](auto s) { launch_add_bias<decltype(s)>(stream(), y, bias, rows, cols); });
}

namespace {
template <typename S>
void launch_bias_backward(CudaBackend& be, const typename S::type* dy, float* dbias, int rows,
                          int cols, bool accumulate) {
  if (cols <= 0) return;
  if (rows <= 0) {
    // No rows: the column sums are zero, as on the CPU.
    if (!accumulate)
      TURBINE_CUDA_CHECK(cudaMemsetAsync(dbias, 0, sizeof(float) * cols, be.stream()));
    return;
  }
  const cuda::ColumnChunks split = cuda::column_chunks(rows, cols);
  auto* partials = static_cast<float*>(be.scratch(sizeof(float) * split.chunks * size_t(cols)));
  const dim3 grid((cols + cuda::kColumnTile - 1) / cuda::kColumnTile, split.chunks);
  const dim3 block(cuda::kColumnTile, cuda::kColumnLanes);
  bias_partials_kernel<S>
      <<<grid, block, 0, be.stream()>>>(dy, partials, rows, cols, split.rows_per_chunk);
  TURBINE_CUDA_LAUNCH_CHECK();
  bias_finish_kernel<<<(cols + kThreads - 1) / kThreads, kThreads, 0, be.stream()>>>(
      partials, split.chunks, cols, dbias, accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}
}  // namespace

void CudaBackend::bias_backward(const float* dy, float* dbias, int rows, int cols,
                                bool accumulate) {
  launch_bias_backward<F32Storage>(*this, dy, dbias, rows, cols, accumulate);
}

void CudaBackend::bias_backward16(FloatType t, const uint16_t* dy, float* dbias, int rows, int cols,
                                  bool accumulate) {
  cuda::with_half_storage(t, [&](auto s) {
    launch_bias_backward<decltype(s)>(*this, dy, dbias, rows, cols, accumulate);
  });
}

namespace {

// Both passes of sum / sum_squares, and the copy of the total to the host.
template <bool kSquares>
double reduce_to_host(CudaBackend& backend, const float* x, size_t n) {
  if (n == 0) return 0.0;
  const unsigned blocks = std::min(cuda::blocks_for(n, kThreads), kSumBlocks);
  auto* partials = static_cast<double*>(backend.scratch(sizeof(double) * (blocks + 1)));
  double* result = partials + blocks;
  sum_partials_kernel<kSquares><<<blocks, kThreads, 0, backend.stream()>>>(x, n, partials);
  TURBINE_CUDA_LAUNCH_CHECK();
  sum_finish_kernel<<<1, 1024, 0, backend.stream()>>>(partials, blocks, result);
  TURBINE_CUDA_LAUNCH_CHECK();
  double total = 0.0;
  backend.copy_to_host(&total, result, sizeof(double));
  return total;
}

}  // namespace

double CudaBackend::sum(const float* x, size_t n) {
  return reduce_to_host<false>(*this, x, n);
}

double CudaBackend::sum_squares(const float* x, size_t n) {
  return reduce_to_host<true>(*this, x, n);
}

void CudaBackend::gelu_forward(const float* x, float* y, size_t n) {
  cuda::launch_elementwise(stream(), n, gelu_forward_kernel<F32Storage>, x, y, n);
}

void CudaBackend::gelu_forward16(FloatType t, const uint16_t* x, uint16_t* y, size_t n) {
  cuda::with_half_storage(t, [&](auto s) {
    cuda::launch_elementwise(stream(), n, gelu_forward_kernel<decltype(s)>, x, y, n);
  });
}

void CudaBackend::gelu_backward(const float* x, const float* dy, float* dx, size_t n,
                                bool accumulate) {
  cuda::launch_elementwise(stream(), n, gelu_backward_kernel<F32Storage>, x, dy, dx, n, accumulate);
}

void CudaBackend::gelu_backward16(FloatType t, const uint16_t* x, const uint16_t* dy, uint16_t* dx,
                                  size_t n, bool accumulate) {
  cuda::with_half_storage(t, [&](auto s) {
    cuda::launch_elementwise(stream(), n, gelu_backward_kernel<decltype(s)>, x, dy, dx, n,
                             accumulate);
  });
}

bool CudaBackend::unscale_and_check(float* x, size_t n, float alpha) {
  if (n == 0) return true;
  auto* nonfinite = static_cast<int*>(scratch(sizeof(int)));
  TURBINE_CUDA_CHECK(cudaMemsetAsync(nonfinite, 0, sizeof(int), stream()));
  unscale_kernel<<<cuda::blocks_for(n, kThreads), kThreads, 0, stream()>>>(x, n, alpha, nonfinite);
  TURBINE_CUDA_LAUNCH_CHECK();
  int host_flag = 0;
  copy_to_host(&host_flag, nonfinite, sizeof(int));
  return host_flag == 0;
}

}  // namespace turbine::kernels
