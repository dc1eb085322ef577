// Schema and options of the pretrain job.
#include "train/pretrain_config.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "data/token_dataset.hpp"
#include "dist/nccl_communicator.hpp"
#include "kernels/backend.hpp"
#include "io/model_config.hpp"
#include "train/pretrain.hpp"

namespace turbine::train {

io::ConfigSchema pretrain_schema() {
  io::ConfigSchema s;
  s.integer("train_batch_size", 0,
            "sequences per optimizer step over all ranks; 0: micro x accumulation x ranks")
      .at_least(0);
  s.integer("train_micro_batch_size_per_gpu", 4, "sequences per forward/backward on one rank")
      .at_least(1);
  s.integer("gradient_accumulation_steps", 0,
            "micro-batches per step on each rank; 0: derived from train_batch_size")
      .at_least(0);
  s.integer("train_steps", 200, "optimizer steps to run").at_least(1);
  s.integer("train_tokens", 0,
            "also stop once this many training tokens are consumed (a token budget); 0: off")
      .at_least(0);
  s.integer("seed", 1234, "seed of initialization, shuffling, dropout and samples").at_least(0);
  s.integer("steps_per_print", 10, "progress line every N steps when not on a terminal")
      .at_least(1);
  s.number("gradient_clipping", 1.0, "max global gradient norm; 0 disables").at_least(0);
  s.string("device", "cpu",
           "where to compute: cpu, or cuda (each rank takes the GPU of its local rank)")
      .one_of({std::string("cpu"), std::string("cuda")});
  s.number("peak_tflops", 0,
           "per-device peak TFLOP/s that MFU is reported against (a GPU's datasheet figure "
           "for the run's precision); 0: measure a large GEMM at the start")
      .at_least(0);
  s.boolean("bf16.enabled", false,
            "bf16 mixed precision: matrix products (GEMM, attention) on bf16 inputs with f32 "
            "accumulation; f32 master weights and optimizer state");
  s.boolean("fp16.enabled", false,
            "fp16 mixed precision: matrix products on f16 inputs with f32 accumulation, and "
            "loss scaling");
  s.number("fp16.loss_scale", 0, "fixed loss scale; 0: dynamic").at_least(0);
  s.integer("fp16.initial_scale_power", 16, "dynamic loss scale starts at 2^power")
      .at_least(0)
      .at_most(60);
  s.integer("fp16.loss_scale_window", 1000, "clean steps before the dynamic scale doubles")
      .at_least(1);
  s.integer("fp16.hysteresis", 2, "overflows tolerated before the scale halves").at_least(1);
  s.boolean("fp16.consecutive_hysteresis", false,
            "restore the hysteresis after every clean step (else only when the scale doubles)");
  s.number("fp16.min_loss_scale", 1, "the dynamic scale never drops below this").at_least(1e-10);

  s.string("optimizer.type", "AdamW", "optimizer").one_of({std::string("AdamW")});
  s.number("optimizer.params.lr", 6e-4, "peak learning rate").at_least(0);
  s.numbers("optimizer.params.betas", {0.9, 0.95}, "AdamW moment decay rates")
      .at_least(0)
      .at_most(0.999999);
  s.number("optimizer.params.eps", 1e-8, "AdamW epsilon").at_least(1e-30);
  s.number("optimizer.params.weight_decay", 0.1,
           "decoupled weight decay (not on biases or LayerNorm)")
      .at_least(0);

  s.string("scheduler.type", "WarmupCosineLR", "learning-rate schedule")
      .one_of({std::string("WarmupLR"), std::string("WarmupDecayLR"),
               std::string("WarmupCosineLR")});
  s.integer("scheduler.params.warmup_num_steps", 20, "linear warmup steps").at_least(0);
  s.integer("scheduler.params.total_num_steps", 0,
            "steps of warmup + decay; 0: train_steps")
      .at_least(0);
  s.number("scheduler.params.warmup_max_lr", 0,
           "peak learning rate for WarmupLR/WarmupDecayLR; 0: optimizer.params.lr")
      .at_least(0);
  s.number("scheduler.params.cos_min_ratio", 0.1,
           "WarmupCosineLR: final lr as a fraction of the peak")
      .at_least(0)
      .at_most(1);
  s.string("scheduler.params.warmup_type", "linear", "warmup shape")
      .one_of({std::string("linear")});
  s.string("scheduler.params.schedule_by", "steps",
           "steps, or layer_tokens (LayerToken: warmup and decay follow consumed layer-tokens, "
           "counted in full steps' worth, so runs that drop tokens see the learning rate they "
           "would at equal compute)")
      .one_of({std::string("steps"), std::string("layer_tokens")});

  s.integer("zero_optimization.stage", 0,
            "0: replicate; 1: shard optimizer state; 2: also reduce-scatter gradients")
      .one_of({int64_t(0), int64_t(1), int64_t(2)});
  s.integer("zero_optimization.allreduce_bucket_size", 50'000'000,
            "elements per gradient all-reduce bucket")
      .at_least(1);
  s.boolean("zero_optimization.overlap_comm", false,
            "reduce each gradient bucket while backward computes the rest");

  io::declare_bloom_config(s);
  efficiency::declare_curriculum_config(s);
  efficiency::declare_random_ltd_config(s);

  s.string("data.path", "data/kjv.h5", "token data set made by tools/prepare-data");
  s.integer("data.seq_len", 128, "tokens per training sequence").at_least(1);
  s.boolean("data.shuffle", true, "shuffle windows each epoch (seeded)");

  s.integer("eval.interval", 100, "validation every N steps (and at the end); 0: only the end")
      .at_least(0);
  s.integer("eval.batches", 8,
            "validation micro-batches in all (shared among ranks): batches x micro windows")
      .at_least(1);

  s.integer("sample.interval", 0, "print a generated sample every N steps; 0: only the end")
      .at_least(0);
  s.string("sample.prompt", "And God said", "text the sample continues");
  s.integer("sample.max_new_tokens", 48, "tokens to generate").at_least(1);
  s.number("sample.temperature", 0.8, "sampling temperature; 0: greedy").at_least(0);
  s.integer("sample.top_k", 40, "sample among the k likeliest tokens; 0: all").at_least(0);

  s.integer("checkpoint.interval", 100, "checkpoint every N steps (and at the end); 0: end only")
      .at_least(0);
  s.integer("checkpoint.keep", 3, "complete checkpoints kept; 0: all").at_least(0);
  s.string("output.dir", "runs/pretrain", "folder for config.yaml, metrics.jsonl, checkpoints/");
  s.string("resume", "never",
           "auto: continue from the newest complete checkpoint in output.dir, if any")
      .one_of({std::string("never"), std::string("auto")});
  s.string("init_from", "", "checkpoint directory whose weights start a new run");
  return s;
}

PretrainOptions pretrain_options(const io::Config& c, int world) {
  PretrainOptions o;
  o.device = c.get<std::string>("device");
  o.peak_tflops = c.get<double>("peak_tflops");
  if (o.device == "cuda" && kernels::cuda_device_count() == 0)
    c.fail("device",
           dist::nccl_available()
               ? "device cuda: no CUDA device is visible on this machine (no GPU, no NVIDIA "
                 "driver, or CUDA_VISIBLE_DEVICES hides them); use device: cpu"
               : "device cuda: this build has no CUDA backend (nvcc was not found when it was "
                 "configured); use device: cpu, or rebuild with -Dcuda=enabled");
  const bool bf16 = c.get<bool>("bf16.enabled"), fp16 = c.get<bool>("fp16.enabled");
  if (bf16 && fp16) c.fail("fp16.enabled", "bf16.enabled and fp16.enabled are exclusive: pick one");
  o.math = bf16 ? kernels::MathMode::bf16 : fp16 ? kernels::MathMode::f16 : kernels::MathMode::f32;
  o.loss_scaling = fp16;
  o.loss_scale.static_scale = c.get<double>("fp16.loss_scale");
  o.loss_scale.initial_scale_power = static_cast<int>(c.get<int64_t>("fp16.initial_scale_power"));
  o.loss_scale.window = c.get<int64_t>("fp16.loss_scale_window");
  o.loss_scale.hysteresis = static_cast<int>(c.get<int64_t>("fp16.hysteresis"));
  o.loss_scale.consecutive_hysteresis = c.get<bool>("fp16.consecutive_hysteresis");
  o.loss_scale.min_scale = c.get<double>("fp16.min_loss_scale");
  o.micro_batch = c.get<int64_t>("train_micro_batch_size_per_gpu");
  const int64_t global = c.get<int64_t>("train_batch_size");
  const int64_t accumulation = c.get<int64_t>("gradient_accumulation_steps");
  // DeepSpeed's rule: any two of batch, micro batch and accumulation give the third.
  if (accumulation == 0) {
    if (global == 0) {
      o.accumulation = 1;
    } else if (global % (o.micro_batch * world) != 0) {
      c.fail("train_batch_size",
             fmt::format("train_batch_size {} is not divisible by train_micro_batch_size_per_gpu "
                         "{} x {} ranks: make it a multiple of {}",
                         global, o.micro_batch, world, o.micro_batch * world));
    } else {
      o.accumulation = global / (o.micro_batch * world);
    }
  } else {
    o.accumulation = accumulation;
  }
  o.train_batch_size = global == 0 ? o.micro_batch * o.accumulation * world : global;
  if (o.train_batch_size != o.micro_batch * o.accumulation * world)
    c.fail("train_batch_size",
           fmt::format("train_batch_size {} != train_micro_batch_size_per_gpu {} x "
                       "gradient_accumulation_steps {} x {} ranks = {}: set train_batch_size to "
                       "{}, or drop gradient_accumulation_steps to derive it",
                       o.train_batch_size, o.micro_batch, o.accumulation, world,
                       o.micro_batch * o.accumulation * world,
                       o.micro_batch * o.accumulation * world));

  o.train_steps = c.get<int64_t>("train_steps");
  o.train_tokens = c.get<int64_t>("train_tokens");
  o.seed = static_cast<uint64_t>(c.get<int64_t>("seed"));
  o.steps_per_print = c.get<int64_t>("steps_per_print");
  o.gradient_clipping = c.get<double>("gradient_clipping");

  const auto betas = c.get<std::vector<double>>("optimizer.params.betas");
  if (betas.size() != 2) c.fail("optimizer.params.betas", "betas needs two values: [beta1, beta2]");
  o.optimizer.lr = static_cast<float>(c.get<double>("optimizer.params.lr"));
  o.optimizer.beta1 = static_cast<float>(betas[0]);
  o.optimizer.beta2 = static_cast<float>(betas[1]);
  o.optimizer.eps = static_cast<float>(c.get<double>("optimizer.params.eps"));
  o.optimizer.weight_decay = static_cast<float>(c.get<double>("optimizer.params.weight_decay"));

  const std::string type = c.get<std::string>("scheduler.type");
  const double warmup_max = c.get<double>("scheduler.params.warmup_max_lr");
  o.schedule.max_lr = warmup_max > 0 ? warmup_max : o.optimizer.lr;
  o.schedule.warmup_steps = c.get<int64_t>("scheduler.params.warmup_num_steps");
  const int64_t total = c.get<int64_t>("scheduler.params.total_num_steps");
  o.schedule.total_steps = total > 0 ? total : o.train_steps;
  if (o.schedule.warmup_steps > o.schedule.total_steps)
    log::warn("{}: warmup_num_steps {} exceeds the schedule's {} steps: the whole run warms up",
              c.where("scheduler.params.warmup_num_steps"), o.schedule.warmup_steps,
              o.schedule.total_steps);
  if (type == "WarmupLR") {
    o.schedule.decay = optim::LRSchedule::Decay::constant;
    o.schedule.min_lr = o.schedule.max_lr;
  } else if (type == "WarmupDecayLR") {
    o.schedule.decay = optim::LRSchedule::Decay::linear;
    o.schedule.min_lr = 0;
  } else {
    o.schedule.decay = optim::LRSchedule::Decay::cosine;
    o.schedule.min_lr = o.schedule.max_lr * c.get<double>("scheduler.params.cos_min_ratio");
  }

  o.lr_by_layer_tokens = c.get<std::string>("scheduler.params.schedule_by") == "layer_tokens";
  o.zero.stage = static_cast<int>(c.get<int64_t>("zero_optimization.stage"));
  o.zero.bucket_elements = c.get<int64_t>("zero_optimization.allreduce_bucket_size");
  o.zero.overlap_comm = c.get<bool>("zero_optimization.overlap_comm");

  o.model = io::bloom_config_from(c);
  o.data_path = c.get<std::string>("data.path");
  o.seq_len = c.get<int64_t>("data.seq_len");
  o.shuffle = c.get<bool>("data.shuffle");
  o.random_ltd = efficiency::random_ltd_from(c, o.model.n_layer, o.seq_len);
  o.curriculum = efficiency::curriculum_from(c);
  o.eval_interval = c.get<int64_t>("eval.interval");
  o.eval_batches = c.get<int64_t>("eval.batches");
  o.sample_interval = c.get<int64_t>("sample.interval");
  o.sample_prompt = c.get<std::string>("sample.prompt");
  o.sample_tokens = c.get<int64_t>("sample.max_new_tokens");
  o.sample_temperature = c.get<double>("sample.temperature");
  o.sample_top_k = c.get<int64_t>("sample.top_k");
  o.checkpoint_interval = c.get<int64_t>("checkpoint.interval");
  o.checkpoint_keep = c.get<int64_t>("checkpoint.keep");
  o.output_dir = c.get<std::string>("output.dir");
  o.resume = c.get<std::string>("resume") == "auto";
  o.init_from = c.get<std::string>("init_from");
  // Without model.vocab_size the model takes the data set's (a missing or
  // broken data set is reported here, before any work).
  if (!c.has("model.vocab_size"))
    o.model.vocab_size = data::TokenDataset::open(o.data_path).vocab_size();
  validate(o, world);
  // The resolved config holds the values the run uses, derived ones included.
  std::vector<std::string> resolved = {
      fmt::format("train_batch_size={}", o.train_batch_size),
      fmt::format("gradient_accumulation_steps={}", o.accumulation),
      fmt::format("scheduler.params.total_num_steps={}", o.schedule.total_steps),
      fmt::format("model.vocab_size={}", o.model.vocab_size)};
  resolved.insert(resolved.end(), o.curriculum.resolved_overrides.begin(),
                  o.curriculum.resolved_overrides.end());
  o.resolved_config_yaml =
      io::Config::from_string(c.to_yaml(), c.origin(), c.schema(), resolved).to_yaml();
  return o;
}

}  // namespace turbine::train
