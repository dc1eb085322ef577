// Dropout whose mask is a pure function of (seed, stream, offset, index):
// nothing is stored for backward, which regenerates the same mask.
#include "core/rng.hpp"
#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void CpuBackend::dropout_forward(const float* x, float* y, size_t n, float p, uint64_t seed,
                                 uint64_t stream, uint64_t offset) {
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i)
    y[i] = philox_uniform(seed, stream, offset, i) >= p ? x[i] * keep_scale : 0.0f;
}

void CpuBackend::dropout_backward(const float* dy, float* dx, size_t n, float p, uint64_t seed,
                                  uint64_t stream, uint64_t offset, bool accumulate) {
  const float keep_scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    const float g = philox_uniform(seed, stream, offset, i) >= p ? dy[i] * keep_scale : 0.0f;
    dx[i] = accumulate ? dx[i] + g : g;
  }
}

}  // namespace turbine::kernels
