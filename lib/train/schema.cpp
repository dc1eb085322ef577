// The config-schema pieces of the training apps.
#include "train/schema.hpp"

#include "core/error.hpp"
#include "core/log.hpp"
#include "dist/nccl_communicator.hpp"

namespace turbine::train {

namespace {
std::vector<io::ConfigValue> names(std::initializer_list<const char*> list) {
  std::vector<io::ConfigValue> out;
  for (const char* name : list) out.emplace_back(std::string(name));
  return out;
}
}  // namespace

// ---------------------------------------------------------------------------------- run

void declare_run(io::ConfigSchema& s, const std::string& app) {
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
      .one_of(names({"cpu", "cuda"}));
  s.number("peak_tflops", 0,
           "per-device peak TFLOP/s that MFU is reported against (a GPU's datasheet figure "
           "for the run's precision); 0: measure a large GEMM at the start")
      .at_least(0);
  s.integer("eval.interval", 100, "validation every N steps (and at the end); 0: only the end")
      .at_least(0);
  s.integer("sample.interval", 0, "print a generated sample every N steps; 0: only the end")
      .at_least(0);
  s.integer("checkpoint.interval", 100, "checkpoint every N steps (and at the end); 0: end only")
      .at_least(0);
  s.integer("checkpoint.keep", 3, "complete checkpoints kept; 0: all").at_least(0);
  s.string("output.dir", "runs/" + app, "folder for config.yaml, metrics.jsonl, checkpoints/");
  s.string("resume", "never",
           "auto: continue from the newest complete checkpoint in output.dir, if any")
      .one_of(names({"never", "auto"}));
  s.string("init_from", "", "checkpoint directory whose weights start a new run");
}

RunOptions run_from(const io::Config& c) {
  RunOptions o;
  o.train_steps = c.get<int64_t>("train_steps");
  o.train_tokens = c.get<int64_t>("train_tokens");
  o.seed = static_cast<uint64_t>(c.get<int64_t>("seed"));
  o.steps_per_print = c.get<int64_t>("steps_per_print");
  o.gradient_clipping = c.get<double>("gradient_clipping");
  o.device = c.get<std::string>("device");
  o.peak_tflops = c.get<double>("peak_tflops");
  if (o.device == "cuda" && kernels::cuda_device_count() == 0)
    c.fail("device",
           dist::nccl_available()
               ? "device cuda: no CUDA device is visible on this machine (no GPU, no NVIDIA "
                 "driver, or CUDA_VISIBLE_DEVICES hides them); use device: cpu"
               : "device cuda: this build has no CUDA backend (nvcc was not found when it was "
                 "configured); use device: cpu, or rebuild with -Dcuda=enabled");
  o.eval_interval = c.get<int64_t>("eval.interval");
  o.sample_interval = c.get<int64_t>("sample.interval");
  o.checkpoint_interval = c.get<int64_t>("checkpoint.interval");
  o.checkpoint_keep = c.get<int64_t>("checkpoint.keep");
  o.output_dir = c.get<std::string>("output.dir");
  o.resume = c.get<std::string>("resume") == "auto";
  o.init_from = c.get<std::string>("init_from");
  return o;
}

// -------------------------------------------------------------------------------- batch

void declare_training_job(io::ConfigSchema& s, const std::string& app) {
  declare_batch(s);
  declare_run(s, app);
  declare_precision(s);
  declare_optimizer(s);
  declare_scheduler(s);
  declare_zero(s);
  declare_deepspeed_foreign(s);
}

void declare_batch(io::ConfigSchema& s) {
  s.integer("train_batch_size", 0,
            "sequences per optimizer step over all ranks; 0: micro x accumulation x ranks")
      .at_least(0);
  s.integer("train_micro_batch_size_per_gpu", 4, "sequences per forward/backward on one rank")
      .at_least(1);
  s.integer("gradient_accumulation_steps", 0,
            "micro-batches per step on each rank; 0: derived from train_batch_size")
      .at_least(0);
}

BatchOptions batch_from(const io::Config& c, int world) {
  BatchOptions o;
  o.micro = c.get<int64_t>("train_micro_batch_size_per_gpu");
  const int64_t global = c.get<int64_t>("train_batch_size");
  const int64_t accumulation = c.get<int64_t>("gradient_accumulation_steps");
  // DeepSpeed's rule: any two of batch, micro batch and accumulation give the third.
  if (accumulation == 0) {
    if (global == 0) {
      o.accumulation = 1;
    } else if (global % (o.micro * world) != 0) {
      c.fail("train_batch_size",
             fmt::format("train_batch_size {} is not divisible by train_micro_batch_size_per_gpu "
                         "{} x {} ranks: make it a multiple of {}",
                         global, o.micro, world, o.micro * world));
    } else {
      o.accumulation = global / (o.micro * world);
    }
  } else {
    o.accumulation = accumulation;
  }
  o.global = global == 0 ? o.micro * o.accumulation * world : global;
  if (o.global != o.micro * o.accumulation * world)
    c.fail("train_batch_size",
           fmt::format("train_batch_size {} != train_micro_batch_size_per_gpu {} x "
                       "gradient_accumulation_steps {} x {} ranks = {}: set train_batch_size to "
                       "{}, or drop gradient_accumulation_steps to derive it",
                       o.global, o.micro, o.accumulation, world, o.micro * o.accumulation * world,
                       o.micro * o.accumulation * world));
  return o;
}

// ---------------------------------------------------------------------------- optimizer

void declare_optimizer(io::ConfigSchema& s) {
  // DeepSpeed's "Adam" is AdamW unless adam_w_mode is false (its FusedAdam).
  s.string("optimizer.type", "AdamW", "optimizer: AdamW (DeepSpeed's Adam is AdamW too)")
      .one_of(names({"AdamW", "Adam"}));
  s.number("optimizer.params.lr", 6e-4, "peak learning rate").at_least(0);
  s.numbers("optimizer.params.betas", {0.9, 0.95}, "AdamW moment decay rates")
      .at_least(0)
      .at_most(0.999999);
  s.number("optimizer.params.eps", 1e-8, "AdamW epsilon").at_least(1e-30);
  s.number("optimizer.params.weight_decay", 0.1,
           "decoupled weight decay (not on biases or LayerNorm)")
      .at_least(0);
  s.boolean("optimizer.params.adam_w_mode", true,
            "decoupled weight decay (AdamW); false (L2 regularization) is not supported");
  s.boolean("optimizer.params.bias_correction", true,
            "Adam's bias correction; Turbine always applies it");
  s.boolean("optimizer.params.amsgrad", false, "AMSGrad; not supported");
  s.ignored("optimizer.params.torch_adam",
            "Turbine has one fused AdamW kernel per device, so there is no implementation to pick");
  s.ignored("optimizer.params.fused", "Turbine's AdamW is always fused over the flat buffer");
  s.ignored("optimizer.params.foreach", "Turbine's AdamW is always fused over the flat buffer");
}

optim::AdamWConfig optimizer_from(const io::Config& c) {
  if (!c.get<bool>("optimizer.params.adam_w_mode"))
    c.fail("optimizer.params.adam_w_mode",
           "adam_w_mode: false (Adam with L2 regularization) is not supported: Turbine's "
           "optimizer is AdamW; remove the key or set it to true");
  if (!c.get<bool>("optimizer.params.bias_correction"))
    c.fail("optimizer.params.bias_correction",
           "bias_correction: false is not supported: Turbine's AdamW always corrects the moment "
           "estimates; remove the key");
  if (c.get<bool>("optimizer.params.amsgrad"))
    c.fail("optimizer.params.amsgrad", "amsgrad is not supported: remove the key");
  const auto betas = c.get<std::vector<double>>("optimizer.params.betas");
  if (betas.size() != 2) c.fail("optimizer.params.betas", "betas needs two values: [beta1, beta2]");
  optim::AdamWConfig o;
  o.lr = static_cast<float>(c.get<double>("optimizer.params.lr"));
  o.beta1 = static_cast<float>(betas[0]);
  o.beta2 = static_cast<float>(betas[1]);
  o.eps = static_cast<float>(c.get<double>("optimizer.params.eps"));
  o.weight_decay = static_cast<float>(c.get<double>("optimizer.params.weight_decay"));
  return o;
}

// ---------------------------------------------------------------------------- scheduler

void declare_scheduler(io::ConfigSchema& s) {
  s.string("scheduler.type", "WarmupCosineLR", "learning-rate schedule")
      .one_of(names({"WarmupLR", "WarmupDecayLR", "WarmupCosineLR"}));
  s.integer("scheduler.params.warmup_num_steps", 20, "linear warmup steps").at_least(0);
  s.integer("scheduler.params.total_num_steps", 0, "steps of warmup + decay; 0: train_steps")
      .at_least(0);
  s.number("scheduler.params.warmup_max_lr", 0,
           "peak learning rate for WarmupLR/WarmupDecayLR; 0: optimizer.params.lr")
      .at_least(0);
  s.number("scheduler.params.warmup_min_lr", 0,
           "WarmupLR/WarmupDecayLR: learning rate the warmup starts from")
      .at_least(0);
  s.number("scheduler.params.warmup_min_ratio", 0,
           "WarmupCosineLR: the warmup's start as a fraction of the peak")
      .at_least(0)
      .at_most(1);
  s.number("scheduler.params.cos_min_ratio", 0.1,
           "WarmupCosineLR: final lr as a fraction of the peak")
      .at_least(0)
      .at_most(1);
  // DeepSpeed's default is log; Turbine's stays linear so that earlier runs
  // keep their numbers; Turbine has no log warmup.
  s.string("scheduler.params.warmup_type", "linear",
           "warmup shape (linear only: Turbine has no log warmup, DeepSpeed's default)")
      .one_of(names({"linear"}));
  s.ignored("scheduler.params.last_batch_iteration",
            "a resumed run takes its step from the checkpoint");
  s.string("scheduler.params.schedule_by", "steps",
           "steps, or layer_tokens (LayerToken: warmup and decay follow consumed layer-tokens, "
           "counted in full steps' worth, so runs that drop tokens see the learning rate they "
           "would at equal compute)")
      .one_of(names({"steps", "layer_tokens"}));
}

ScheduleOptions scheduler_from(const io::Config& c, double peak_lr, int64_t train_steps) {
  ScheduleOptions o;
  optim::LRSchedule& s = o.schedule;
  const std::string type = c.get<std::string>("scheduler.type");
  const double warmup_max = c.get<double>("scheduler.params.warmup_max_lr");
  s.max_lr = warmup_max > 0 ? warmup_max : peak_lr;
  s.warmup_steps = c.get<int64_t>("scheduler.params.warmup_num_steps");
  const int64_t total = c.get<int64_t>("scheduler.params.total_num_steps");
  s.total_steps = total > 0 ? total : train_steps;
  if (s.warmup_steps > s.total_steps)
    log::warn("{}: warmup_num_steps {} exceeds the schedule's {} steps: the whole run warms up",
              c.where("scheduler.params.warmup_num_steps"), s.warmup_steps, s.total_steps);
  if (type == "WarmupCosineLR") {
    s.decay = optim::LRSchedule::Decay::cosine;
    s.min_lr = s.max_lr * c.get<double>("scheduler.params.cos_min_ratio");
    s.warmup_start_lr = s.max_lr * c.get<double>("scheduler.params.warmup_min_ratio");
  } else {
    s.decay =
        type == "WarmupLR" ? optim::LRSchedule::Decay::constant : optim::LRSchedule::Decay::linear;
    s.min_lr = type == "WarmupLR" ? s.max_lr : 0;
    s.warmup_start_lr = c.get<double>("scheduler.params.warmup_min_lr");
    if (s.warmup_start_lr > s.max_lr)
      c.fail("scheduler.params.warmup_min_lr",
             fmt::format("warmup_min_lr {} is above the peak learning rate {}: lower it",
                         s.warmup_start_lr, s.max_lr));
  }
  o.by_layer_tokens = c.get<std::string>("scheduler.params.schedule_by") == "layer_tokens";
  return o;
}

// ---------------------------------------------------------------------------- precision

void declare_precision(io::ConfigSchema& s) {
  s.boolean("bf16.enabled", false,
            "bf16 mixed precision: matrix products (GEMM, attention) on bf16 inputs with f32 "
            "accumulation; f32 master weights and optimizer state");
  s.ignored("bf16.immediate_grad_update", "gradients are always accumulated in f32");
  s.boolean("fp16.enabled", false,
            "fp16 mixed precision: matrix products on f16 inputs with f32 accumulation, and "
            "loss scaling");
  s.ignored("fp16.auto_cast",
            "the matrix products always take 16-bit inputs in fp16 mode, the rest stays f32");
  s.ignored("fp16.fp16_master_weights_and_grads", "master weights and gradients stay f32");
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
  s.string("activation_precision", "auto",
           "what the training forward keeps activations in: auto (bf16/f16 on a GPU in bf16 or "
           "fp16 mode, f32 otherwise), f32, or 16bit (the mode's type also on the CPU, whose "
           "kernels widen it to f32: for tests)")
      .one_of({std::string("auto"), std::string("f32"), std::string("16bit")});
  s.ignored("amp", "NVIDIA Apex AMP does not exist here: use bf16.enabled or fp16.enabled");
  s.ignored("communication_data_type", "gradients are reduced in f32");
  s.ignored("data_types", "gradients are accumulated in f32");
}

PrecisionOptions precision_from(const io::Config& c) {
  PrecisionOptions o;
  const bool bf16 = c.get<bool>("bf16.enabled"), fp16 = c.get<bool>("fp16.enabled");
  if (bf16 && fp16) c.fail("fp16.enabled", "bf16.enabled and fp16.enabled are exclusive: pick one");
  o.math = bf16 ? kernels::MathMode::bf16 : fp16 ? kernels::MathMode::f16 : kernels::MathMode::f32;
  o.loss_scaling = fp16;
  o.activations = c.get<std::string>("activation_precision");
  if (o.activations == "16bit" && o.math == kernels::MathMode::f32)
    c.fail("activation_precision",
           "16-bit activations need bf16.enabled or fp16.enabled (which 16-bit type to keep)");
  o.loss_scale.static_scale = c.get<double>("fp16.loss_scale");
  o.loss_scale.initial_scale_power = static_cast<int>(c.get<int64_t>("fp16.initial_scale_power"));
  o.loss_scale.window = c.get<int64_t>("fp16.loss_scale_window");
  o.loss_scale.hysteresis = static_cast<int>(c.get<int64_t>("fp16.hysteresis"));
  o.loss_scale.consecutive_hysteresis = c.get<bool>("fp16.consecutive_hysteresis");
  o.loss_scale.min_scale = c.get<double>("fp16.min_loss_scale");
  return o;
}

DType PrecisionOptions::activation_dtype(Device device) const {
  const DType half = math == kernels::MathMode::bf16  ? DType::bf16
                     : math == kernels::MathMode::f16 ? DType::f16
                                                      : DType::f32;
  if (activations == "f32") return DType::f32;
  if (activations == "16bit") return half;
  return device.is_cuda() ? half : DType::f32;
}

// --------------------------------------------------------------------------------- ZeRO

void declare_zero(io::ConfigSchema& s) {
  s.integer("zero_optimization.stage", 0,
            "0: replicate; 1: shard optimizer state; 2: also reduce-scatter gradients (3, "
            "sharded parameters, is not supported)")
      .one_of({int64_t(0), int64_t(1), int64_t(2)});
  s.integer("zero_optimization.allreduce_bucket_size", 50'000'000,
            "elements per gradient reduction bucket")
      .at_least(1);
  s.integer("zero_optimization.reduce_bucket_size", 0,
            "DeepSpeed's name for the bucket size; when given it sets allreduce_bucket_size")
      .at_least(0);
  s.boolean("zero_optimization.overlap_comm", false,
            "reduce each gradient bucket while backward computes the rest");
  const std::string flat = "Turbine's gradients always live in one flat buffer";
  s.ignored("zero_optimization.contiguous_gradients", flat);
  s.ignored("zero_optimization.reduce_scatter",
            "stage 2 always reduce-scatters and stages 0-1 all-reduce");
  s.ignored("zero_optimization.allgather_partitions",
            "sharded parameters are always all-gathered after the step");
  s.ignored("zero_optimization.allgather_bucket_size",
            "the parameters are all-gathered in one call");
  s.ignored("zero_optimization.use_multi_rank_bucket_allreduce", flat);
  s.ignored("zero_optimization.load_from_fp32_weights", "master weights are always f32");
  s.ignored("zero_optimization.elastic_checkpoint",
            "optimizer state is always resharded on resume, for any world size");
  s.ignored("zero_optimization.round_robin_gradients", flat);
  s.ignored("zero_optimization.ignore_unused_parameters",
            "parameters no loss reaches keep a zero gradient");
  s.ignored("zero_optimization.grad_hooks", "Turbine's autograd reports ready gradients itself");
  s.ignored("zero_optimization.log_trace_cache_warnings", "stage 3 only");
  s.ignored("zero_optimization.sub_group_size", "the optimizer steps over its whole shard");
  s.ignored("zero_optimization.legacy_stage1", "one stage-1 implementation");
  s.ignored("zero_optimization.memory_efficient_linear", "linear layers save only their input");
  const std::string offload =
      "Turbine has no ZeRO-Offload of training state: parameters and optimizer state stay "
      "on the job's device";
  for (const char* key : {"offload_param", "offload_optimizer", "cpu_offload", "cpu_offload_param",
                          "cpu_offload_use_pin_memory"})
    s.ignored(std::string("zero_optimization.") + key, offload);
  const std::string stage3 = "stage 3 only, and stage 3 is not supported";
  for (const char* key : {"stage3_max_live_parameters",
                          "stage3_max_reuse_distance",
                          "stage3_prefetch_bucket_size",
                          "stage3_param_persistence_threshold",
                          "stage3_model_persistence_threshold",
                          "stage3_gather_16bit_weights_on_model_save",
                          "stage3_gather_fp16_weights_on_model_save",
                          "stage3_module_granularity_threshold",
                          "stage3_use_all_reduce_for_fetch_params",
                          "prefetch_bucket_size",
                          "param_persistence_threshold",
                          "model_persistence_threshold",
                          "max_live_parameters",
                          "max_reuse_distance",
                          "gather_16bit_weights_on_model_save",
                          "module_granularity_threshold",
                          "use_all_reduce_for_fetch_params",
                          "pipeline_loading_checkpoint",
                          "override_module_apply",
                          "mics_shard_size",
                          "mics_hierarchical_params_gather",
                          "zero_quantized_nontrainable_weights"})
    s.ignored(std::string("zero_optimization.") + key, stage3);
  // ZeRO++ keys: DeepSpeed's documented example gives them their off values.
  s.integer("zero_optimization.zero_hpz_partition_size", 1,
            "ZeRO++ hierarchical partitioning: Turbine has none, so 1 (off)")
      .one_of({int64_t(1)});
  s.boolean("zero_optimization.zero_quantized_weights", false,
            "ZeRO++ quantized weights: Turbine has none, so false")
      .one_of({false});
  s.boolean("zero_optimization.zero_quantized_gradients", false,
            "ZeRO++ quantized gradients: Turbine has none, so false")
      .one_of({false});
  s.unsupported("zero_optimization.zeropp_loco_param",
                "Turbine has no ZeRO++ LoCo gradient compression; remove the key");
}

dist::ZeroConfig zero_from(const io::Config& c) {
  dist::ZeroConfig o;
  o.stage = static_cast<int>(c.get<int64_t>("zero_optimization.stage"));
  o.bucket_elements = c.get<int64_t>("zero_optimization.allreduce_bucket_size");
  if (c.has("zero_optimization.reduce_bucket_size")) {
    if (c.has("zero_optimization.allreduce_bucket_size"))
      c.fail("zero_optimization.reduce_bucket_size",
             "reduce_bucket_size and allreduce_bucket_size are two names of one setting: keep one");
    o.bucket_elements = c.get<int64_t>("zero_optimization.reduce_bucket_size");
    if (o.bucket_elements < 1)
      c.fail("zero_optimization.reduce_bucket_size", "reduce_bucket_size must be at least 1");
  }
  o.overlap_comm = c.get<bool>("zero_optimization.overlap_comm");
  return o;
}

// ------------------------------------------------------- activation memory of training

void declare_activation_memory(io::ConfigSchema& s) {
  // DeepSpeed leaves the switch to the model code (Megatron's
  // --checkpoint-activations, Hugging Face's gradient_checkpointing_enable);
  // here the model is Turbine's, so the block has one.
  s.boolean("activation_checkpointing.enabled", false,
            "keep only each block's input and run the block again in backward (less activation "
            "memory for a second forward)");
  s.integer("activation_checkpointing.number_checkpoints", 0,
            "checkpoints per forward: the layers grouped into this many chunks; 0: one per layer")
      .at_least(0);
  s.boolean("activation_checkpointing.cpu_checkpointing", false,
            "keep the checkpointed inputs in host memory until backward (GPU runs; the CPU "
            "keeps them where they are)");
  s.boolean("activation_checkpointing.partition_activations", false,
            "split the checkpoints over the model-parallel ranks: with sequence parallelism each "
            "rank keeps only its slice of the sequence already, so this changes nothing");
  s.ignored("activation_checkpointing.contiguous_memory_optimization",
            "the caching allocator reuses the checkpoints' blocks");
  s.ignored("activation_checkpointing.synchronize_checkpoint_boundary",
            "each rank's kernels are ordered already; nothing to synchronize");
  s.ignored("activation_checkpointing.profile",
            "build/bench/bench-train-step --profile times every kernel");
  s.number("tiled_loss.max_tile_mb", 256,
           "the LM head and cross entropy run on tiles of tokens whose f32 logits take at most "
           "this many MB (Arctic Long Sequence Training's tiled loss; BLOOM's 250880-token "
           "vocabulary makes them most of the activation memory at long sequences); 0: all the "
           "micro-batch's tokens at once")
      .at_least(0);
}

ActivationMemory activation_memory_from(const io::Config& c, int64_t vocab_size) {
  ActivationMemory o;
  o.checkpointing.enabled = c.get<bool>("activation_checkpointing.enabled");
  o.checkpointing.chunks = c.get<int64_t>("activation_checkpointing.number_checkpoints");
  o.checkpointing.offload_inputs = c.get<bool>("activation_checkpointing.cpu_checkpointing");
  for (const char* key :
       {"activation_checkpointing.number_checkpoints", "activation_checkpointing.cpu_checkpointing",
        "activation_checkpointing.partition_activations"})
    if (c.has(key) && !o.checkpointing.enabled)
      log::warn("{}: {} has no effect while activation_checkpointing.enabled is false",
                c.where(key), key);
  const double tile_mb = c.get<double>("tiled_loss.max_tile_mb");
  o.loss_tile_tokens =
      tile_mb <= 0
          ? 0
          : std::max<int64_t>(
                1, int64_t(tile_mb * (1 << 20) / (double(sizeof(float)) * double(vocab_size))));
  return o;
}

// ------------------------------------------------------------- DeepSpeed's foreign keys

void declare_deepspeed_foreign(io::ConfigSchema& s) {
  const std::string metrics = "metrics go to <output.dir>/metrics.jsonl (tools/plot-metrics)";
  for (const char* key : {"tensorboard", "wandb", "comet", "csv_monitor", "monitor_config"})
    s.ignored(key, metrics);
  s.ignored("wall_clock_breakdown", "each step's time is in metrics.jsonl (step_s)");
  s.ignored("memory_breakdown", "memory is in metrics.jsonl (mem_mb, peak_mem_mb)");
  s.ignored("dump_state", "the resolved config is written to <output.dir>/config.yaml");
  s.ignored("flops_profiler",
            "FLOPs and MFU are in metrics.jsonl; build/bench/bench-train-step --profile times "
            "every kernel");
  s.ignored("comms_logger", "collective byte counts are kept by the communicators");
  s.ignored("autotuning", "no autotuner: set the batch keys");
  s.ignored("elasticity", "resume with any number of ranks instead (optimizer state reshards)");
  s.ignored("prescale_gradients", "gradients are averaged over ranks in f32 after reduction");
  s.ignored("gradient_predivide_factor",
            "gradients are averaged over ranks in f32 after reduction");
  s.ignored("sparse_gradients", "embedding gradients are dense");
  s.ignored("zero_allow_untested_optimizer", "the optimizer is always Turbine's AdamW");
  s.ignored("zero_force_ds_cpu_optimizer", "the optimizer is always Turbine's AdamW");
  s.ignored("checkpoint.tag_validation", "every rank writes the same step's checkpoint");
  s.ignored("checkpoint.load_universal", "checkpoints always load with any world size");
  s.ignored("checkpoint.use_node_local_storage", "checkpoints go to output.dir");
  s.ignored("checkpoint.parallel_write", "each rank writes its own optimizer shard");
  s.ignored("aio", "no NVMe offload in training");
  s.unsupported("sparse_attention",
                "sparse attention would change the model, and Turbine's attention is dense; "
                "remove the block");
  s.unsupported("compression_training",
                "Turbine has no DeepSpeed Compression (quantization-aware training, pruning, layer "
                "reduction); remove the block");
  s.unsupported("pipeline", "Turbine has no pipeline parallelism; remove the block");
  s.unsupported("curriculum_learning",
                "this is DeepSpeed's legacy curriculum block: use "
                "data_efficiency.data_sampling.curriculum_learning");
}

std::string resolved_yaml(const io::Config& c, const std::vector<std::string>& derived) {
  return io::Config::from_string(c.to_yaml(), c.origin(), c.schema(), derived).to_yaml();
}

}  // namespace turbine::train
