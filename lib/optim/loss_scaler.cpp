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

void LossScaler::restore(const State& state) {
  TURBINE_CHECK(state.scale > 0 && state.clean_steps >= 0 && state.hysteresis_left >= 0,
                "fp16 loss scaling: a checkpointed scale {}, clean steps {} and hysteresis {} "
                "cannot be restored (a damaged checkpoint?)",
                state.scale, state.clean_steps, state.hysteresis_left);
  scale_ = state.scale;
  clean_steps_ = state.clean_steps;
  hysteresis_left_ = state.hysteresis_left > 0 ? std::min(state.hysteresis_left, config_.hysteresis)
                                               : config_.hysteresis;
}

bool LossScaler::update(bool overflow) {
  if (overflow) {
    ++overflows_;
    clean_steps_ = 0;
    if (config_.static_scale > 0) return false;
    if (hysteresis_left_ <= 1)
      scale_ = std::max(scale_ / 2, config_.min_scale);  // the tolerance stays used up
    else
      --hysteresis_left_;
    return false;
  }
  if (config_.static_scale > 0) return true;
  if (config_.consecutive_hysteresis) hysteresis_left_ = config_.hysteresis;
  if (++clean_steps_ % config_.window == 0) {
    hysteresis_left_ = config_.hysteresis;
    scale_ *= 2;
  }
  return true;
}

}  // namespace turbine::optim
