// Config-schema pieces that every training app composes into its own schema,
// with DeepSpeed's key names: each declare_* adds its keys, each *_from reads
// them back into options, reporting cross-key problems at the config's lines.
//
//   io::ConfigSchema s;
//   train::declare_run(s, "pretrain");     // steps, seed, device, eval, checkpoints, output
//   train::declare_batch(s);               // the three batch keys
//   train::declare_optimizer(s); train::declare_scheduler(s);
//   train::declare_precision(s); train::declare_zero(s);
//   train::declare_deepspeed_foreign(s);   // DeepSpeed's keys that mean nothing here
//   ... the app's own keys ...
//
// DeepSpeed's documented keys for features Turbine has are declared and act;
// its keys with no meaning here are accepted and reported once as ignored,
// with the reason; keys of features Turbine lacks that would change the run
// are errors that say so (io::ConfigSchema::ignored / unsupported).
#pragma once

#include <string>
#include <vector>

#include "dist/data_parallel.hpp"
#include "io/config.hpp"
#include "kernels/backend.hpp"
#include "nn/bloom.hpp"
#include "optim/adamw.hpp"
#include "optim/loss_scaler.hpp"
#include "optim/schedule.hpp"

namespace turbine::train {

// ---- run: length, seed, device, progress, evaluation, checkpoints, output --------
struct RunOptions {
  int64_t train_steps = 100;
  int64_t train_tokens = 0;  // > 0: also stop once this many training tokens are consumed
  uint64_t seed = 1234;
  int64_t steps_per_print = 10;
  double gradient_clipping = 1.0;  // <= 0: off
  // "cpu", or "cuda": each rank computes on the GPU of its node-local rank.
  std::string device = "cpu";
  double peak_tflops = 0;             // per device, for MFU; 0: measured at the start
  int64_t eval_interval = 100;        // 0: only at the end
  int64_t sample_interval = 0;        // 0: only at the end
  int64_t checkpoint_interval = 100;  // 0: only at the end
  int64_t checkpoint_keep = 3;        // 0: all
  std::string output_dir;
  bool resume = false;    // continue from the newest complete checkpoint
  std::string init_from;  // a checkpoint directory: weights only
};
// `app` names the default output folder (runs/<app>).
void declare_run(io::ConfigSchema& s, const std::string& app);
RunOptions run_from(const io::Config& c);

// ---- the keys every training job shares ----------------------------------------------
// Batch sizes, the run (steps, seed, device, cadences, output, resume),
// precision, optimizer, scheduler, ZeRO, and DeepSpeed's keys that mean
// nothing here: pretrain's, ulysses-train's, rlhf's and fedsim centralized's.
void declare_training_job(io::ConfigSchema& s, const std::string& app);

// ---- batch: DeepSpeed's three keys; any two give the third ------------------------
struct BatchOptions {
  int64_t global = 8;        // train_batch_size: sequences per optimizer step, all ranks
  int64_t micro = 8;         // train_micro_batch_size_per_gpu
  int64_t accumulation = 1;  // gradient_accumulation_steps
};
void declare_batch(io::ConfigSchema& s);
// data_parallel: the ranks that share a step's batch.
BatchOptions batch_from(const io::Config& c, int data_parallel);

// ---- optimizer and learning-rate schedule -----------------------------------------
void declare_optimizer(io::ConfigSchema& s);
optim::AdamWConfig optimizer_from(const io::Config& c);

struct ScheduleOptions {
  optim::LRSchedule schedule;
  // LayerToken: the learning rate follows consumed layer-tokens (in full
  // steps' worth) instead of steps.
  bool by_layer_tokens = false;
};
void declare_scheduler(io::ConfigSchema& s);
// peak_lr: the optimizer's lr (WarmupLR's warmup_max_lr overrides it).
ScheduleOptions scheduler_from(const io::Config& c, double peak_lr, int64_t train_steps);

// ---- precision: bf16 / fp16 with loss scaling ---------------------------------------
struct PrecisionOptions {
  kernels::MathMode math = kernels::MathMode::f32;
  bool loss_scaling = false;  // fp16: dynamic (or static) loss scaling
  optim::LossScaleConfig loss_scale;
  std::string activations = "auto";  // activation_precision: auto, f32 or 16bit
  // The type the training forward keeps activations in on `device`.
  DType activation_dtype(Device device) const;
};
void declare_precision(io::ConfigSchema& s);
PrecisionOptions precision_from(const io::Config& c);

// ---- ZeRO -------------------------------------------------------------------------------
void declare_zero(io::ConfigSchema& s);
dist::ZeroConfig zero_from(const io::Config& c);

// ---- activation memory: checkpointing and the tiled LM-head loss ---------------------
struct ActivationMemory {
  nn::ActivationCheckpointing checkpointing;
  int64_t loss_tile_tokens = 0;  // tokens per tile of the LM head and loss; 0: all at once
};
void declare_activation_memory(io::ConfigSchema& s);
// vocab_size: the tile's tokens follow from tiled_loss.max_tile_mb.
ActivationMemory activation_memory_from(const io::Config& c, int64_t vocab_size);

// ---- DeepSpeed's keys with no meaning here, and features Turbine lacks --------------
void declare_deepspeed_foreign(io::ConfigSchema& s);

// The resolved config: the loaded one with derived values written in
// ("key=value" overrides), as <output>/config.yaml and checkpoints keep it.
std::string resolved_yaml(const io::Config& c, const std::vector<std::string>& derived);

}  // namespace turbine::train
