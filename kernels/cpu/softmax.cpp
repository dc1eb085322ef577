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

// y = exp(x - lse) (softmax) or x - lse (log_softmax), row by row.
template <bool kLog>
void softmax_rows(const float* x, float* y, int rows, int cols) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* xr = x + size_t(r) * cols;
    float* yr = y + size_t(r) * cols;
    const float lse = row_logsumexp(xr, cols);
#pragma omp simd
    for (int c = 0; c < cols; ++c) yr[c] = kLog ? xr[c] - lse : exp_approx(xr[c] - lse);
  }
}

// From the output y: softmax's dx = y * (dy - sum(y * dy)), log_softmax's
// dx = dy - exp(y) * sum(dy).
template <bool kLog>
void softmax_rows_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                           bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* yr = y + size_t(r) * cols;
    const float* dyr = dy + size_t(r) * cols;
    float* dxr = dx + size_t(r) * cols;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < cols; ++c) dot += kLog ? dyr[c] : yr[c] * dyr[c];
#pragma omp simd
    for (int c = 0; c < cols; ++c) {
      const float g = kLog ? dyr[c] - exp_approx(yr[c]) * dot : yr[c] * (dyr[c] - dot);
      dxr[c] = accumulate ? dxr[c] + g : g;
    }
  }
}

// dlogits (+)= scale_r * (softmax(logits) - onehot(target)) with scale_r =
// scale * (row_scales ? row_scales[r] : 1), 0 where the target is
// ignore_index: cross entropy's backward, and per-token log-probabilities'
// (scale -1, row_scales dlogp).
void softmax_minus_onehot(const float* logits, const int64_t* targets, const float* lse,
                          const float* row_scales, float scale, float* dlogits, int rows, int vocab,
                          int64_t ignore_index, bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * vocab > kParallelGrain)
  for (int r = 0; r < rows; ++r) {
    const float* row = logits + size_t(r) * vocab;
    float* drow = dlogits + size_t(r) * vocab;
    const int64_t t = targets[r];
    const float row_scale = t == ignore_index ? 0.0f : (row_scales ? scale * row_scales[r] : scale);
    const float row_lse = lse[r];
#pragma omp simd
    for (int c = 0; c < vocab; ++c) {
      const float g = row_scale * exp_approx(row[c] - row_lse);
      drow[c] = accumulate ? drow[c] + g : g;
    }
    if (t != ignore_index) drow[t] -= row_scale;
  }
}
}  // namespace

void CpuBackend::softmax_forward(const float* x, float* y, int rows, int cols) {
  softmax_rows<false>(x, y, rows, cols);
}

void CpuBackend::softmax_backward(const float* y, const float* dy, float* dx, int rows, int cols,
                                  bool accumulate) {
  softmax_rows_backward<false>(y, dy, dx, rows, cols, accumulate);
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
  softmax_minus_onehot(logits, targets, lse, nullptr, dloss, dlogits, rows, vocab, ignore_index,
                       accumulate);
}

}  // namespace turbine::kernels

// ---- log_softmax and per-token log-probabilities (PPO) ----------------------------

namespace turbine::kernels {

void CpuBackend::log_softmax_forward(const float* x, float* y, int rows, int cols) {
  softmax_rows<true>(x, y, rows, cols);
}

void CpuBackend::log_softmax_backward(const float* y, const float* dy, float* dx, int rows,
                                      int cols, bool accumulate) {
  softmax_rows_backward<true>(y, dy, dx, rows, cols, accumulate);
}

// Targets are all in [0, vocab): ignore_index -1 ignores none.
void CpuBackend::token_log_prob_backward(const float* logits, const int64_t* targets,
                                         const float* lse, const float* dlogp, float* dlogits,
                                         int rows, int vocab, bool accumulate) {
  softmax_minus_onehot(logits, targets, lse, dlogp, -1.0f, dlogits, rows, vocab, -1, accumulate);
}

}  // namespace turbine::kernels
