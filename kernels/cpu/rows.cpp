// Row gather/scatter within each batch (token dropping) and the head
// layout permutes of attention: BLOOM's fused (B,T,H,3,D) QKV and (B,H,T,D).
#include <cstring>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

namespace {
inline void copy_or_add(float* dst, const float* src, int n, bool accumulate) {
  if (accumulate) {
#pragma omp simd
    for (int i = 0; i < n; ++i) dst[i] += src[i];
  } else {
    std::memcpy(dst, src, sizeof(float) * n);
  }
}
}  // namespace

void CpuBackend::gather_rows(const float* x, const int64_t* index, float* y, int batch, int rows,
                             int picked, int cols, bool accumulate) {
#pragma omp parallel for collapse(2) schedule(static) if (size_t(batch) * picked * cols > kParallelGrain)
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < picked; ++k) {
      const int64_t row = index[size_t(b) * picked + k];
      copy_or_add(y + (size_t(b) * picked + k) * cols, x + (size_t(b) * rows + row) * cols, cols,
                  accumulate);
    }
}

void CpuBackend::scatter_rows(const float* src, const int64_t* index, float* y, int batch,
                              int rows, int picked, int cols, bool accumulate) {
  // Rows within one batch are distinct (checked by the op), so this is race-free.
#pragma omp parallel for collapse(2) schedule(static) if (size_t(batch) * picked * cols > kParallelGrain)
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < picked; ++k) {
      const int64_t row = index[size_t(b) * picked + k];
      copy_or_add(y + (size_t(b) * rows + row) * cols, src + (size_t(b) * picked + k) * cols, cols,
                  accumulate);
    }
}

void CpuBackend::zero_rows(float* y, const int64_t* index, int batch, int rows, int picked,
                           int cols) {
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < picked; ++k)
      std::memset(y + (size_t(b) * rows + index[size_t(b) * picked + k]) * cols, 0,
                  sizeof(float) * cols);
}

void CpuBackend::split_qkv(const float* qkv, float* q, float* k, float* v, int batch, int seq,
                           int heads, int head_dim) {
  const size_t D = head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(batch) * seq * heads * D > kParallelGrain)
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seq; ++t)
      for (int h = 0; h < heads; ++h) {
        const float* src = qkv + ((size_t(b) * seq + t) * heads + h) * 3 * D;
        const size_t dst = ((size_t(b) * heads + h) * seq + t) * D;
        std::memcpy(q + dst, src, sizeof(float) * D);
        std::memcpy(k + dst, src + D, sizeof(float) * D);
        std::memcpy(v + dst, src + 2 * D, sizeof(float) * D);
      }
}

void CpuBackend::merge_qkv(const float* dq, const float* dk, const float* dv, float* dqkv,
                           int batch, int seq, int heads, int head_dim, bool accumulate) {
  const size_t D = head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(batch) * seq * heads * D > kParallelGrain)
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seq; ++t)
      for (int h = 0; h < heads; ++h) {
        float* dst = dqkv + ((size_t(b) * seq + t) * heads + h) * 3 * D;
        const size_t src = ((size_t(b) * heads + h) * seq + t) * D;
        copy_or_add(dst, dq + src, head_dim, accumulate);
        copy_or_add(dst + D, dk + src, head_dim, accumulate);
        copy_or_add(dst + 2 * D, dv + src, head_dim, accumulate);
      }
}

void CpuBackend::merge_heads(const float* x, float* y, int batch, int heads, int seq,
                             int head_dim, bool accumulate) {
  const size_t D = head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(batch) * seq * heads * D > kParallelGrain)
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seq; ++t)
      for (int h = 0; h < heads; ++h)
        copy_or_add(y + ((size_t(b) * seq + t) * heads + h) * D,
                    x + ((size_t(b) * heads + h) * seq + t) * D, head_dim, accumulate);
}

void CpuBackend::split_heads(const float* x, float* y, int batch, int heads, int seq,
                             int head_dim, bool accumulate) {
  const size_t D = head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(batch) * seq * heads * D > kParallelGrain)
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < seq; ++t)
      for (int h = 0; h < heads; ++h)
        copy_or_add(y + ((size_t(b) * heads + h) * seq + t) * D,
                    x + ((size_t(b) * seq + t) * heads + h) * D, head_dim, accumulate);
}

}  // namespace turbine::kernels
