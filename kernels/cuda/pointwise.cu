// Pointwise CUDA kernels of PPO and the image models: unary exp/log/relu/
// clamp, binary mul/minimum/maximum with a broadcast operand, reduce_sum over
// the broadcast dims (double accumulation in a fixed tree, no atomics),
// expand, and strided block copies. Formulas as kernels/cpu/pointwise.cpp.
#include <algorithm>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"
#include "kernels/pointwise_math.hpp"

namespace turbine::kernels {

using cuda::grid_index;
using cuda::grid_stride;

namespace {

constexpr unsigned kThreads = cuda::kElementwiseThreads;

// exp and log are each backend's own; the rest is in pointwise_math.hpp.
__device__ inline float unary_value(UnaryOp op, float x, float lo, float hi) {
  if (op == UnaryOp::exp) return expf(x);
  if (op == UnaryOp::log) return logf(x);
  if (op == UnaryOp::log_sigmoid) return log_sigmoid_value(x);
  return unary_select(op, x, lo, hi);
}

// y may alias x (in place).
__global__ void unary_forward_kernel(UnaryOp op, const float* x, float* y, size_t n, float lo,
                                     float hi) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) y[i] = unary_value(op, x[i], lo, hi);
}

__global__ void unary_backward_kernel(UnaryOp op, const float* x, const float* y, const float* dy,
                                      float* dx, size_t n, float lo, float hi, bool accumulate) {
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const float slope = unary_slope(op, x ? x[i] : 0.0f, y ? y[i] : 0.0f, lo, hi);
    store(dx + i, dy[i] * slope, accumulate);
  }
}

__global__ void binary_forward_kernel(BinaryOp op, const float* a, const float* b, float* y,
                                      Broadcast shape) {
  const size_t n = shape.numel();
  for (size_t i = grid_index(); i < n; i += grid_stride())
    y[i] = binary_value(op, a[i], b[(i / shape.inner) % shape.mid]);
}

__global__ void binary_backward_kernel(BinaryOp op, const float* a, const float* b, const float* dy,
                                       float* da, float* db_full, Broadcast shape,
                                       bool accumulate_da, bool accumulate_db) {
  const size_t n = shape.numel();
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    float slope_a, slope_b;
    binary_slopes(op, a[i], b[(i / shape.inner) % shape.mid], slope_a, slope_b);
    if (da) store(da + i, dy[i] * slope_a, accumulate_da);
    if (db_full) store(db_full + i, dy[i] * slope_b, accumulate_db);
  }
}

// reduce_sum, pass 1: block (q, chunk) sums elements [chunk * per_chunk, ...)
// of the outer * inner elements that belong to q, in double.
__global__ void reduce_partials_kernel(const float* __restrict__ x, Broadcast shape,
                                       size_t per_chunk, double* __restrict__ partials) {
  __shared__ double shared[32];
  const size_t q = blockIdx.x, span = size_t(shape.outer) * shape.inner;
  const size_t begin = size_t(blockIdx.y) * per_chunk;
  const size_t end = begin + per_chunk < span ? begin + per_chunk : span;
  double total = 0.0;
  for (size_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const size_t p = e / shape.inner, r = e % shape.inner;
    total += x[(p * shape.mid + q) * shape.inner + r];
  }
  total = cuda::block_sum(total, shared);
  if (threadIdx.x == 0) partials[q * gridDim.y + blockIdx.y] = total;
}

// Pass 2: y[q] (+)= alpha * the chunks' partials added in order.
__global__ void reduce_finish_kernel(const double* __restrict__ partials, int chunks, int64_t mid,
                                     float alpha, float* __restrict__ y, bool accumulate) {
  const int64_t q = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (q >= mid) return;
  double total = 0.0;
  for (int k = 0; k < chunks; ++k) total += partials[q * chunks + k];
  store(y + q, static_cast<float>(alpha * total), accumulate);
}

__global__ void expand_kernel(const float* __restrict__ x, float* __restrict__ y, Broadcast shape,
                              float alpha, bool accumulate) {
  const size_t n = shape.numel();
  for (size_t i = grid_index(); i < n; i += grid_stride())
    store(y + i, alpha * x[(i / shape.inner) % shape.mid], accumulate);
}

__global__ void copy_rows_strided_kernel(const float* __restrict__ src, int64_t src_stride,
                                         float* __restrict__ dst, int64_t dst_stride, int64_t rows,
                                         int64_t cols, bool accumulate) {
  const size_t n = size_t(rows) * cols;
  for (size_t i = grid_index(); i < n; i += grid_stride()) {
    const size_t r = i / cols, c = i % cols;
    store(dst + r * dst_stride + c, src[r * src_stride + c], accumulate);
  }
}

}  // namespace

void CudaBackend::unary_forward(UnaryOp op, const float* x, float* y, size_t n, float lo,
                                float hi) {
  cuda::launch_elementwise(stream(), n, unary_forward_kernel, op, x, y, n, lo, hi);
}

void CudaBackend::unary_backward(UnaryOp op, const float* x, const float* y, const float* dy,
                                 float* dx, size_t n, float lo, float hi, bool accumulate) {
  cuda::launch_elementwise(stream(), n, unary_backward_kernel, op, x, y, dy, dx, n, lo, hi,
                           accumulate);
}

void CudaBackend::binary_forward(BinaryOp op, const float* a, const float* b, float* y,
                                 Broadcast shape) {
  cuda::launch_elementwise(stream(), shape.numel(), binary_forward_kernel, op, a, b, y, shape);
}

void CudaBackend::binary_backward(BinaryOp op, const float* a, const float* b, const float* dy,
                                  float* da, float* db_full, Broadcast shape, bool accumulate_da,
                                  bool accumulate_db) {
  cuda::launch_elementwise(stream(), shape.numel(), binary_backward_kernel, op, a, b, dy, da,
                           db_full, shape, accumulate_da, accumulate_db);
}

// Chunks per q: enough blocks to fill the device when there are few q (a
// sum of everything), one when there are many (row sums); the split depends
// only on the sizes, so the result is reproducible.
void CudaBackend::reduce_sum(const float* x, float* y, Broadcast shape, float alpha,
                             bool accumulate) {
  if (shape.mid <= 0) return;
  const size_t span = size_t(shape.outer) * shape.inner;
  TURBINE_CUDA_REQUIRE(shape.mid < (int64_t(1) << 31), "reduce_sum: %lld sums exceed the grid",
                       static_cast<long long>(shape.mid));
  const size_t blocks_wanted = std::max<size_t>(1, 1024 / size_t(shape.mid));
  const size_t chunks = std::max<size_t>(1, std::min(blocks_wanted, span / 4096));
  const size_t per_chunk = (span + chunks - 1) / chunks;
  auto* partials = static_cast<double*>(scratch(sizeof(double) * chunks * size_t(shape.mid)));
  if (span > 0) {
    reduce_partials_kernel<<<dim3(unsigned(shape.mid), unsigned(chunks)), kThreads, 0, stream()>>>(
        x, shape, per_chunk, partials);
    TURBINE_CUDA_LAUNCH_CHECK();
  } else {
    TURBINE_CUDA_CHECK(
        cudaMemsetAsync(partials, 0, sizeof(double) * chunks * size_t(shape.mid), stream()));
  }
  reduce_finish_kernel<<<cuda::blocks_for(size_t(shape.mid), kThreads), kThreads, 0, stream()>>>(
      partials, int(chunks), shape.mid, alpha, y, accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::expand(const float* x, float* y, Broadcast shape, float alpha, bool accumulate) {
  cuda::launch_elementwise(stream(), shape.numel(), expand_kernel, x, y, shape, alpha, accumulate);
}

void CudaBackend::copy_rows_strided(const float* src, int64_t src_stride, float* dst,
                                    int64_t dst_stride, int64_t rows, int64_t cols,
                                    bool accumulate) {
  cuda::launch_elementwise(stream(), size_t(rows) * size_t(cols), copy_rows_strided_kernel, src,
                           src_stride, dst, dst_stride, rows, cols, accumulate);
}

}  // namespace turbine::kernels
