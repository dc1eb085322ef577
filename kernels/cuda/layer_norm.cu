// STUB: replaced by the real kernels.
#include "kernels/cuda/check.hpp"
#include "kernels/cuda/cuda_backend.hpp"

namespace turbine::kernels {

void CudaBackend::layer_norm_forward(const float*, const float*, const float*, float*, float*, float*, int, int, float) { ::turbine::kernels::cuda::fail_printf(__FILE__, __LINE__, "layer_norm_forward: not implemented on CUDA yet"); }
void CudaBackend::layer_norm_backward(const float*, const float*, const float*, const float*, const float*, float*, float*, float*, int, int, bool, bool) { ::turbine::kernels::cuda::fail_printf(__FILE__, __LINE__, "layer_norm_backward: not implemented on CUDA yet"); }

}  // namespace turbine::kernels
