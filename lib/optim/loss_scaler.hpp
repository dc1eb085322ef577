// Dynamic loss scaling for fp16 mixed precision (Micikevicius et al. 2018),
// with DeepSpeed's knobs and rules (its DynamicLossScaler): the loss is
// multiplied by `scale` before backward so small gradients survive f16
// rounding; gradients are divided by it before the update. A step whose
// gradients overflow (inf/nan) is skipped; the scale halves on an overflow
// once `hysteresis - 1` earlier ones have used up the tolerance, which comes
// back when the scale doubles (or, with consecutive_hysteresis, after every
// clean step). The scale doubles after each `window` clean steps since the
// last overflow. A fixed scale (static) never changes.
#pragma once

#include <cstdint>

namespace turbine::optim {

struct LossScaleConfig {
  double static_scale = 0;        // fp16.loss_scale: > 0 fixes the scale
  int initial_scale_power = 16;   // dynamic: starts at 2^power
  int64_t window = 1000;          // fp16.loss_scale_window
  int hysteresis = 2;             // overflows tolerated before lowering
  double min_scale = 1;           // fp16.min_loss_scale
  bool consecutive_hysteresis = false;  // clean steps restore the hysteresis
};

class LossScaler {
 public:
  explicit LossScaler(LossScaleConfig config = {});
  double scale() const { return scale_; }
  // After a step's gradients are checked; returns true when the step may
  // be applied (false: overflow, skip it).
  bool update(bool overflow);
  int64_t overflows() const { return overflows_; }

  // What a checkpoint keeps so that a resumed run scales exactly as an
  // uninterrupted one: the scale, the clean steps towards the next doubling
  // and the overflows still tolerated before the next halving.
  struct State {
    double scale = 0;
    int64_t clean_steps = 0;
    int hysteresis_left = 0;
  };
  State state() const { return {scale_, clean_steps_, hysteresis_left_}; }
  // Restores a checkpointed state; a hysteresis_left of 0 (a checkpoint from
  // before it was kept) means the configured hysteresis.
  void restore(const State& state);

 private:
  LossScaleConfig config_;
  double scale_;
  int64_t clean_steps_ = 0, overflows_ = 0;
  int hysteresis_left_;
};

}  // namespace turbine::optim
