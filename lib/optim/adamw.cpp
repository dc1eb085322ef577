// AdamW over a flat range, and gradient clipping.
#include "optim/adamw.hpp"

#include <algorithm>
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

AdamW::AdamW(FlatParameters& flat, AdamWConfig config, int64_t begin, int64_t end)
    : flat_(&flat), config_(config), begin_(begin), end_(end < 0 ? flat.padded_numel() : end) {
  allocate_state();
}

AdamW::AdamW(const nn::ParameterList& params, AdamWConfig config)
    : AdamW(std::make_unique<FlatParameters>(params), config) {}

AdamW::AdamW(std::unique_ptr<FlatParameters> owned, AdamWConfig config)
    : owned_(std::move(owned)),
      flat_(owned_.get()),
      config_(config),
      begin_(0),
      end_(flat_->padded_numel()) {
  allocate_state();
}

void AdamW::allocate_state() {
  config_.validate();
  TURBINE_CHECK(0 <= begin_ && begin_ <= end_ && end_ <= flat_->padded_numel(),
                "AdamW: range [{}, {}) outside the {} flat parameters", begin_, end_,
                flat_->padded_numel());
  const Device device = flat_->values().device();
  m_ = Tensor::zeros({end_ - begin_}, DType::f32, device);
  v_ = Tensor::zeros({end_ - begin_}, DType::f32, device);
}

void AdamW::step(float lr, const Tensor* grad) {
  TURBINE_CHECK(grad == nullptr || grad->numel() == end_ - begin_,
                "AdamW::step: gradient {} for a range of {} values", grad ? grad->str() : "",
                end_ - begin_);
  ++step_;
  const float bc1 = 1.0f - static_cast<float>(std::pow(double(config_.beta1), double(step_)));
  const float bc2 = 1.0f - static_cast<float>(std::pow(double(config_.beta2), double(step_)));
  float* params = flat_->values().data<float>();
  const float* grads = grad ? grad->data<float>() - begin_ : flat_->grads().data<float>();
  float* m = m_.data<float>() - begin_;
  float* v = v_.data<float>() - begin_;
  kernels::Backend& be = backend_for(flat_->values().device());
  // Each parameter's part of the range, with its own weight decay.
  for (const Segment& s : flat_->segments()) {
    const int64_t lo = std::max(begin_, s.offset), hi = std::min(end_, s.offset + s.numel);
    if (lo >= hi) continue;
    be.adamw_step(params + lo, grads + lo, m + lo, v + lo, hi - lo, lr, config_.beta1,
                  config_.beta2, config_.eps, s.weight_decay ? config_.weight_decay : 0.0f, bc1,
                  bc2);
  }
}

double clip_coefficient(double norm, double max_norm) {
  TURBINE_CHECK(std::isfinite(norm),
                "gradient norm is {}: training diverged (lower the learning rate, set "
                "gradient_clipping, or resume from an earlier checkpoint)",
                norm);
  return max_norm > 0.0 && norm > max_norm ? max_norm / (norm + 1e-6) : 1.0;
}

double clip_grad_norm(const nn::ParameterList& params, double max_norm) {
  double total = 0.0;
  for (const nn::Parameter& p : params)
    if (p.tensor.grad().defined()) total += ops::sum_squares(p.tensor.grad());
  const double norm = std::sqrt(total);
  const double coefficient = clip_coefficient(norm, max_norm);
  if (coefficient != 1.0) {
    const float factor = static_cast<float>(coefficient);
    for (const nn::Parameter& p : params) {
      Tensor g = p.tensor.grad();
      if (g.defined())
        backend_for(g.device()).scale(g.data<float>(), g.data<float>(), g.numel(), factor, false);
    }
  }
  return norm;
}

}  // namespace turbine::optim
