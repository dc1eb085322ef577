// Checkpoints: one directory per step under <output>/checkpoints, written
// by all ranks into ".tmp-step_N" and renamed to "step_N" by rank 0 only
// after every rank has finished, so a crash never leaves a half checkpoint
// that looks whole. Contents:
//   model.h5               params/<Hugging Face name> (f32)
//   optimizer_rank<R>.h5   AdamW exp_avg / exp_avg_sq over the flat range
//                          [begin, end) of real parameters this rank owned
//   trainer.h5             step, samples and tokens consumed, world size,
//                          ZeRO stage, seed, data identity
//   config.yaml            the resolved config of the run
// Optimizer shards are stored by flat range, so a run with another world
// size or ZeRO stage reads the pieces it needs (resharding).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dist/data_parallel.hpp"
#include "optim/loss_scaler.hpp"

namespace turbine::train {

struct TrainerState {
  int64_t step = 0;     // optimizer steps taken
  int64_t samples = 0;  // training windows consumed (global)
  int64_t tokens = 0;   // training tokens consumed (global)
  double layer_tokens = 0;  // tokens x layers they passed through (random-LTD counts kept ones)
  double flops = 0;         // training FLOPs spent (global)
  std::string data_identity;  // tokenizer identity of the data set
  optim::LossScaler::State loss_scaler;  // fp16's dynamic loss scaling (scale 0: none)
};

class CheckpointStore {
 public:
  CheckpointStore(std::string checkpoints_dir, dist::Communicator& comm);

  // Complete checkpoints, oldest first.
  std::vector<std::string> complete() const;
  std::optional<std::string> latest() const;

  // Collective. Keeps the newest `keep` complete checkpoints.
  void save(const TrainerState& state, const nn::ParameterList& params,
            dist::DataParallelOptimizer& optimizer, const std::string& config_yaml, int64_t keep);
  // Collective. Restores weights, optimizer state (resharded as needed) and
  // returns the trainer state.
  TrainerState load(const std::string& checkpoint, const nn::ParameterList& params,
                    dist::DataParallelOptimizer& optimizer);

  // Weights only (init_from); any process may call it.
  static void load_weights(const std::string& checkpoint, const nn::ParameterList& params);
  static std::string step_name(int64_t step);

 private:
  std::string dir_;
  dist::Communicator& comm_;
};

}  // namespace turbine::train
