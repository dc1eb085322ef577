// AdamW (Loshchilov & Hutter) in PyTorch's order of operations, so that runs
// match torch.optim.AdamW to rounding: decay, moments, then the step.
#include <cmath>

#include "kernels/cpu/cpu_backend.hpp"

namespace turbine::kernels {

void CpuBackend::adamw_step(float* param, const float* grad, float* m, float* v, size_t n,
                            float lr, float beta1, float beta2, float eps, float weight_decay,
                            float bias_correction1, float bias_correction2) {
  const float decay = 1.0f - lr * weight_decay;
  const float step_size = lr / bias_correction1;
  const float sqrt_bc2 = std::sqrt(bias_correction2);
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    const float g = grad[i];
    m[i] = beta1 * m[i] + (1.0f - beta1) * g;
    v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
    const float denom = std::sqrt(v[i]) / sqrt_bc2 + eps;
    param[i] = param[i] * decay - step_size * m[i] / denom;
  }
}

}  // namespace turbine::kernels
