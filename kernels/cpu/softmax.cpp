// Softmax over the last dim and cross entropy fused with log-softmax.
#include <cmath>
#include <limits>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/vec_math.hpp"

namespace turbine::kernels {

namespace {
// log(sum(exp(row))) computed stably.
inline float row_logsumexp(const float* row, int cols) {
  float max_value = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : max_value)
  for (int c = 0; c < cols; ++c) max_value = row[c] > max_value ? row[c] : max_value;
  // A double sum: a 250880-wide vocabulary row in float lanes loses ~1e-5.
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int c = 0; c < cols; ++c) total += exp_approx(row[c] - max_value);
  return max_value + static_cast<float>(std::log(total));
}
}  // namespace

void CpuBackend::softmax_forward(const float* x, float* y, int rows, int cols) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + size_t(r) * cols;
    float* yr = y + size_t(r) * cols;
    const float lse = row_logsumexp(xr, cols);
#pragma omp simd
    for (int c = 0; c < cols; ++c) yr[c] = exp_approx(xr[c] - lse);
  }
}

void CpuBackend::softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                                  bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* yr = y + size_t(r) * cols;
    const float* dyr = dy + size_t(r) * cols;
    float* dxr = dx + size_t(r) * cols;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < cols; ++c) dot += yr[c] * dyr[c];
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      const float g = yr[c] * (dyr[c] - dot);
      dxr[c] = accumulate ? dxr[c] + g : g;
    }
  }
}

void CpuBackend::cross_entropy_forward(const float* logits, const int64_t* targets,
                                       float* losses, float* lse, int rows, int vocab,
                                       int64_t ignore_index) {
#pragma omp parallel for schedule(static) if (size_t(rows) * vocab > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* row = logits + size_t(r) * vocab;
    const float row_lse = row_logsumexp(row, vocab);
    lse[r] = row_lse;
    const int64_t t = targets[r];
    losses[r] = t == ignore_index ? 0.0f : row_lse - row[t];
  }
}

void CpuBackend::cross_entropy_backward(const float* logits, const int64_t* targets,
                                        const float* lse, float dloss, float* dlogits, int rows,
                                        int vocab, int64_t ignore_index, bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * vocab > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* row = logits + size_t(r) * vocab;
    float* drow = dlogits + size_t(r) * vocab;
    const int64_t t = targets[r];
    const float scale = t == ignore_index ? 0.0f : dloss;
    const float row_lse = lse[r];
#pragma omp simd
    for (int c = 0; c < vocab; ++c) {
      const float g = scale * exp_approx(row[c] - row_lse);
      drow[c] = accumulate ? drow[c] + g : g;
    }
    if (t != ignore_index) drow[t] -= scale;
  }
}

}  // namespace turbine::kernels

// ---- log_softmax and per-token log-probabilities (PPO) ----------------------------

namespace turbine::kernels {

void CpuBackend::log_softmax_forward(const float* x, float* y, int rows, int cols) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + size_t(r) * cols;
    float* yr = y + size_t(r) * cols;
    const float lse = row_logsumexp(xr, cols);
#pragma omp simd
    for (int c = 0; c < cols; ++c) yr[c] = xr[c] - lse;
  }
}

// dx = dy - softmax * sum(dy), softmax = exp(y).
void CpuBackend::log_softmax_backward(const float* y, const float* dy, float* dx, int rows,
                                      int cols, bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* yr = y + size_t(r) * cols;
    const float* dyr = dy + size_t(r) * cols;
    float* dxr = dx + size_t(r) * cols;
    double total = 0.0;
#pragma omp simd reduction(+ : total)
    for (int c = 0; c < cols; ++c) total += dyr[c];
    const float dot = static_cast<float>(total);
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      const float g = dyr[c] - exp_approx(yr[c]) * dot;
      dxr[c] = accumulate ? dxr[c] + g : g;
    }
  }
}

void CpuBackend::token_log_prob_backward(const float* logits, const int64_t* targets,
                                         const float* lse, const float* dlogp, float* dlogits,
                                         int rows, int vocab, bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * vocab > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* row = logits + size_t(r) * vocab;
    float* drow = dlogits + size_t(r) * vocab;
    const float scale = dlogp[r], row_lse = lse[r];
#pragma omp simd
    for (int c = 0; c < vocab; ++c) {
      const float g = -scale * exp_approx(row[c] - row_lse);
      drow[c] = accumulate ? drow[c] + g : g;
    }
    drow[targets[r]] += scale;
  }
}

}  // namespace turbine::kernels
