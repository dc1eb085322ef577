// The pretrain job: BLOOM pretraining on a token data set, data-parallel
// (apps/pretrain) and, with sequence_parallel_size > 1, sequence-parallel
// by DeepSpeed-Ulysses too (apps/ulysses-train); assembled from the job runtime, the loop, the engine and
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
  // sequence_parallel_size (ulysses-train): ranks sharing each sequence
  // (DeepSpeed-Ulysses); the world is P x data-parallel ranks.
  int sequence_parallel = 1;
  ActivationMemory memory;
  std::string data_path;
  int64_t seq_len = 128;
  bool shuffle = true;
  int64_t eval_batches = 8;  // micro-batches of the validation split, over all ranks
  SampleOptions sample;
  std::string resolved_config_yaml;  // written to <output>/config.yaml and checkpoints
};

// The language-model jobs' schema; `app` names the default output folder.
io::ConfigSchema pretrain_schema(const std::string& app = "pretrain");
// world_size: all ranks (data-parallel x sequence-parallel), for the batch
// arithmetic. pretrain refuses sequence_parallel_size > 1, naming
// ulysses-train; ulysses-train takes it.
PretrainOptions pretrain_options(const io::Config& config, int world_size);
PretrainOptions ulysses_options(const io::Config& config, int world_size);

struct PretrainResult {
  LoopResult loop;
  double unigram_entropy = 0;  // of the training tokens, nats (rank 0 only)
};

// Runs the job on the ranks of `job`. Collective.
PretrainResult pretrain(const PretrainOptions& options, Job& job);
// The end of the run as the apps report it (rank 0 logs): its exit status,
// kExitStoppedResumable after a stop request.
int report_pretrain(const PretrainOptions& options, const PretrainResult& result);

}  // namespace turbine::train
