// What the three steps of rlhf share (steps.cpp) and PPO's step (ppo.cpp).
#pragma once

#include <memory>

#include "data/tokenizer.hpp"
#include "nn/bloom.hpp"
#include "rlhf/config.hpp"
#include "rlhf/data.hpp"
#include "rlhf/models.hpp"
#include "rlhf/rlhf.hpp"
#include "train/loop.hpp"

namespace turbine::rlhf {

// A step's set-up: its device, its starting model's tokenizer and end token,
// and its share of the training and evaluation pairs.
struct StepContext {
  StepContext(const StepOptions& options, train::Job& job, Device device,
              data::Tokenizer tokenizer);
  const StepOptions& o;
  train::Job& job;
  dist::Communicator& comm;
  Device device;
  data::Tokenizer tokenizer;
  int32_t eos = 0;
  PhaseData train, eval;
  // train_steps, or the steps num_train_epochs makes of `samples_per_step`.
  int64_t train_steps(int64_t samples_per_step) const;
};

// The model a step starts from (the policy, in f32 on the device) and its
// tokenizer: pretrain's checkpoint, a previous step's, or a Hugging Face folder.
struct StartingModel {
  nn::Bloom model;
  data::Tokenizer tokenizer;
};
// weights = false: the model's shape and the tokenizer only (its weights
// are loaded otherwise, e.g. with load_reward).
StartingModel load_starting_model(const std::string& path, Device device, bool weights = true);
bool is_turbine_checkpoint(const std::string& path);
// The resolved config with the model's section (what infer and the next
// step read from a checkpoint's config.yaml).
std::string checkpoint_config(const StepOptions& o, const nn::BloomConfig& model);
// The model's memory settings, with the loss tile from its vocabulary.
void set_memory(nn::Bloom& model, const StepOptions& o);

// LoRA on a model as the options say (logged); nothing when lora.dim is 0.
void apply_lora(nn::Bloom& model, const LoraOptions& lora, uint64_t seed, const char* whose);

// The state every step's checkpoint carries: the tokenizer (so infer loads
// it), LoRA's scaling (so the next step merges adapters).
void save_common_state(train::StateMap& state, const data::Tokenizer& tokenizer,
                       const LoraOptions& lora);

StepResult run_ppo(const RlhfOptions& options, train::Job& job);
// sft with model.type visualchat (visualchat.cpp).
StepResult run_visualchat_sft(const StepOptions& options, train::Job& job);

// Runs the loop over `task` and reports the end of the step.
StepResult finish_step(const StepOptions& o, train::Loop& loop, train::TrainTask& task,
                       dist::Communicator& comm);

}  // namespace turbine::rlhf
