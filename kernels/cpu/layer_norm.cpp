// LayerNorm over the last dim, x (rows, cols): forward saves mean and rstd
// per row; backward recomputes xhat from them.
#include <omp.h>

#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void CpuBackend::layer_norm_forward(const float* x, const float* weight, const float* bias,
                                    float* y, float* mean, float* rstd, int rows, int cols,
                                    float eps) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + size_t(r) * cols;
    float* yr = y + size_t(r) * cols;
    float total = 0.0f;
#pragma omp simd reduction(+ : total)
    for (int c = 0; c < cols; ++c) total += xr[c];
    const float m = total / cols;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int c = 0; c < cols; ++c) var += (xr[c] - m) * (xr[c] - m);
    const float s = 1.0f / std::sqrt(var / cols + eps);
#pragma omp simd
    for (int c = 0; c < cols; ++c) yr[c] = (xr[c] - m) * s * weight[c] + bias[c];
    mean[r] = m;
    rstd[r] = s;
  }
}

void CpuBackend::layer_norm_backward(const float* x, const float* weight, const float* mean,
                                     const float* rstd, const float* dy, float* dx,
                                     float* dweight, float* dbias, int rows, int cols,
                                     bool accumulate_dx, bool accumulate_params) {
  const int threads = size_t(rows) * cols > kParallelGrain ? omp_get_max_threads() : 1;
  std::vector<float> partial(size_t(threads) * cols * 2, 0.0f);
#pragma omp parallel num_threads(threads)
  {
    float* dw_mine = partial.data() + size_t(omp_get_thread_num()) * cols * 2;
    float* db_mine = dw_mine + cols;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; ++r) {
      const float* xr = x + size_t(r) * cols;
      const float* dyr = dy + size_t(r) * cols;
      float* dxr = dx + size_t(r) * cols;
      const float m = mean[r], s = rstd[r];
      float sum_dxhat = 0.0f, sum_dxhat_xhat = 0.0f;
#pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
      for (int c = 0; c < cols; ++c) {
        const float xhat = (xr[c] - m) * s;
        const float dxhat = dyr[c] * weight[c];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        dw_mine[c] += dyr[c] * xhat;
        db_mine[c] += dyr[c];
      }
      const float mean_dxhat = sum_dxhat / cols, mean_dxhat_xhat = sum_dxhat_xhat / cols;
#pragma omp simd
      for (int c = 0; c < cols; ++c) {
        const float xhat = (xr[c] - m) * s;
        const float g = s * (dyr[c] * weight[c] - mean_dxhat - xhat * mean_dxhat_xhat);
        dxr[c] = accumulate_dx ? dxr[c] + g : g;
      }
    }
  }
  for (int c = 0; c < cols; ++c) {
    float dw = accumulate_params ? dweight[c] : 0.0f;
    float db = accumulate_params ? dbias[c] : 0.0f;
    for (int t = 0; t < threads; ++t) {
      dw += partial[size_t(t) * cols * 2 + c];
      db += partial[size_t(t) * cols * 2 + cols + c];
    }
    dweight[c] = dw;
    dbias[c] = db;
  }
}

}  // namespace turbine::kernels
