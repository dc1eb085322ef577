// Learning-rate schedules.
#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "core/error.hpp"

namespace turbine::optim {

LRSchedule::Decay LRSchedule::parse_decay(const std::string& name) {
  if (name == "constant") return Decay::constant;
  if (name == "cosine") return Decay::cosine;
  if (name == "linear") return Decay::linear;
  TURBINE_FAIL("scheduler decay '{}' is unknown: use constant, cosine or linear", name);
}

void LRSchedule::validate() const {
  TURBINE_CHECK(max_lr >= 0 && min_lr >= 0 && min_lr <= max_lr,
                "scheduler: need 0 <= min_lr <= max_lr, got min_lr {} and max_lr {}", min_lr,
                max_lr);
  TURBINE_CHECK(warmup_start_lr >= 0 && warmup_start_lr <= max_lr,
                "scheduler: need 0 <= warmup_min_lr <= the peak learning rate {}, got {}", max_lr,
                warmup_start_lr);
  TURBINE_CHECK(warmup_steps >= 0 && total_steps > 0,
                "scheduler: warmup_num_steps ({}) must be >= 0 and total_num_steps ({}) > 0",
                warmup_steps, total_steps);
}

double LRSchedule::at_fractional_step(double step) const {
  if (step < double(warmup_steps))
    return warmup_start_lr + (max_lr - warmup_start_lr) * (step + 1.0) / double(warmup_steps);
  if (decay == Decay::constant) return max_lr;
  const double span = double(std::max<int64_t>(1, total_steps - warmup_steps));
  const double progress = std::min(1.0, (step - double(warmup_steps)) / span);
  if (decay == Decay::cosine)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
  return max_lr - (max_lr - min_lr) * progress;
}

}  // namespace turbine::optim
