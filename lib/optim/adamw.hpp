// AdamW with decoupled weight decay (applied only to parameters marked for
// it: not biases or LayerNorm), bias correction, and global-norm clipping.
#pragma once

#include <cstdint>
#include <vector>

#include "nn/module.hpp"

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
  AdamW(nn::ParameterList params, AdamWConfig config);
  // One update with learning rate lr on the parameters' current gradients.
  void step(float lr);
  void zero_grad();  // drops the gradients; the next backward writes fresh ones
  int64_t steps_taken() const { return step_; }
  const AdamWConfig& config() const { return config_; }
  // Optimizer state bytes (m and v), for the memory report.
  int64_t state_bytes() const;
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  void set_steps_taken(int64_t step) { step_ = step; }

 private:
  nn::ParameterList params_;
  AdamWConfig config_;
  std::vector<Tensor> m_, v_;
  int64_t step_ = 0;
};

// Global L2 norm of the gradients; scales them by max_norm / (norm + 1e-6)
// when the norm exceeds max_norm (as torch.nn.utils.clip_grad_norm_).
// max_norm <= 0 only measures. Returns the norm before clipping.
double clip_grad_norm(const nn::ParameterList& params, double max_norm);

}  // namespace turbine::optim
