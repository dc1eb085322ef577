// GroupNorm and BatchNorm2d over NCHW images (see ChannelNorm in
// kernels/backend.hpp). Statistics in double, two passes; the normalization
// itself in float with rstd = 1 / sqrt(var + eps), as the CUDA kernels do.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

namespace {

// Statistic s's elements are `chunks` runs of `run` consecutive floats, one
// per image it covers: run r starts at first + r * step.
struct Runs {
  int64_t first, step, run;
  int chunks;
};

Runs runs_of(const ChannelNorm& n, int s) {
  const int per_group = n.channels / n.groups;
  const int64_t run = int64_t(per_group) * n.plane, image = int64_t(n.channels) * n.plane;
  if (n.per_image) {
    const int image_index = s / n.groups, group = s % n.groups;
    return {image_index * image + group * run, image, run, 1};
  }
  return {s * run, image, run, n.batch};
}

// The statistic of element (image, channel).
int stat_of(const ChannelNorm& n, int image, int channel) {
  const int group = channel / (n.channels / n.groups);
  return n.per_image ? image * n.groups + group : group;
}

float rstd_of(float var, float eps) {
  return 1.0f / std::sqrt(var + eps);
}

}  // namespace

void CpuBackend::channel_norm_stats(const ChannelNorm& n, const float* x, float* mean, float* var) {
  const int stats = n.stats();
#pragma omp parallel for schedule(static) if (size_t(n.batch) * n.channels * n.plane > \
                                              kParallelGrain)
  for (int s = 0; s < stats; ++s) {
    const Runs r = runs_of(n, s);
    double total = 0;
    for (int c = 0; c < r.chunks; ++c) {
      const float* p = x + r.first + c * r.step;
      for (int64_t i = 0; i < r.run; ++i) total += p[i];
    }
    const double count = double(r.run) * r.chunks, m = total / count;
    double squares = 0;
    for (int c = 0; c < r.chunks; ++c) {
      const float* p = x + r.first + c * r.step;
      for (int64_t i = 0; i < r.run; ++i) squares += (p[i] - m) * (p[i] - m);
    }
    mean[s] = float(m);
    var[s] = float(squares / count);
  }
}

void CpuBackend::channel_norm_forward(const ChannelNorm& n, const float* x, const float* mean,
                                      const float* var, float eps, const float* weight,
                                      const float* bias, float* y) {
  const int images = n.batch, channels = n.channels;
#pragma omp parallel for collapse(2) \
    schedule(static) if (size_t(images) * channels * n.plane > kParallelGrain)
  for (int i = 0; i < images; ++i)
    for (int c = 0; c < channels; ++c) {
      const int s = stat_of(n, i, c);
      const float m = mean[s], scale = rstd_of(var[s], eps) * weight[c], shift = bias[c];
      const size_t at = (size_t(i) * channels + c) * n.plane;
#pragma omp simd
      for (int p = 0; p < n.plane; ++p) y[at + p] = (x[at + p] - m) * scale + shift;
    }
}

void CpuBackend::channel_norm_backward(const ChannelNorm& n, const float* x, const float* mean,
                                       const float* var, float eps, const float* weight,
                                       const float* dy, bool through_stats, float* dx,
                                       float* dweight, float* dbias, bool accumulate_dx,
                                       bool accumulate_params) {
  const int images = n.batch, channels = n.channels, plane = n.plane, stats = n.stats();
  const bool parallel = size_t(images) * channels * plane > kParallelGrain;
  std::vector<float> rstd(static_cast<size_t>(stats));
  for (int s = 0; s < stats; ++s) rstd[size_t(s)] = rstd_of(var[s], eps);
  // Per (image, channel): sums of dy * xhat and dy over the plane (double).
  std::vector<double> dy_xhat(size_t(images) * channels), dy_sum(size_t(images) * channels);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int i = 0; i < images; ++i)
    for (int c = 0; c < channels; ++c) {
      const int s = stat_of(n, i, c);
      const float m = mean[s], r = rstd[size_t(s)];
      const size_t at = (size_t(i) * channels + c) * plane;
      double a = 0, b = 0;
      for (int p = 0; p < plane; ++p) {
        a += double(dy[at + p]) * ((x[at + p] - m) * r);
        b += dy[at + p];
      }
      dy_xhat[size_t(i) * channels + c] = a;
      dy_sum[size_t(i) * channels + c] = b;
    }
  if (dweight != nullptr && dbias != nullptr) {
    for (int c = 0; c < channels; ++c) {
      double a = 0, b = 0;
      for (int i = 0; i < images; ++i) {
        a += dy_xhat[size_t(i) * channels + c];
        b += dy_sum[size_t(i) * channels + c];
      }
      dweight[c] = float(accumulate_params ? dweight[c] + a : a);
      dbias[c] = float(accumulate_params ? dbias[c] + b : b);
    }
  }
  if (dx == nullptr) return;
  // Per statistic: the means of dxhat and dxhat * xhat over its group
  // (dxhat = dy * weight[c], so they are the channel sums above, weighted).
  std::vector<float> mean_dxhat(static_cast<size_t>(stats), 0.0f),
      mean_dxhat_xhat(static_cast<size_t>(stats), 0.0f);
  if (through_stats) {
    std::vector<double> a(static_cast<size_t>(stats), 0.0), b(static_cast<size_t>(stats), 0.0);
    for (int i = 0; i < images; ++i)
      for (int c = 0; c < channels; ++c) {
        const size_t s = size_t(stat_of(n, i, c)), ic = size_t(i) * channels + c;
        b[s] += dy_xhat[ic] * weight[c];
        a[s] += dy_sum[ic] * weight[c];
      }
    const double count = double(n.group_size());
    for (int s = 0; s < stats; ++s) {
      mean_dxhat[size_t(s)] = float(a[size_t(s)] / count);
      mean_dxhat_xhat[size_t(s)] = float(b[size_t(s)] / count);
    }
  }
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int i = 0; i < images; ++i)
    for (int c = 0; c < channels; ++c) {
      const size_t s = size_t(stat_of(n, i, c));
      const float m = mean[s], r = rstd[s], w = weight[c], md = mean_dxhat[s],
                  mdx = mean_dxhat_xhat[s];
      const size_t at = (size_t(i) * channels + c) * plane;
#pragma omp simd
      for (int p = 0; p < plane; ++p) {
        const float xhat = (x[at + p] - m) * r;
        const float g = r * (dy[at + p] * w - md - xhat * mdx);
        dx[at + p] = accumulate_dx ? dx[at + p] + g : g;
      }
    }
}

}  // namespace turbine::kernels
