// GroupNorm and BatchNorm2d over NCHW images on CUDA (see ChannelNorm in
// kernels/backend.hpp; the CPU's kernels/cpu/channel_norm.cpp). Statistics:
// one block per statistic, two passes (mean, then squares about it), float
// partials added in a fixed tree. Backward: one block per (image, channel)
// for the plane's sums of dy * xhat and dy, then one thread per channel
// (parameter gradients) and per statistic (group means) adding those in
// order, then dx elementwise: deterministic, no atomics.
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

using cuda::grid_index;
using cuda::grid_stride;

namespace {

constexpr unsigned kNormThreads = 256;

// Statistic s's element k (0 <= k < group_size) in x.
__device__ inline size_t element_of(const ChannelNorm& n, int s, int64_t k) {
  const int per_group = n.channels / n.groups;
  const int64_t run = int64_t(per_group) * n.plane, image = int64_t(n.channels) * n.plane;
  if (n.per_image) return size_t((s / n.groups) * image + (s % n.groups) * run + k);
  return size_t(s * run + (k / run) * image + k % run);
}

__device__ inline int stat_of(const ChannelNorm& n, int image, int channel) {
  const int group = channel / (n.channels / n.groups);
  return n.per_image ? image * n.groups + group : group;
}

__global__ void stats_kernel(ChannelNorm n, const float* __restrict__ x, float* __restrict__ mean,
                             float* __restrict__ var) {
  __shared__ float shared[32];
  const int s = blockIdx.x;
  const int64_t count = n.group_size();
  float total = 0.0f;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) total += x[element_of(n, s, k)];
  const float m = cuda::block_sum(total, shared) / float(count);
  float squares = 0.0f;
  for (int64_t k = threadIdx.x; k < count; k += blockDim.x) {
    const float d = x[element_of(n, s, k)] - m;
    squares += d * d;
  }
  const float v = cuda::block_sum(squares, shared) / float(count);
  if (threadIdx.x == 0) {
    mean[s] = m;
    var[s] = v;
  }
}

__global__ void forward_kernel(ChannelNorm n, const float* __restrict__ x,
                               const float* __restrict__ mean, const float* __restrict__ var,
                               float eps, const float* __restrict__ weight,
                               const float* __restrict__ bias, float* __restrict__ y) {
  const size_t total = size_t(n.batch) * n.channels * n.plane;
  for (size_t e = grid_index(); e < total; e += grid_stride()) {
    const size_t ic = e / n.plane;
    const int c = int(ic % n.channels), image = int(ic / n.channels);
    const int s = stat_of(n, image, c);
    const float rstd = 1.0f / sqrtf(var[s] + eps);
    y[e] = (x[e] - mean[s]) * (rstd * weight[c]) + bias[c];
  }
}

// Per (image, channel) block: sums over the plane of dy * xhat and dy.
__global__ void plane_sums_kernel(ChannelNorm n, const float* __restrict__ x,
                                  const float* __restrict__ mean, const float* __restrict__ var,
                                  float eps, const float* __restrict__ dy,
                                  float* __restrict__ dy_xhat, float* __restrict__ dy_sum) {
  __shared__ float shared[32];
  const int ic = blockIdx.x;
  const int c = ic % n.channels, image = ic / n.channels;
  const int s = stat_of(n, image, c);
  const float m = mean[s], rstd = 1.0f / sqrtf(var[s] + eps);
  const size_t at = size_t(ic) * n.plane;
  float a = 0.0f, b = 0.0f;
  for (int p = threadIdx.x; p < n.plane; p += blockDim.x) {
    a += dy[at + p] * ((x[at + p] - m) * rstd);
    b += dy[at + p];
  }
  a = cuda::block_sum(a, shared);
  b = cuda::block_sum(b, shared);
  if (threadIdx.x == 0) {
    dy_xhat[ic] = a;
    dy_sum[ic] = b;
  }
}

// One thread per channel: dweight, dbias from the (image, channel) sums.
__global__ void params_kernel(ChannelNorm n, const float* __restrict__ dy_xhat,
                              const float* __restrict__ dy_sum, float* __restrict__ dweight,
                              float* __restrict__ dbias, bool accumulate) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= n.channels) return;
  float a = 0.0f, b = 0.0f;
  for (int image = 0; image < n.batch; ++image) {
    a += dy_xhat[size_t(image) * n.channels + c];
    b += dy_sum[size_t(image) * n.channels + c];
  }
  dweight[c] = accumulate ? dweight[c] + a : a;
  dbias[c] = accumulate ? dbias[c] + b : b;
}

// One thread per statistic: the means of dxhat and dxhat * xhat over its group.
__global__ void group_means_kernel(ChannelNorm n, const float* __restrict__ weight,
                                   const float* __restrict__ dy_xhat,
                                   const float* __restrict__ dy_sum, float* __restrict__ mean_dxhat,
                                   float* __restrict__ mean_dxhat_xhat) {
  const int s = blockIdx.x * blockDim.x + threadIdx.x;
  if (s >= n.stats()) return;
  const int per_group = n.channels / n.groups, group = n.per_image ? s % n.groups : s;
  const int first_image = n.per_image ? s / n.groups : 0;
  const int last_image = n.per_image ? first_image + 1 : n.batch;
  float a = 0.0f, b = 0.0f;
  for (int image = first_image; image < last_image; ++image)
    for (int c = group * per_group; c < (group + 1) * per_group; ++c) {
      const size_t ic = size_t(image) * n.channels + c;
      a += dy_sum[ic] * weight[c];
      b += dy_xhat[ic] * weight[c];
    }
  const float count = float(n.group_size());
  mean_dxhat[s] = a / count;
  mean_dxhat_xhat[s] = b / count;
}

// dx may alias dy (each element is read before it is written).
__global__ void dx_kernel(ChannelNorm n, const float* __restrict__ x,
                          const float* __restrict__ mean, const float* __restrict__ var, float eps,
                          const float* __restrict__ weight, const float* dy,
                          const float* __restrict__ mean_dxhat,
                          const float* __restrict__ mean_dxhat_xhat, bool through_stats, float* dx,
                          bool accumulate) {
  const size_t total = size_t(n.batch) * n.channels * n.plane;
  for (size_t e = grid_index(); e < total; e += grid_stride()) {
    const size_t ic = e / n.plane;
    const int c = int(ic % n.channels), image = int(ic / n.channels);
    const int s = stat_of(n, image, c);
    const float rstd = 1.0f / sqrtf(var[s] + eps);
    const float xhat = (x[e] - mean[s]) * rstd;
    const float md = through_stats ? mean_dxhat[s] : 0.0f;
    const float mdx = through_stats ? mean_dxhat_xhat[s] : 0.0f;
    const float g = rstd * (dy[e] * weight[c] - md - xhat * mdx);
    dx[e] = accumulate ? dx[e] + g : g;
  }
}

}  // namespace

void CudaBackend::channel_norm_stats(const ChannelNorm& n, const float* x, float* mean,
                                     float* var) {
  if (n.stats() <= 0 || n.group_size() <= 0) return;
  stats_kernel<<<n.stats(), kNormThreads, 0, stream()>>>(n, x, mean, var);
  TURBINE_CUDA_LAUNCH_CHECK();
}

void CudaBackend::channel_norm_forward(const ChannelNorm& n, const float* x, const float* mean,
                                       const float* var, float eps, const float* weight,
                                       const float* bias, float* y) {
  cuda::launch_elementwise(stream(), size_t(n.batch) * n.channels * n.plane, forward_kernel, n, x,
                           mean, var, eps, weight, bias, y);
}

void CudaBackend::channel_norm_backward(const ChannelNorm& n, const float* x, const float* mean,
                                        const float* var, float eps, const float* weight,
                                        const float* dy, bool through_stats, float* dx,
                                        float* dweight, float* dbias, bool accumulate_dx,
                                        bool accumulate_params) {
  const size_t pairs = size_t(n.batch) * n.channels, stats = size_t(n.stats());
  if (pairs == 0) return;
  auto* dy_xhat = static_cast<float*>(scratch(sizeof(float) * (2 * pairs + 2 * stats)));
  float* dy_sum = dy_xhat + pairs;
  float* mean_dxhat = dy_sum + pairs;
  float* mean_dxhat_xhat = mean_dxhat + stats;
  TURBINE_CUDA_REQUIRE(pairs < (size_t(1) << 31), "%zu (image, channel) pairs exceed the grid",
                       pairs);
  plane_sums_kernel<<<unsigned(pairs), kNormThreads, 0, stream()>>>(n, x, mean, var, eps, dy,
                                                                    dy_xhat, dy_sum);
  TURBINE_CUDA_LAUNCH_CHECK();
  if (dweight != nullptr && dbias != nullptr) {
    params_kernel<<<(n.channels + 255) / 256, 256, 0, stream()>>>(n, dy_xhat, dy_sum, dweight,
                                                                  dbias, accumulate_params);
    TURBINE_CUDA_LAUNCH_CHECK();
  }
  if (dx == nullptr) return;
  if (through_stats) {
    group_means_kernel<<<unsigned((stats + 255) / 256), 256, 0, stream()>>>(
        n, weight, dy_xhat, dy_sum, mean_dxhat, mean_dxhat_xhat);
    TURBINE_CUDA_LAUNCH_CHECK();
  }
  cuda::launch_elementwise(stream(), pairs * n.plane, dx_kernel, n, x, mean, var, eps, weight, dy,
                           mean_dxhat, mean_dxhat_xhat, through_stats, dx, accumulate_dx);
}

}  // namespace turbine::kernels
