// The AdamW parameter update, dispatched to the device's kernel.
#include <cmath>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::ops {

void adamw_update(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int64_t step) {
  check_f32("adamw_update", {&param, &grad, &m, &v});
  TURBINE_CHECK(grad.shape() == param.shape() && m.shape() == param.shape() &&
                    v.shape() == param.shape(),
                "adamw_update: param {}, grad {}, m {}, v {} must share one shape", param.str(),
                grad.str(), m.str(), v.str());
  TURBINE_CHECK(step >= 1, "adamw_update: step {} (steps count from 1)", step);
  const float bc1 = 1.0f - static_cast<float>(std::pow(double(beta1), double(step)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(double(beta2), double(step)));
  backend_for(param.device())
      .adamw_step(param.data<float>(), grad.data<float>(), m.data<float>(), v.data<float>(),
                  param.numel(), lr, beta1, beta2, eps, weight_decay, bc1, bc2);
}

}  // namespace turbine::ops
