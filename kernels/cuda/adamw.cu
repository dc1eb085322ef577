// AdamW on CUDA, in the CPU's (and PyTorch's) order of operations
// (kernels/cpu/adamw.cpp): decay, moments, then the step. sqrtf and the
// divisions are IEEE-rounded (nvcc's default, no fast math), as on the CPU.
#include <cmath>

#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"
#include "kernels/cuda/device.cuh"

namespace turbine::kernels {

namespace {

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad,
                             float* __restrict__ m, float* __restrict__ v, size_t n, float beta1,
                             float beta2, float eps, float decay, float step_size, float sqrt_bc2) {
  for (size_t i = cuda::grid_index(); i < n; i += cuda::grid_stride()) {
    const float g = grad[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float denom = sqrtf(vi) / sqrt_bc2 + eps;
    param[i] = param[i] * decay - step_size * mi / denom;
  }
}

}  // namespace

void CudaBackend::adamw_step(float* param, const float* grad, float* m, float* v, size_t n,
                             float lr, float beta1, float beta2, float eps, float weight_decay,
                             float bias_correction1, float bias_correction2) {
  // The per-step scalars, computed on the host exactly as the CPU does.
  const float decay = 1.0f - lr * weight_decay;
  const float step_size = lr / bias_correction1;
  const float sqrt_bc2 = std::sqrt(bias_correction2);
  cuda::launch_elementwise(stream(), n, adamw_kernel, param, grad, m, v, n, beta1, beta2, eps,
                           decay, step_size, sqrt_bc2);
}

}  // namespace turbine::kernels
