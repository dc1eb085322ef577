// The pretraining loop.
#include "train/pretrain.hpp"

#include <omp.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/progress.hpp"
#include "core/signals.hpp"
#include "core/timer.hpp"
#include "data/loader.hpp"
#include "data/token_stats.hpp"
#include "efficiency/curriculum_sampler.hpp"
#include "data/tokenizer.hpp"
#include "infer/generate.hpp"
#include "ops/ops.hpp"
#include "train/checkpoint.hpp"
#include "train/metrics.hpp"

namespace fs = std::filesystem;

namespace turbine::train {

void validate(const PretrainOptions& o, int world) {
  TURBINE_CHECK(o.micro_batch > 0 && o.accumulation > 0,
                "train_micro_batch_size_per_gpu ({}) and gradient_accumulation_steps ({}) must "
                "be positive",
                o.micro_batch, o.accumulation);
  TURBINE_CHECK(o.train_batch_size == o.micro_batch * o.accumulation * world,
                "train_batch_size {} != train_micro_batch_size_per_gpu {} x "
                "gradient_accumulation_steps {} x {} data-parallel ranks = {}: set "
                "train_batch_size to {}, or change the micro batch or accumulation so the "
                "product is {}",
                o.train_batch_size, o.micro_batch, o.accumulation, world,
                o.micro_batch * o.accumulation * world,
                o.micro_batch * o.accumulation * world, o.train_batch_size);
  TURBINE_CHECK(o.train_steps > 0, "train_steps must be positive, got {}", o.train_steps);
  TURBINE_CHECK(o.seq_len > 0, "data.seq_len must be positive, got {}", o.seq_len);
  o.schedule.validate();
  o.optimizer.validate();
}

namespace {

// Per-rank GEMM GFLOP/s measured now, with every rank busy: the peak MFU is
// measured against. On a CPU: sgemm (the bf16/f16 modes only emulate the
// rounding there, so f32 is the hardware's peak). On a GPU: a large GEMM in
// the run's math mode (tensor cores for bf16/f16).
double measure_peak_gflops(dist::Communicator& comm, Device device) {
  std::optional<kernels::MathModeGuard> f32;
  if (device.is_cpu()) f32.emplace(backend_for(device), kernels::MathMode::f32);
  comm.barrier();
  double gflops = 1e3 * ops::measure_gemm_tflops(device, device.is_cpu() ? 768 : 4096, 0.3);
  comm.allreduce_sum(&gflops, 1);
  return gflops / comm.size();
}

// The device this rank computes on: a GPU by node-local rank.
Device pick_device(const PretrainOptions& o, dist::Communicator& comm) {
  if (o.device == "cpu") return Device::cpu();
  const int gpus = kernels::cuda_device_count();
  TURBINE_CHECK(gpus > 0, "device cuda: no CUDA device is visible to rank {}", comm.rank());
  dist::Communicator local = comm.node_local();
  const Device device = Device::cuda(local.rank() % gpus);
  // NCCL refuses two ranks of one communicator on one GPU ("duplicate GPU"),
  // so say so here, on every rank, rather than as an NCCL error code later.
  // GPUs are compared by UUID: with per-task binding (Slurm --gpus-per-task)
  // each rank sees its own GPU as device 0.
  bool shared = false;
  if (comm.size() > 1) {
    std::string mine = kernels::cuda_device_uuid(device.index);
    mine.resize(32);
    for (int r = 0; r < local.size(); ++r) {
      std::string theirs = mine;
      local.broadcast(theirs.data(), int64_t(theirs.size()), r);
      shared |= r != local.rank() && theirs == mine;
    }
  }
  TURBINE_CHECK(!comm.any(shared),
                "device cuda: ranks on this node share a GPU ({} ranks, {} GPU(s) visible to "
                "each): gradients are reduced over NCCL, which cannot put two ranks on one GPU; "
                "start at most one rank per GPU (mpirun --map-by ppr:N:node, or fewer -np)",
                local.size(), gpus);
  return device;
}

// Validation loss over the first `batches x micro` windows of the split,
// shared out among the ranks: the same windows and the same figure for any
// world size.
struct Evaluator {
  data::WindowLoader loader;
  int64_t micro, batches;

  double run(const nn::Bloom& model, dist::Communicator& comm) {
    autograd::NoGradGuard no_grad;
    const int64_t total = std::min(batches * micro, loader.windows_per_epoch());
    const int64_t begin = total * comm.rank() / comm.size();
    const int64_t end = total * (comm.rank() + 1) / comm.size();
    double sum = 0;  // of per-window mean losses
    for (int64_t first = begin; first < end; first += micro) {
      const int64_t count = std::min(micro, end - first);
      const data::Batch b = loader.read(first, count);
      sum += model.loss(b.ids, b.targets).item() * double(count);
    }
    comm.allreduce_sum(&sum, 1);
    return sum / double(total);
  }
};

std::string sample_text(const nn::Bloom& model, const data::Tokenizer& tokenizer,
                        const PretrainOptions& o, int64_t step) {
  infer::SamplingOptions s;
  s.max_new_tokens = o.sample_tokens;
  s.temperature = o.sample_temperature;
  s.top_k = o.sample_top_k;
  s.context = o.seq_len;
  s.seed = o.seed + uint64_t(step);
  s.stop_token = tokenizer.eos_id().value_or(-1);
  const auto ids = infer::generate(model, tokenizer.encode(o.sample_prompt), s);
  return tokenizer.decode(ids);
}

}  // namespace

PretrainResult pretrain(const PretrainOptions& options, dist::Communicator& comm) {
  PretrainOptions o = options;
  validate(o, comm.size());
  const bool leader = comm.rank() == 0;

  // Data and tokenizer; the model's vocabulary follows the data set's.
  const data::TokenDataset dataset = data::TokenDataset::open(o.data_path);
  if (o.model.vocab_size <= 0) o.model.vocab_size = dataset.vocab_size();
  TURBINE_CHECK(o.model.vocab_size == dataset.vocab_size(),
                "model.vocab_size {} does not match the data set {} (vocabulary {}): remove "
                "model.vocab_size to take the data set's, or prepare the data with the model's "
                "tokenizer",
                o.model.vocab_size, dataset.path(), dataset.vocab_size());
  const data::Tokenizer tokenizer = data::Tokenizer::from_json(dataset.tokenizer_json(), dataset.path());
  data::WindowLoader train_loader(dataset, data::Split::train, o.seq_len, o.seed, o.shuffle);
  std::optional<efficiency::CurriculumLoader> curriculum;
  if (o.curriculum.enabled) curriculum.emplace(o.curriculum, dataset, train_loader);
  Evaluator evaluator{data::WindowLoader(dataset, dataset.num_tokens(data::Split::valid) > o.seq_len
                                                      ? data::Split::valid
                                                      : data::Split::train,
                                         o.seq_len, o.seed, false),
                      o.micro_batch, o.eval_batches};

  const Device device = pick_device(o, comm);  // before any output: it may refuse the layout

  // Output folder: never silently mix two runs.
  const fs::path out = o.output_dir;
  CheckpointStore store((out / "checkpoints").string(), comm);
  const auto existing = store.latest();
  TURBINE_CHECK(!existing || o.resume,
                "output folder '{}' holds checkpoints of a run ({}): pass --resume to continue "
                "it, or set output.dir to a new folder",
                out.string(), *existing);
  if (leader) {
    fs::create_directories(out);
    std::ofstream(out / "config.yaml") << o.resolved_config_yaml;
  }

  kernels::MathModeGuard math(backend_for(device), o.math);
  nn::Bloom model(o.model, o.seed, device);
  dist::DataParallelOptimizer optimizer(comm, model.parameters(), o.optimizer, o.zero);
  optim::LossScaler scaler(o.loss_scale);
  TrainerState state;
  state.data_identity = dataset.tokenizer_identity();
  if (o.resume && existing) {
    state = store.load(*existing, model.parameters(), optimizer);
    log::info("resumed from {} at step {} ({} samples consumed)", *existing, state.step,
              state.samples);
    if (state.data_identity != dataset.tokenizer_identity())
      log::warn("the checkpoint was trained on data tokenized by {}, this data set uses {}",
                state.data_identity, dataset.tokenizer_identity());
    if (o.loss_scaling && state.loss_scaler.scale > 0) scaler.restore(state.loss_scaler);
  } else if (!o.init_from.empty()) {
    CheckpointStore::load_weights(o.init_from, model.parameters());
    log::info("initialized weights from {}", o.init_from);
  }

  const int64_t world = comm.size();
  const int64_t params = o.model.parameter_count();
  const dist::MemoryPlan plan = optimizer.memory_plan();
  const double mib = 1.0 / (1 << 20);
  log::info("model: BLOOM {} layers, hidden {}, {} heads, vocab {}: {:.2f}M parameters",
            o.model.n_layer, o.model.hidden_size, o.model.n_head, o.model.vocab_size, params / 1e6);
  log::info("data: {} ({} train tokens, {} windows of {}+1; {} valid tokens)", dataset.path(),
            dataset.num_tokens(data::Split::train), train_loader.windows_per_epoch(), o.seq_len,
            dataset.num_tokens(data::Split::valid));
  log::info("batch: {} sequences = {} micro x {} accumulation x {} ranks; {} threads per rank",
            o.train_batch_size, o.micro_batch, o.accumulation, world, omp_get_max_threads());
  if (world > 1) {
    const int64_t padded = optimizer.flat().padded_numel();
    log::info("gradient reduction: {} bucket(s) of up to {} values, {}",
              (padded + o.zero.bucket_elements - 1) / o.zero.bucket_elements,
              o.zero.bucket_elements,
              o.zero.overlap_comm ? "each started as soon as backward completes it (overlap_comm)"
                                  : "after backward");
  }
  log::info("compute: {} on rank 0, matrix products in {}{}", device.str(),
            kernels::math_mode_name(o.math),
            o.loss_scaling ? fmt::format(", loss scale {:g}", scaler.scale()) : std::string());
  const double state_full = 8.0 * params * mib;
  log::info("memory per rank: parameters {:.1f} MiB, gradients {:.1f} MiB, optimizer state "
            "{:.1f} MiB (ZeRO stage {})",
            plan.parameter_bytes * mib, plan.gradient_bytes * mib, plan.optimizer_bytes * mib,
            o.zero.stage);
  log::info("optimizer state per rank by ZeRO stage: 0: {:.1f} MiB, 1: {:.1f} MiB, 2: {:.1f} "
            "MiB (stage 2 also reduce-scatters gradients: each rank receives only its shard)",
            state_full, state_full / world, state_full / world);
  const double peak_gflops =
      o.peak_tflops > 0 ? 1e3 * o.peak_tflops : measure_peak_gflops(comm, device);
  PretrainResult result;
  if (leader) {
    result.unigram_entropy = data::unigram_entropy(dataset, data::Split::train);
    log::info("unigram entropy of the training tokens: {:.4f} nats/token (the loss of the best "
              "model that ignores context)",
              result.unigram_entropy);
  }

  std::optional<MetricsWriter> metrics;
  if (leader) metrics.emplace((out / "metrics.jsonl").string(), state.step);
  ProgressLine progress(stdout, leader, comm.size() == 1);
  double val_loss = NAN, train_loss = NAN;
  Timer run_timer;
  double busy_seconds = 0;
  const int64_t first_step = state.step, first_tokens = state.tokens;

  auto evaluate = [&] {
    model.set_training(false);
    val_loss = evaluator.run(model, comm);
    model.set_training(true);
    progress.break_line();
    log::info("step {}: validation loss {:.4f} (perplexity {:.1f})", state.step, val_loss,
              std::exp(val_loss));
  };
  auto sample = [&] {
    if (!leader) return;
    progress.break_line();
    model.set_training(false);
    log::info("step {} sample: {}", state.step, sample_text(model, tokenizer, o, state.step));
    model.set_training(true);
  };

  auto budget_left = [&] {
    return state.step < o.train_steps && (o.train_tokens <= 0 || state.tokens < o.train_tokens);
  };
  while (budget_left()) {
    Timer step_timer;
    const double full_layer_tokens =
        double(o.train_batch_size) * double(o.seq_len) * double(o.model.n_layer);
    const double lr = o.lr_by_layer_tokens
                          ? o.schedule.at_fractional_step(state.layer_tokens / full_layer_tokens)
                          : o.schedule.at(state.step);
    // Curriculum: this step's difficulty and sequence length (DeepSpeed counts from 1).
    const efficiency::CurriculumStep now =
        curriculum ? curriculum->at(state.step + 1) : efficiency::CurriculumStep{};
    const int64_t seq_now = curriculum ? now.seq_len : o.seq_len;
    nn::TokenDropping dropping = o.random_ltd.dropping_at(state.step, o.seed);
    dropping.kept = std::min(dropping.kept, seq_now);
    model.set_token_dropping(dropping);
    const int64_t kept = o.random_ltd.enabled ? dropping.kept : seq_now;
    optimizer.zero_grad();
    // fp16: the loss is scaled up so small gradients survive f16 rounding.
    const double loss_scale = o.loss_scaling ? scaler.scale() : 1.0;
    double loss_sum = 0;
    int64_t rows_per_micro = o.micro_batch;  // seqlen_reshape cuts samples into more rows
    const int64_t rank_first = state.samples + comm.rank() * o.micro_batch * o.accumulation;
    for (int64_t m = 0; m < o.accumulation; ++m) {
      const int64_t first = rank_first + m * o.micro_batch;
      const data::Batch batch = curriculum ? curriculum->read(first, o.micro_batch, now)
                                           : train_loader.read(first, o.micro_batch);
      rows_per_micro = batch.ids.dim(0);
      // Dropout streams follow the global micro-batch, not the rank.
      model.set_dropout_step(uint64_t(state.step) * world * o.accumulation +
                             comm.rank() * o.accumulation + m);
      const Tensor loss = model.loss(batch.ids, batch.targets);
      const Tensor seed =
          Tensor::full({1}, float(loss_scale / double(o.accumulation)), loss.device());
      if (m + 1 == o.accumulation)
        optimizer.backward_and_reduce(loss, seed);  // overlap_comm: reductions start here
      else
        autograd::backward(loss, seed);
      loss_sum += loss.item();
    }
    const auto update = optimizer.step(static_cast<float>(lr), o.gradient_clipping, loss_scale);
    const double grad_norm = update.grad_norm;
    if (o.loss_scaling) {
      scaler.update(!update.applied);
      state.loss_scaler = scaler.state();
      if (!update.applied) {
        progress.break_line();
        log::warn("step {}: fp16 gradients overflowed at loss scale {:g}: update skipped, "
                  "scale now {:g}",
                  state.step + 1, loss_scale, scaler.scale());
      }
    }
    double loss = loss_sum / o.accumulation;
    comm.allreduce_sum(&loss, 1);
    train_loss = loss / world;
    state.step += 1;
    state.samples += o.train_batch_size;
    const int64_t rows = rows_per_micro * o.accumulation * world;  // sequences this step
    const int64_t step_tokens = rows * seq_now;
    const double step_flops = double(rows) * o.model.train_flops_per_sequence(
                                                 seq_now, o.random_ltd.layer_ids, kept);
    state.tokens += step_tokens;
    state.layer_tokens +=
        o.random_ltd.layer_tokens(state.step - 1, rows, seq_now, o.model.n_layer);
    state.flops += step_flops;

    const double seconds = step_timer.seconds();
    busy_seconds += seconds;
    const double tokens_per_s = double(step_tokens) / seconds;
    const double mfu = step_flops / seconds / (peak_gflops * 1e9 * world);
    const double avg_step = busy_seconds / double(state.step - first_step);
    auto steps_left = [&] {
      double left = double(o.train_steps - state.step);
      if (o.train_tokens > 0)
        left = std::min(left, double(std::max<int64_t>(0, o.train_tokens - state.tokens)) /
                                  double(step_tokens));
      return left;
    };
    const auto memory = memory_stats(device);
    progress.show(fmt::format("step {}/{} | loss {:.4f} | lr {:.2e} | {:.0f} tok/s | MFU {:.1f}% "
                                "| ETA {}",
                                state.step, o.train_steps, train_loss, lr, tokens_per_s,
                                100 * mfu,
                                format_duration(avg_step * steps_left())),
                  state.step % o.steps_per_print == 0);

    const bool last = !budget_left();
    const bool eval_now = last || (o.eval_interval > 0 && state.step % o.eval_interval == 0);
    if (eval_now) evaluate();
    const double full_step_flops =
        double(rows) * o.model.train_flops_per_sequence(seq_now, {}, 0);
    nlohmann::ordered_json line = {{"step", state.step},
                                   {"loss", train_loss},
                                   {"lr", lr},
                                   {"grad_norm", grad_norm},
                                   {"tokens", state.tokens},
                                   {"layer_tokens", state.layer_tokens},
                                   {"flops", state.flops},
                                   {"flops_saved", 1.0 - step_flops / full_step_flops},
                                   {"kept_tokens", kept},
                                   {"seq_len", seq_now},
                                   {"difficulty", now.sample_difficulty},
                                   {"tokens_per_s", tokens_per_s},
                                   {"mfu", mfu},
                                   {"step_s", seconds},
                                   {"mem_mb", memory.current_bytes * mib},
                                   {"peak_mem_mb", memory.peak_bytes * mib},
                                   {"reserved_mb", backend_for(device).reserved_bytes() * mib},
                                   {"time_s", run_timer.seconds()}};
    if (o.loss_scaling) {
      line["loss_scale"] = loss_scale;
      line["skipped"] = !update.applied;
    }
    if (eval_now) line["val_loss"] = val_loss;
    if (metrics) metrics->write(line);
    if (last || (o.sample_interval > 0 && state.step % o.sample_interval == 0)) sample();
    // A stop request (any rank) ends the run after a checkpoint of this step.
    const bool stopping = !last && comm.any(stop_requested());
    if (last || stopping ||
        (o.checkpoint_interval > 0 && state.step % o.checkpoint_interval == 0)) {
      store.save(state, model.parameters(), optimizer, o.resolved_config_yaml,
                 o.checkpoint_keep);
      progress.break_line();
      log::info("step {}: checkpoint {}", state.step,
                (out / "checkpoints" / CheckpointStore::step_name(state.step)).string());
    }
    result.tokens_per_second = double(state.tokens - first_tokens) / busy_seconds;
    if (stopping) {
      progress.break_line();
      log::info("stopped at step {} of {} on request ({}): the checkpoint holds everything; "
                "continue with --resume",
                state.step, o.train_steps, stop_requested() ? stop_signal_name() : "another rank");
      result.stopped_early = true;
      break;
    }
  }
  progress.break_line();
  if (state.step == first_step && !result.stopped_early) {  // resumed a finished run
    log::info("the run had already reached step {} of {}", state.step, o.train_steps);
    evaluate();
    sample();
  }
  result.steps = state.step;
  result.final_train_loss = train_loss;
  result.final_val_loss = val_loss;
  return result;
}

}  // namespace turbine::train
