// The rlhf job's config: one file for the three steps. Top-level keys are
// shared; a section named after a step (sft:, reward:, ppo:) holds that
// step's own values and overrides the shared ones for it, so each step sees
// one DeepSpeed config plus DeepSpeed-Chat's knobs under their names:
//
//   data_path: data/kjv-pairs          # train.jsonl and eval.jsonl
//   data_split: 2,4,4
//   model_name_or_path: runs/kjv-small/checkpoints/step_00000300
//   output: {dir: runs/rlhf-kjv}       # steps write <dir>/sft, <dir>/reward, <dir>/ppo
//   sft: {train_steps: 200, optimizer: {params: {lr: 1.0e-4}}}
//   reward: {train_steps: 200}
//   ppo: {train_steps: 50, actor_learning_rate: 1.0e-5, ppo_epochs: 1}
//
// VisualChat trains in sft with model.type: visualchat, its dialogues in
// data_path (tools/make-visualchat-data) and its encoder in
// visualchat.encoder (`rlhf encoder`'s checkpoint).
//
// --set applies to every step; --set sft.key=value to one. `rlhf all` starts
// each step from the previous ones' final checkpoints unless the step's own
// section (or --set step.key) names its model: a shared model_name_or_path
// is SFT's starting point only.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "infer/generate.hpp"
#include "io/config.hpp"
#include "multimodal/model.hpp"
#include "rlhf/data.hpp"
#include "rlhf/ppo_math.hpp"
#include "train/engine.hpp"
#include "train/schema.hpp"

namespace turbine::rlhf {

struct LoraOptions {
  int64_t dim = 0;  // 0: no LoRA
  double scaling = 1.0;
  std::string module_name;  // layers whose names contain it
  bool only_optimize = false;
};

// What every step has.
struct StepOptions {
  Phase phase = Phase::sft;
  train::RunOptions run;
  train::BatchOptions batch;
  train::EngineOptions engine;
  train::ScheduleOptions schedule;
  train::ActivationMemory memory;  // loss_tile_tokens set once the vocabulary is known
  double max_tile_mb = 256;
  std::string data_path;  // a folder with train.jsonl and eval.jsonl
  std::vector<double> data_split;
  TokenizeOptions tokens;        // with max_answer_seq_len (PPO)
  int64_t num_train_epochs = 0;  // > 0: train_steps follow from the data
  std::string model_path;        // sft, reward: model_name_or_path; ppo: the actor's
  LoraOptions lora;              // sft, reward: lora_dim ...; ppo: the actor's
  int64_t eval_batches = 8;      // micro-batches of the eval split, over all ranks
  int64_t sample_tokens = 48;    // sft: the sample's answer length
  // sft with model.type visualchat: images in the dialogues (multimodal/).
  bool visualchat = false;
  multimodal::VisualChatOptions visual;
  int64_t answer_conversations = 300;  // evaluation conversations answered at the end
  int64_t answer_tokens = 12;          // ... each answer at most this many tokens
  std::string resolved_config_yaml;
};

struct PpoOptions {
  std::string critic_model_path;  // the reward model both the critic and the reward start from
  LoraOptions critic_lora;
  int64_t generation_batch = 4;  // per_device_generation_batch_size
  int64_t training_batch = 4;    // per_device_training_batch_size
  int64_t generation_batches = 1;
  int64_t ppo_epochs = 1;
  double actor_lr = 1e-5, critic_lr = 5e-6;
  train::ScheduleOptions critic_schedule;
  train::EngineOptions critic_engine;
  bool hybrid_engine = true;
  bool offload_reference = false;
  std::string frozen_dtype = "f32";  // the reference's and reward's linear layers
  bool ema = false;
  double ema_decay = 0.992;
  double unsup_coef = 0;
  std::string unsup_data;  // a token data set (prepare-data) for the unsupervised loss
  int64_t unsup_seq_len = 128;
  PpoConstants constants;
  infer::SamplingOptions sampling;  // of the rollouts
  bool print_answers = false;
  int64_t print_answers_interval = 1;
};

struct RlhfOptions {
  StepOptions step;
  PpoOptions ppo;  // ppo only
};

io::ConfigSchema rlhf_schema();

// The config `step` sees: the file's shared keys with the step's section
// laid over them, and the overrides that apply to it ("step.key=v" as
// "key=v"; other steps' dropped). `chained`: "key=value" defaults from the
// steps before it (rlhf all), applied unless the step's section or an
// override gives the key.
io::Config step_config(const std::string& path, Phase phase,
                       const std::vector<std::string>& overrides,
                       const std::vector<std::string>& chained = {});

// Resolves a step's options; world: data-parallel ranks.
RlhfOptions rlhf_options(const io::Config& config, Phase phase, int world);

// The step's folder: <output.dir>/<step>.
std::string step_dir(const std::string& output_dir, Phase phase);

}  // namespace turbine::rlhf
