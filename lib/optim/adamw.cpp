// AdamW and gradient clipping.
#include "optim/adamw.hpp"

#include <cmath>

#include "core/error.hpp"
#include "ops/ops.hpp"

namespace turbine::optim {

void AdamWConfig::validate() const {
  TURBINE_CHECK(lr >= 0.0f, "optimizer.params.lr must be >= 0, got {}", lr);
  TURBINE_CHECK(beta1 >= 0.0f && beta1 < 1.0f && beta2 >= 0.0f && beta2 < 1.0f,
                "optimizer.params.betas must lie in [0, 1), got [{}, {}]", beta1, beta2);
  TURBINE_CHECK(eps > 0.0f, "optimizer.params.eps must be > 0, got {}", eps);
  TURBINE_CHECK(weight_decay >= 0.0f, "optimizer.params.weight_decay must be >= 0, got {}",
                weight_decay);
}

AdamW::AdamW(nn::ParameterList params, AdamWConfig config)
    : params_(std::move(params)), config_(config) {
  config_.validate();
  for (const nn::Parameter& p : params_) {
    m_.push_back(Tensor::zeros(p.tensor.shape(), DType::f32, p.tensor.device()));
    v_.push_back(Tensor::zeros(p.tensor.shape(), DType::f32, p.tensor.device()));
  }
}

void AdamW::step(float lr) {
  ++step_;
  for (size_t i = 0; i < params_.size(); ++i) {
    nn::Parameter& p = params_[i];
    const Tensor grad = p.tensor.grad();
    if (!grad.defined()) continue;  // unused this step: no update, as in PyTorch
    ops::adamw_update(p.tensor, grad, m_[i], v_[i], lr, config_.beta1, config_.beta2, config_.eps,
                      p.weight_decay ? config_.weight_decay : 0.0f, step_);
  }
}

void AdamW::zero_grad() {
  for (nn::Parameter& p : params_) p.tensor.set_grad(Tensor());
}

int64_t AdamW::state_bytes() const {
  int64_t total = 0;
  for (size_t i = 0; i < m_.size(); ++i) total += m_[i].nbytes() + v_[i].nbytes();
  return total;
}

double clip_grad_norm(const nn::ParameterList& params, double max_norm) {
  double total = 0.0;
  for (const nn::Parameter& p : params)
    if (p.tensor.grad().defined()) total += ops::sum_squares(p.tensor.grad());
  const double norm = std::sqrt(total);
  TURBINE_CHECK(std::isfinite(norm),
                "gradient norm is {}: the loss diverged (lower the learning rate, or enable "
                "gradient_clipping)",
                norm);
  if (max_norm > 0.0 && norm > max_norm) {
    const float factor = static_cast<float>(max_norm / (norm + 1e-6));
    for (const nn::Parameter& p : params) {
      Tensor g = p.tensor.grad();
      if (g.defined())
        backend_for(g.device()).scale(g.data<float>(), g.data<float>(), g.numel(), factor, false);
    }
  }
  return norm;
}

}  // namespace turbine::optim
