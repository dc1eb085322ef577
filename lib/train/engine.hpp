// One trained parameter set: DeepSpeed's engine around backward() and
// step(). It owns the data-parallel optimizer (ZeRO 0-2 over the
// communicator), gradient accumulation, fp16 loss scaling and clipping.
// Training apps hold one (pretrain, SFT, reward model) or several (PPO's
// actor and critic), and the loop drives it.
#pragma once

#include <memory>

#include "dist/data_parallel.hpp"
#include "optim/loss_scaler.hpp"
#include "train/checkpoint.hpp"
#include "train/schema.hpp"

namespace turbine::train {

struct EngineOptions {
  optim::AdamWConfig optimizer;
  dist::ZeroConfig zero;
  PrecisionOptions precision;
  double gradient_clipping = 1.0;  // <= 0: off
  int64_t accumulation = 1;        // micro-batches per step on each rank
};

class Engine {
 public:
  // `name` names the part in checkpoints and messages ("model", "critic").
  // The optimizer takes the trainable parameters; checkpoints hold them all.
  Engine(std::string name, dist::Communicator& comm, nn::ParameterList& params,
         const EngineOptions& options);

  // Starts a step: zeroes the gradients.
  void zero_grad() { optimizer_.zero_grad(); }
  // Backward of micro-batch `micro` (0-based) of this rank's `accumulation`:
  // the loss gradient is seeded with loss_scale / accumulation, and the last
  // micro-batch starts the gradient reduction while backward runs
  // (overlap_comm).
  void backward(const Tensor& loss, int64_t micro);
  struct StepResult {
    double grad_norm = 0;   // global norm before clipping (NaN when skipped)
    bool applied = true;    // false: fp16 gradients overflowed, the step was skipped
    double loss_scale = 1;  // the scale this step's losses were multiplied by
  };
  // After the micro-batches: averages the gradients over ranks, divides out
  // the loss scale, clips, updates with learning rate lr, and moves the loss
  // scale on.
  StepResult step(double lr);

  double loss_scale() const { return options_.precision.loss_scaling ? scaler_.scale() : 1.0; }
  const EngineOptions& options() const { return options_; }
  dist::DataParallelOptimizer& optimizer() { return optimizer_; }
  const nn::ParameterList& parameters() const { return params_; }
  const std::string& name() const { return name_; }

  // This engine in a checkpoint: its weights and optimizer, and the loss
  // scaler's state (keys "loss_scale*", prefixed by the name unless "model").
  CheckpointPart checkpoint_part() { return {name_, &params_, &optimizer_}; }
  void save_state(StateMap& state) const;
  void load_state(const StateMap& state);

 private:
  std::string key(const std::string& name) const;
  std::string name_;
  nn::ParameterList& params_;
  EngineOptions options_;
  dist::DataParallelOptimizer optimizer_;
  optim::LossScaler scaler_;
};

// Logs (rank 0) what the engine computes on and what it holds per rank: the
// math mode and loss scale, the gradient buckets, the memory by ZeRO stage.
void log_engine(Engine& engine, Device device, int world);

}  // namespace turbine::train
