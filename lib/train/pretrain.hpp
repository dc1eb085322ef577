// The pretrain job: data-parallel BLOOM pretraining on a token data set
// (apps/pretrain), assembled from the job runtime, the loop, the engine and
// the config-schema pieces; its own parts are the language-model task (data,
// curriculum learning, random-LTD, evaluation, samples) and its schema.
#pragma once

#include <string>

#include "efficiency/curriculum.hpp"
#include "efficiency/random_ltd.hpp"
#include "nn/bloom.hpp"
#include "train/engine.hpp"
#include "train/job.hpp"
#include "train/loop.hpp"
#include "train/schema.hpp"

namespace turbine::train {

// Generated samples during training (sample.*).
struct SampleOptions {
  std::string prompt = "In the beginning";
  int64_t max_new_tokens = 48;
  double temperature = 0.8;
  int64_t top_k = 40;
};

struct PretrainOptions {
  RunOptions run;
  BatchOptions batch;
  EngineOptions engine;
  ScheduleOptions schedule;
  nn::BloomConfig model;
  efficiency::RandomLtdConfig random_ltd;
  efficiency::CurriculumConfig curriculum;
  std::string data_path;
  int64_t seq_len = 128;
  bool shuffle = true;
  int64_t eval_batches = 8;  // micro-batches of the validation split, over all ranks
  SampleOptions sample;
  std::string resolved_config_yaml;  // written to <output>/config.yaml and checkpoints
};

io::ConfigSchema pretrain_schema();
// world_size: data-parallel ranks, for the batch arithmetic.
PretrainOptions pretrain_options(const io::Config& config, int world_size);

struct PretrainResult {
  LoopResult loop;
  double unigram_entropy = 0;  // of the training tokens, nats (rank 0 only)
};

// Runs the job on the ranks of `job`. Collective.
PretrainResult pretrain(const PretrainOptions& options, Job& job);

}  // namespace turbine::train
