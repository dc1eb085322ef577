// Softmax over the last dim and cross entropy fused with log-softmax on
// CUDA. Same formulas as kernels/cpu/softmax.cpp: y = exp(x - lse),
// loss = lse - x[target], dlogits = dloss * exp(x - lse) - dloss at the target.
// One block per row. The log-sum-exp is taken in one pass with a running
// (max, sum of exp(x - max)) per thread, merged across the block, so a
// 250880-wide vocabulary row is read once for it, not twice.
#include <cmath>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::F32Storage;
using cuda::load_pack;
using cuda::load_pack_as;
using cuda::Pack;
using cuda::store_pack;
using cuda::store_pack_as;

namespace {

constexpr unsigned kMaxRowThreads = 1024;

// A running log-sum-exp: the largest value seen and the sum of exp(x - max).
// NaNs never become the max (they never compare greater) but make the sum
// NaN, as on the CPU.
struct MaxSum {
  float max;
  float sum;
};

__device__ inline void add_value(MaxSum& a, float x) {
  if (x > a.max) {
    a.sum = a.sum * expf(a.max - x) + 1.0f;
    a.max = x;
  } else if (x == a.max) {
    // Also covers -inf == -inf and inf == inf, where x - max would be NaN;
    // such rows end with an infinite max and a NaN log-sum-exp below.
    a.sum += 1.0f;
  } else {
    a.sum += expf(x - a.max);
  }
}

__device__ inline MaxSum combine(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  const float sa = a.max == m ? a.sum : a.sum * expf(a.max - m);
  const float sb = b.max == m ? b.sum : b.sum * expf(b.max - m);
  return {m, sa + sb};
}

// Merges every thread's MaxSum over a 1-D block (a multiple of 32 threads) in
// a fixed tree and returns log(sum(exp(row))) to every thread. The CPU's
// exp(x - max) is NaN for an infinite max (inf - inf), so such rows give NaN
// here too.
__device__ inline float block_logsumexp(MaxSum a) {
  __shared__ MaxSum shared[32];
  for (int offset = 16; offset > 0; offset /= 2) {
    const MaxSum b{__shfl_xor_sync(0xffffffffu, a.max, offset),
                   __shfl_xor_sync(0xffffffffu, a.sum, offset)};
    a = combine(a, b);
  }
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();
  if (lane == 0) shared[warp] = a;
  __syncthreads();
  a = lane < blockDim.x / 32 ? shared[lane] : MaxSum{-INFINITY, 0.0f};
  for (int offset = 16; offset > 0; offset /= 2) {
    const MaxSum b{__shfl_xor_sync(0xffffffffu, a.max, offset),
                   __shfl_xor_sync(0xffffffffu, a.sum, offset)};
    a = combine(a, b);
  }
  return isinf(a.max) ? NAN : a.max + logf(a.sum);
}

// The log-sum-exp of one row of `cols`, read V floats at a time.
// A row in storage S (device.cuh): f32, or 16-bit logits one value at a time.
template <int V, typename S = F32Storage>
__device__ inline float row_logsumexp(const typename S::type* row, int cols) {
  MaxSum state{-INFINITY, 0.0f};
  for (int p = threadIdx.x; p < cols / V; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(row + p * V);
    for (int j = 0; j < V; ++j) add_value(state, xv.v[j]);
  }
  return block_logsumexp(state);
}

// y = exp(x - lse), or x - lse for log_softmax (kLog); y may alias x: each
// element is read before it is written.
template <int V, bool kLog>
__global__ void softmax_forward_kernel(const float* x, float* y, int cols) {
  const size_t r = blockIdx.x;
  const float* xr = x + r * cols;
  float* yr = y + r * cols;
  const float lse = row_logsumexp<V>(xr, cols);
  for (int p = threadIdx.x; p < cols / V; p += blockDim.x) {
    const Pack<V> xv = load_pack<V>(xr + p * V);
    Pack<V> yv;
    for (int j = 0; j < V; ++j) yv.v[j] = kLog ? xv.v[j] - lse : expf(xv.v[j] - lse);
    store_pack<V>(yr + p * V, yv);
  }
}

// From the output y: softmax's dx = y * (dy - sum(y * dy)), log_softmax's
// (kLog) dx = dy - exp(y) * sum(dy). dx may alias dy: all of dy is read for
// the sum before any write.
template <int V, bool kLog>
__global__ void softmax_backward_kernel(const float* __restrict__ y, const float* dy, float* dx,
                                        int cols, bool accumulate) {
  __shared__ float shared[32];
  const size_t r = blockIdx.x;
  const float* yr = y + r * cols;
  const float* dyr = dy + r * cols;
  float* dxr = dx + r * cols;
  float dot = 0.0f;
  for (int p = threadIdx.x; p < cols / V; p += blockDim.x) {
    const Pack<V> yv = load_pack<V>(yr + p * V);
    const Pack<V> dyv = load_pack<V>(dyr + p * V);
    for (int j = 0; j < V; ++j) dot += kLog ? dyv.v[j] : yv.v[j] * dyv.v[j];
  }
  dot = cuda::block_sum(dot, shared);
  for (int p = threadIdx.x; p < cols / V; p += blockDim.x) {
    const Pack<V> yv = load_pack<V>(yr + p * V);
    const Pack<V> dyv = load_pack<V>(dyr + p * V);
    Pack<V> dxv{};
    if (accumulate) dxv = load_pack<V>(dxr + p * V);
    for (int j = 0; j < V; ++j) {
      const float g = kLog ? dyv.v[j] - expf(yv.v[j]) * dot : yv.v[j] * (dyv.v[j] - dot);
      dxv.v[j] = accumulate ? dxv.v[j] + g : g;
    }
    store_pack<V>(dxr + p * V, dxv);
  }
}

template <int V, typename S>
__global__ void cross_entropy_forward_kernel(const typename S::type* __restrict__ logits,
                                             const int64_t* __restrict__ targets,
                                             float* __restrict__ losses, float* __restrict__ lse,
                                             int vocab, int64_t ignore_index) {
  const size_t r = blockIdx.x;
  const typename S::type* row = logits + r * vocab;
  const float row_lse = row_logsumexp<V, S>(row, vocab);
  if (threadIdx.x == 0) {
    lse[r] = row_lse;
    const int64_t t = targets[r];
    losses[r] = t == ignore_index ? 0.0f : row_lse - cuda::to_f32<S>(row[t]);
  }
}

// dlogits (+)= scale_r * (softmax - onehot(target)), scale_r = dloss *
// (row_scales ? row_scales[r] : 1) and 0 where the target is ignore_index:
// cross entropy's backward, and per-token log-probabilities' (dloss -1,
// row_scales dlogp). dlogits may alias logits (the gradient written over the
// logits): each element is read before it is written. The target's
// subtraction comes after the accumulate, in the CPU's order.
template <int V, typename S>
__global__ void cross_entropy_backward_kernel(const typename S::type* logits,
                                              const int64_t* __restrict__ targets,
                                              const float* __restrict__ lse,
                                              const float* __restrict__ row_scales, float dloss,
                                              typename S::type* dlogits, int vocab,
                                              int64_t ignore_index, bool accumulate) {
  const size_t r = blockIdx.x;
  const typename S::type* row = logits + r * vocab;
  typename S::type* drow = dlogits + r * vocab;
  const int64_t t = targets[r];
  const float scale = t == ignore_index ? 0.0f : (row_scales ? dloss * row_scales[r] : dloss);
  const float row_lse = lse[r];
  for (int p = threadIdx.x; p < vocab / V; p += blockDim.x) {
    const Pack<V> xv = load_pack_as<V, S>(row + p * V);
    Pack<V> dv{};
    if (accumulate) dv = load_pack_as<V, S>(drow + p * V);
    for (int j = 0; j < V; ++j) {
      const float g = scale * expf(xv.v[j] - row_lse);
      float d = accumulate ? dv.v[j] + g : g;
      if (p * V + j == t) d -= scale;
      dv.v[j] = d;
    }
    store_pack_as<V, S>(drow + p * V, dv);
  }
}

}  // namespace

void CudaBackend::softmax_forward(const float* x, float* y, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return;
  const auto kernel = cuda::rows_aligned16(cols, x, y) ? softmax_forward_kernel<4, false>
                                                       : softmax_forward_kernel<1, false>;
  kernel<<<rows, cuda::row_threads(cols, kMaxRowThreads), 0, stream()>>>(x, y, cols);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                                   bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  const auto kernel = cuda::rows_aligned16(cols, y, dy, dx) ? softmax_backward_kernel<4, false>
                                                            : softmax_backward_kernel<1, false>;
  kernel<<<rows, cuda::row_threads(cols, kMaxRowThreads), 0, stream()>>>(y, dy, dx, cols,
                                                                         accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::cross_entropy_forward(const float* logits, const int64_t* targets, float* losses,
                                        float* lse, int rows, int vocab, int64_t ignore_index) {
  if (rows <= 0 || vocab <= 0) return;
  const auto kernel = cuda::rows_aligned16(vocab, logits)
                          ? cross_entropy_forward_kernel<4, F32Storage>
                          : cross_entropy_forward_kernel<1, F32Storage>;
  kernel<<<rows, cuda::row_threads(vocab, kMaxRowThreads), 0, stream()>>>(logits, targets, losses,
                                                                          lse, vocab, ignore_index);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::cross_entropy_forward16(FloatType t, const uint16_t* logits,
                                          const int64_t* targets, float* losses, float* lse,
                                          int rows, int vocab, int64_t ignore_index) {
  if (rows <= 0 || vocab <= 0) return;
  cuda::with_half_storage(t, [&](auto s) {
    cross_entropy_forward_kernel<1, decltype(s)>
        <<<rows, cuda::row_threads(vocab, kMaxRowThreads), 0, stream()>>>(logits, targets, losses,
                                                                          lse, vocab, ignore_index);
  });
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::cross_entropy_backward(const float* logits, const int64_t* targets,
                                         const float* lse, float dloss, float* dlogits, int rows,
                                         int vocab, int64_t ignore_index, bool accumulate) {
  if (rows <= 0 || vocab <= 0) return;
  const auto kernel = cuda::rows_aligned16(vocab, logits, dlogits)
                          ? cross_entropy_backward_kernel<4, F32Storage>
                          : cross_entropy_backward_kernel<1, F32Storage>;
  kernel<<<rows, cuda::row_threads(vocab, kMaxRowThreads), 0, stream()>>>(
      logits, targets, lse, nullptr, dloss, dlogits, vocab, ignore_index, accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::cross_entropy_backward16(FloatType t, const uint16_t* logits,
                                           const int64_t* targets, const float* lse, float dloss,
                                           uint16_t* dlogits, int rows, int vocab,
                                           int64_t ignore_index, bool accumulate) {
  if (rows <= 0 || vocab <= 0) return;
  cuda::with_half_storage(t, [&](auto s) {
    cross_entropy_backward_kernel<1, decltype(s)>
        <<<rows, cuda::row_threads(vocab, kMaxRowThreads), 0, stream()>>>(
            logits, targets, lse, nullptr, dloss, dlogits, vocab, ignore_index, accumulate);
  });
  TURBINE_CUDA_LAUNCH_CHECK();
}

}  // namespace turbine::kernels

// ---- log_softmax and per-token log-probabilities (PPO) ----------------------------

namespace turbine::kernels {

void CudaBackend::log_softmax_forward(const float* x, float* y, int rows, int cols) {
  if (rows <= 0 || cols <= 0) return;
  const auto kernel = cuda::rows_aligned16(cols, x, y) ? softmax_forward_kernel<4, true>
                                                       : softmax_forward_kernel<1, true>;
  kernel<<<rows, cuda::row_threads(cols, kMaxRowThreads), 0, stream()>>>(x, y, cols);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::log_softmax_backward(const float* y, const float* dy, float* dx, int rows,
                                       int cols, bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  const auto kernel = cuda::rows_aligned16(cols, y, dy, dx) ? softmax_backward_kernel<4, true>
                                                            : softmax_backward_kernel<1, true>;
  kernel<<<rows, cuda::row_threads(cols, kMaxRowThreads), 0, stream()>>>(y, dy, dx, cols,
                                                                         accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}

// Cross entropy's backward with per-row scales -dlogp; targets all in
// [0, vocab), so ignore_index -1 ignores none.
void CudaBackend::token_log_prob_backward(const float* logits, const int64_t* targets,
                                          const float* lse, const float* dlogp, float* dlogits,
                                          int rows, int vocab, bool accumulate) {
  if (rows <= 0 || vocab <= 0) return;
  const auto kernel = cuda::rows_aligned16(vocab, logits, dlogits)
                          ? cross_entropy_backward_kernel<4, F32Storage>
                          : cross_entropy_backward_kernel<1, F32Storage>;
  kernel<<<rows, cuda::row_threads(vocab, kMaxRowThreads), 0, stream()>>>(
      logits, targets, lse, dlogp, -1.0f, dlogits, vocab, -1, accumulate);
  TURBINE_CUDA_LAUNCH_CHECK();
}

}  // namespace turbine::kernels
