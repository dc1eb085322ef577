// The model a cl-edge run trains (issue 18): an image classifier (lib/nn/
// vision: MLP, CNN, ResNet) or a BLOOM language model, its weights flat
// (optim::FlatParameters) so that strategies can read and change the
// gradient as one vector (A-GEM's projection, EWC's penalty), and plain SGD
// with momentum (Avalanche's default optimizer), its state reset at every
// task as Avalanche's make_optimizer does.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "cl/stream.hpp"
#include "nn/bloom.hpp"
#include "nn/vision.hpp"
#include "optim/flat.hpp"

namespace turbine::cl {

struct LearnerConfig {
  nn::VisionConfig vision;  // image streams
  nn::BloomConfig bloom;    // kjv-books
  double lr = 0.01;
  double momentum = 0.0;
  uint64_t seed = 1234;  // of the initialization (the vision config's own seed is set from it)
  int64_t eval_batch = 256;
  Device device = Device::cpu();
};

struct TaskAccuracy {
  double accuracy = 0, loss = 0;
  int64_t count = 0;  // images, or predicted tokens
};

class Learner {
 public:
  Learner(const Stream& stream, const LearnerConfig& config);
  ~Learner();
  Learner(const Learner&) = delete;
  Learner& operator=(const Learner&) = delete;
  // A frozen copy of the current model (LwF's previous model): its weights
  // copied, its own buffers.
  std::unique_ptr<Learner> copy() const;

  // The batch's logits (N, outputs), its mask added; recorded for backward
  // when `training` (dropout seeded by `step`, BatchNorm's batch statistics).
  Tensor logits(const Batch& batch, bool training, uint64_t step);
  // Zeroes the gradient, then backward of `loss` accumulates into it.
  void zero_grad() { flat_->zero_grads(); }
  // The parameters' gradient (host copy), and setting it back.
  std::vector<float> gradient() const;
  void set_gradient(std::span<const float> grad);
  // SGD: v = momentum v + g; w -= lr v.
  void step();
  void reset_optimizer();

  // Parameters, then buffers (BatchNorm's statistics): the whole state.
  std::vector<float> weights() const;
  void set_weights(std::span<const float> weights);
  std::vector<float> parameters() const;  // the trained part of weights()
  int64_t parameter_numel() const { return parameter_numel_; }
  const std::vector<float>& velocity() const { return velocity_; }
  void set_velocity(std::vector<float> velocity);

  // The named weights (parameters, then buffers), for a checkpoint's part.
  const nn::ParameterList& state_list() const { return state_list_; }

  // Accuracy and mean loss on a task's test samples (eval mode, no gradient).
  TaskAccuracy evaluate(int64_t task);
  const Stream& stream() const { return stream_; }
  const LearnerConfig& config() const { return config_; }

 private:
  const Stream& stream_;
  LearnerConfig config_;
  std::unique_ptr<nn::ImageClassifier> vision_;
  std::unique_ptr<nn::Bloom> bloom_;
  std::unique_ptr<optim::FlatParameters> flat_;
  nn::ParameterList state_list_;
  int64_t parameter_numel_ = 0;
  std::vector<float> velocity_;
};

}  // namespace turbine::cl
