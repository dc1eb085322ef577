// Learning-rate schedules: linear warmup, then constant, cosine or linear
// decay to min_lr at total_steps (DeepSpeed's WarmupLR / WarmupCosineLR /
// WarmupDecayLR family, with linear warmup).
#pragma once

#include <cstdint>
#include <string>

namespace turbine::optim {

struct LRSchedule {
  enum class Decay { constant, cosine, linear };
  Decay decay = Decay::cosine;
  double max_lr = 1e-3;
  double min_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double warmup_start_lr = 0.0;  // warmup ramps from here (DeepSpeed's warmup_min_lr)

  static Decay parse_decay(const std::string& name);  // "constant" | "cosine" | "linear"
  void validate() const;
  // The learning rate of 0-based step `step`: warmup ramps from warmup_start_lr by
  // (max_lr - warmup_start_lr) / warmup_steps a step, reaching max_lr at step warmup_steps - 1.
  double at(int64_t step) const { return at_fractional_step(double(step)); }
  // The same at a fractional step (the LayerToken schedule indexes by
  // consumed layer-tokens, in units of a full step's).
  double at_fractional_step(double step) const;
};

}  // namespace turbine::optim
