// Dynamic loss scaling.
#include "optim/loss_scaler.hpp"

#include <algorithm>
#include <cmath>

#include "core/error.hpp"

namespace turbine::optim {

LossScaler::LossScaler(LossScaleConfig config)
    : config_(config),
      scale_(config.static_scale > 0 ? config.static_scale
                                     : std::ldexp(1.0, config.initial_scale_power)),
      hysteresis_left_(config.hysteresis) {
  TURBINE_CHECK(config.window >= 1 && config.hysteresis >= 1 && config.min_scale > 0,
                "fp16 loss scaling: loss_scale_window {}, hysteresis {} and min_loss_scale {} "
                "must be positive",
                config.window, config.hysteresis, config.min_scale);
}

bool LossScaler::update(bool overflow) {
  if (!overflow) {
    hysteresis_left_ = config_.hysteresis;
    if (config_.static_scale <= 0 && ++clean_steps_ % config_.window == 0) scale_ *= 2;
    return true;
  }
  ++overflows_;
  clean_steps_ = 0;
  if (config_.static_scale > 0) return false;
  if (--hysteresis_left_ <= 0) {
    scale_ = std::max(scale_ / 2, config_.min_scale);
    hysteresis_left_ = config_.hysteresis;
  }
  return false;
}

}  // namespace turbine::optim
