// Pointwise kernels of PPO and the image models: unary exp/log/relu/clamp,
// binary mul/minimum/maximum with a broadcast operand, the sum over the
// broadcast dims and its inverse (expand), and strided block copies (concat).
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"
#include "kernels/cpu/vec_math.hpp"
#include "kernels/pointwise_math.hpp"

namespace turbine::kernels {

namespace {

// exp and log are each backend's own; the rest is in pointwise_math.hpp.
inline float unary_value(UnaryOp op, float x, float lo, float hi) {
  if (op == UnaryOp::exp) return exp_approx(x);
  if (op == UnaryOp::log) return std::log(x);
  if (op == UnaryOp::log_sigmoid) return log_sigmoid_value(x);
  return unary_select(op, x, lo, hi);
}

}  // namespace

void CpuBackend::unary_forward(UnaryOp op, const float* x, float* y, size_t n, float lo, float hi) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) y[i] = unary_value(op, x[i], lo, hi);
}

void CpuBackend::unary_backward(UnaryOp op, const float* x, const float* y, const float* dy,
                                float* dx, size_t n, float lo, float hi, bool accumulate) {
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    const float slope = unary_slope(op, x ? x[i] : 0.0f, y ? y[i] : 0.0f, lo, hi);
    store(dx + i, dy[i] * slope, accumulate);
  }
}

// Loops over (outer * mid) runs of `inner` elements that share one b[q].
void CpuBackend::binary_forward(BinaryOp op, const float* a, const float* b, float* y,
                                Broadcast shape) {
  const int64_t runs = shape.outer * shape.mid, inner = shape.inner;
#pragma omp parallel for schedule(static) if (shape.numel() > kParallelGrain)
  for (int64_t run = 0; run < runs; ++run) {
    const float bq = b[run % shape.mid];
    const size_t base = size_t(run) * inner;
    for (int64_t r = 0; r < inner; ++r) y[base + r] = binary_value(op, a[base + r], bq);
  }
}

void CpuBackend::binary_backward(BinaryOp op, const float* a, const float* b, const float* dy,
                                 float* da, float* db_full, Broadcast shape, bool accumulate_da,
                                 bool accumulate_db) {
  const int64_t runs = shape.outer * shape.mid, inner = shape.inner;
#pragma omp parallel for schedule(static) if (shape.numel() > kParallelGrain)
  for (int64_t run = 0; run < runs; ++run) {
    const float bq = b[run % shape.mid];
    const size_t base = size_t(run) * inner;
    for (int64_t r = 0; r < inner; ++r) {
      float slope_a, slope_b;
      binary_slopes(op, a[base + r], bq, slope_a, slope_b);
      if (da) store(da + base + r, dy[base + r] * slope_a, accumulate_da);
      if (db_full) store(db_full + base + r, dy[base + r] * slope_b, accumulate_db);
    }
  }
}

void CpuBackend::reduce_sum(const float* x, float* y, Broadcast shape, float alpha,
                            bool accumulate) {
  const int64_t outer = shape.outer, mid = shape.mid, inner = shape.inner;
  if (mid == 1) {  // everything into one value: a parallel reduction
    double total = 0.0;
    const size_t n = shape.numel();
#pragma omp parallel for simd reduction(+ : total) schedule(static) if (n > kParallelGrain)
    for (size_t i = 0; i < n; ++i) total += x[i];
    store(y, static_cast<float>(alpha * total), accumulate);
    return;
  }
#pragma omp parallel for schedule(static) if (shape.numel() > kParallelGrain)
  for (int64_t q = 0; q < mid; ++q) {
    double total = 0.0;
    for (int64_t p = 0; p < outer; ++p) {
      const float* run = x + (size_t(p) * mid + q) * inner;
      for (int64_t r = 0; r < inner; ++r) total += run[r];
    }
    store(y + q, static_cast<float>(alpha * total), accumulate);
  }
}

void CpuBackend::expand(const float* x, float* y, Broadcast shape, float alpha, bool accumulate) {
  const int64_t runs = shape.outer * shape.mid, inner = shape.inner;
#pragma omp parallel for schedule(static) if (shape.numel() > kParallelGrain)
  for (int64_t run = 0; run < runs; ++run) {
    const float value = alpha * x[run % shape.mid];
    float* out = y + size_t(run) * inner;
    for (int64_t r = 0; r < inner; ++r) store(out + r, value, accumulate);
  }
}

void CpuBackend::copy_rows_strided(const float* src, int64_t src_stride, float* dst,
                                   int64_t dst_stride, int64_t rows, int64_t cols,
                                   bool accumulate) {
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* in = src + r * src_stride;
    float* out = dst + r * dst_stride;
    for (int64_t c = 0; c < cols; ++c) store(out + c, in[c], accumulate);
  }
}

}  // namespace turbine::kernels
