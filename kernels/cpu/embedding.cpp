// Embedding lookup and its scatter-add backward. ids (n), table (vocab, dim).
#include <cstring>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void CpuBackend::embedding_forward(const int64_t* ids, const float* table, float* out, int n,
                                   int, int dim) {
#pragma omp parallel for schedule(static) if (size_t(n) * dim > kParallelGrain)
  for (int i = 0; i < n; ++i)
    std::memcpy(out + size_t(i) * dim, table + size_t(ids[i]) * dim, sizeof(float) * dim);
}

void CpuBackend::embedding_backward(const int64_t* ids, const float* dout, float* dtable, int n,
                                    int vocab, int dim, bool accumulate) {
  if (!accumulate) fill(dtable, size_t(vocab) * dim, 0.0f);
  // Rows may repeat, so threads split the columns, not the ids.
#pragma omp parallel for schedule(static) if (size_t(n) * dim > kParallelGrain)
  for (int c0 = 0; c0 < dim; c0 += 64) {
    const int c1 = c0 + 64 < dim ? c0 + 64 : dim;
    for (int i = 0; i < n; ++i) {
      float* dst = dtable + size_t(ids[i]) * dim;
      const float* src = dout + size_t(i) * dim;
#pragma omp simd
      for (int c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace turbine::kernels
