// cl-edge's strategies (issue 18): what a training step computes and what
// happens between tasks. Each step trains on the current mini-batch of the
// stream and, for the replay strategies, on samples of the memory (a
// ReplayTier, RAM alone or over storage):
//   naive         fine-tuning on the current task only (the lower bound)
//   joint         Avalanche's Cumulative: task i trains on tasks 0..i's data
//                 (its last row is joint training's upper bound)
//   er            Experience Replay (Mammoth's ER): the current batch and
//                 replay_batch memory samples in one batch; reservoir memory
//   cb-er         the same with the class-balanced memory
//   agem          A-GEM: the current gradient projected against a memory
//                 batch's when they conflict (losses.hpp)
//   ewc           online EWC: importance after each task, penalty after
//   lwf           LwF: distillation from the model before the task
//   der++         DER++: the memory keeps logits; logit matching plus replay
//   hierarchical  ER over the hierarchical memory with a fixed configuration
//                 (rb_size in RAM, st_size on storage, swaps): CarM's
//   miro          the same, its configuration chosen per task by the
//                 controller (run.hpp)
// The arithmetic of A-GEM, EWC, LwF and DER++ is losses.hpp's, checked
// against PyTorch.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "cl/learner.hpp"
#include "cl/losses.hpp"
#include "cl/replay.hpp"
#include "cl/stream.hpp"

namespace turbine::cl {

// Every strategy name, in the order tables list them.
const std::vector<std::string>& strategy_names();
bool uses_memory(const std::string& strategy);    // a ReplayTier
bool uses_storage(const std::string& strategy);   // hierarchical, miro
bool concat_replay(const std::string& strategy);  // er, cb-er, hierarchical, miro

struct StrategyConfig {
  std::string name = "er";
  int64_t replay_batch = 10;  // memory samples a step (each of DER++'s two batches)
  double ewc_lambda = 100.0;  // Avalanche's ewc_lambda
  double ewc_decay = 1.0;     // online mode's decay_factor
  double lwf_alpha = 1.0;
  double lwf_temperature = 2.0;
  double der_alpha = 0.1;  // logit matching
  double der_beta = 0.5;   // replay cross entropy
};

struct StepResult {
  double loss = 0;
  int64_t replayed = 0;       // memory samples trained on
  bool projected = false;     // A-GEM projected the gradient
  int64_t payload_bytes = 0;  // sample bytes read from RAM for the step's batches
};

class Strategy {
 public:
  // `tier`: the replay memory (uses_memory() strategies), else null. DER++'s
  // tier payloads are the stream's payload followed by outputs() f32 logits.
  Strategy(const StrategyConfig& config, Learner& learner, std::unique_ptr<ReplayTier> tier);
  ~Strategy();

  // The stream ids task `task` trains on (joint: tasks 0..task).
  std::vector<int64_t> training_ids(int64_t task) const;
  void before_task(int64_t task);
  // One step on the stream samples `ids` (the current mini-batch), the
  // `iteration`-th of the whole run (seeds dropout and the memory's draws).
  // `observe`: the samples are offered to the memory afterwards (the first
  // epoch over a task; later epochs see the same samples again).
  StepResult train_step(std::span<const int64_t> ids, int64_t iteration, bool observe = true);
  // EWC's importance over the task's samples (`batch` at a time) and LwF's
  // previous model. Returns the samples' payload bytes read.
  int64_t after_task(int64_t task, std::span<const int64_t> ids, int64_t batch);

  // For a checkpoint: the tier's state, EWC's importance and anchor, LwF's
  // previous model, as JSON and named files of bytes.
  void save(nlohmann::ordered_json& json, std::map<std::string, std::string>& files);
  // Takes up EWC's and LwF's state (the tier is restored by its owner,
  // ReplayTier::restore, and given to the constructor).
  void restore(const nlohmann::ordered_json& json,
               const std::function<std::string(const std::string&)>& file);

  ReplayTier* tier() { return tier_.get(); }
  // Miro: a new configuration's tier in place of the current one.
  void set_tier(std::unique_ptr<ReplayTier> tier) { tier_ = std::move(tier); }
  const StrategyConfig& config() const { return config_; }
  // RAM the strategy keeps besides the model: the tier, LwF's previous
  // model, EWC's importance and anchor.
  int64_t state_bytes() const;
  nlohmann::ordered_json to_json() const;

 private:
  // The memory samples `slots`: payloads (the stream's part) and labels appended.
  void gather(std::span<const int64_t> slots, std::vector<uint8_t>& payloads,
              std::vector<int32_t>& labels) const;

  StrategyConfig config_;
  Learner& learner_;
  const Stream& stream_;
  std::unique_ptr<ReplayTier> tier_;
  std::unique_ptr<EwcState> ewc_;
  std::unique_ptr<Learner> previous_;  // LwF
  std::vector<int32_t> active_;        // LwF: classes seen before the task
  int64_t projections_ = 0;
};

}  // namespace turbine::cl
