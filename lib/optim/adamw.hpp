// AdamW with decoupled weight decay (applied only to parameters marked for
// it: not biases or LayerNorm), bias correction, in PyTorch's order of
// operations; and global-norm clipping. The optimizer works on a range of a
// FlatParameters buffer: all of it, or one ZeRO shard.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "optim/flat.hpp"

namespace turbine::optim {

struct AdamWConfig {
  float lr = 1e-3f;
  float beta1 = 0.9f, beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.01f;
  void validate() const;
};

class AdamW {
 public:
  // Optimizes [begin, end) of the flat buffer (end < 0: to its end). Its
  // state (exp_avg, exp_avg_sq) covers only that range.
  AdamW(FlatParameters& flat, AdamWConfig config, int64_t begin = 0, int64_t end = -1);
  // Convenience for single-process use: flattens `params` itself.
  AdamW(const nn::ParameterList& params, AdamWConfig config);

  // One update with learning rate lr. `grad` holds the range's gradient
  // (end - begin values); null means the flat gradient buffer's own range.
  void step(float lr, const Tensor* grad = nullptr);
  void zero_grad() { flat_->zero_grads(); }

  int64_t steps_taken() const { return step_; }
  void set_steps_taken(int64_t step) { step_ = step; }
  const AdamWConfig& config() const { return config_; }
  int64_t begin() const { return begin_; }
  int64_t end() const { return end_; }
  Tensor& exp_avg() { return m_; }
  Tensor& exp_avg_sq() { return v_; }
  int64_t state_bytes() const { return m_.nbytes() + v_.nbytes(); }
  FlatParameters& flat() { return *flat_; }

 private:
  AdamW(std::unique_ptr<FlatParameters> owned, AdamWConfig config);
  void allocate_state();
  std::unique_ptr<FlatParameters> owned_;
  FlatParameters* flat_;
  AdamWConfig config_;
  int64_t begin_, end_;
  Tensor m_, v_;
  int64_t step_ = 0;
};

// The factor that clips gradients of global norm `norm` to max_norm:
// max_norm / (norm + 1e-6) when norm exceeds max_norm (max_norm > 0), else 1.
// A non-finite norm (diverged training) is an error.
double clip_coefficient(double norm, double max_norm);

// Global L2 norm of the gradients; scales them by max_norm / (norm + 1e-6)
// when the norm exceeds max_norm (as torch.nn.utils.clip_grad_norm_).
// max_norm <= 0 only measures. Returns the norm before clipping.
double clip_grad_norm(const nn::ParameterList& params, double max_norm);

}  // namespace turbine::optim
