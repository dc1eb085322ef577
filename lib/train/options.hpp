// Everything a pretraining run needs, resolved from the YAML config by the
// app (apps/pretrain.cpp maps io::Config onto this struct) and validated.
#pragma once

#include <cstdint>
#include <string>

#include "dist/data_parallel.hpp"
#include "efficiency/curriculum.hpp"
#include "efficiency/random_ltd.hpp"
#include "nn/bloom.hpp"
#include "kernels/backend.hpp"
#include "optim/adamw.hpp"
#include "optim/loss_scaler.hpp"
#include "optim/schedule.hpp"

namespace turbine::train {

struct PretrainOptions {
  // Batch: train_batch_size = micro_batch x accumulation x data-parallel ranks.
  int64_t train_batch_size = 8;
  int64_t micro_batch = 8;
  int64_t accumulation = 1;
  int64_t train_steps = 100;
  int64_t train_tokens = 0;  // > 0: also stop once this many training tokens are consumed
  uint64_t seed = 1234;
  int64_t steps_per_print = 10;
  double gradient_clipping = 1.0;  // <= 0: off

  // "cpu", or "cuda": each rank computes on the GPU of its node-local rank.
  std::string device = "cpu";
  double peak_tflops = 0;  // per device, for MFU; 0: measured at the start
  // Precision of the matrix products (bf16.enabled / fp16.enabled).
  kernels::MathMode math = kernels::MathMode::f32;
  bool loss_scaling = false;  // fp16: dynamic (or static) loss scaling
  optim::LossScaleConfig loss_scale;

  nn::BloomConfig model;
  optim::AdamWConfig optimizer;
  optim::LRSchedule schedule;
  dist::ZeroConfig zero;
  efficiency::RandomLtdConfig random_ltd;
  efficiency::CurriculumConfig curriculum;
  // LayerToken schedule: the learning rate follows consumed layer-tokens
  // (in units of a full step's) instead of steps.
  bool lr_by_layer_tokens = false;

  std::string data_path;
  int64_t seq_len = 128;
  bool shuffle = true;

  int64_t eval_interval = 100;  // 0: only at the end
  int64_t eval_batches = 8;     // micro-batches of the validation split, over all ranks

  int64_t sample_interval = 0;  // 0: only at the end
  std::string sample_prompt = "In the beginning";
  int64_t sample_tokens = 48;
  double sample_temperature = 0.8;
  int64_t sample_top_k = 40;

  int64_t checkpoint_interval = 100;  // 0: only at the end
  int64_t checkpoint_keep = 3;
  std::string output_dir = "runs/pretrain";
  bool resume = false;    // continue from the newest complete checkpoint
  std::string init_from;  // a checkpoint directory: weights only
  std::string resolved_config_yaml;  // written to <output>/config.yaml and checkpoints
};

}  // namespace turbine::train
