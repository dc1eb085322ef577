// rlhf's steps 1 and 2 (SFT and the reward model) and what all steps share.
#include "rlhf/steps.hpp"

#include <filesystem>

#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/signals.hpp"
#include "infer/convert.hpp"
#include "io/model_config.hpp"
#include "rlhf/ppo_math.hpp"
#include "train/checkpoint.hpp"

namespace turbine::rlhf {

namespace fs = std::filesystem;

// ------------------------------------------------------------------------------ shared

bool is_turbine_checkpoint(const std::string& path) {
  return fs::exists(fs::path(path) / "trainer.h5");
}

StartingModel load_starting_model(const std::string& path, Device device, bool weights) {
  const infer::WeightReader reader(path);
  StartingModel out{nn::Bloom(reader.config(), 0, device), reader.tokenizer()};
  if (!weights) return out;
  if (is_turbine_checkpoint(path))
    load_policy(path, out.model);  // adapters of a LoRA step merged in
  else
    reader.load(out.model.parameters());  // a Hugging Face folder
  return out;
}

StepContext::StepContext(const StepOptions& options, train::Job& job_, Device device_,
                         data::Tokenizer tokenizer_)
    : o(options), job(job_), comm(job_.world()), device(device_), tokenizer(std::move(tokenizer_)) {
  eos = end_token_id(tokenizer, o.tokens);
  const auto data_file = [&](const char* name) { return (fs::path(o.data_path) / name).string(); };
  train =
      load_phase(data_file("train.jsonl"), o.phase, o.data_split, o.run.seed, tokenizer, o.tokens);
  // Every step evaluates on all of eval.jsonl (the held-out pairs; nothing
  // trains on them), not on a data_split share of it as DeepSpeed-Chat does.
  std::vector<double> whole(3, 0.0);
  whole[size_t(o.phase)] = 1.0;
  eval = load_phase(data_file("eval.jsonl"), o.phase, whole, o.run.seed, tokenizer, o.tokens);
  for (const PhaseData* d : {&train, &eval})
    if (d->dropped > 0 && job.leader())
      log::warn("{} of {} pairs of the {} share left out: {}", d->dropped, d->pairs,
                phase_name(o.phase), d->drop_reason);
  TURBINE_CHECK(train.size() > 0,
                "{}/train.jsonl: no usable pairs for the {} step (data_split {}, {} pairs in its "
                "share, {} left out{})",
                o.data_path, phase_name(o.phase), fmt::join(o.data_split, ","), train.pairs,
                train.dropped, train.drop_reason.empty() ? "" : ": " + train.drop_reason);
  if (job.leader())
    log::info("data: {} {} samples for training, {} for evaluation ({}, data_split {})",
              train.size(), phase_name(o.phase), eval.size(), o.data_path,
              fmt::join(o.data_split, ","));
}

int64_t StepContext::train_steps(int64_t samples_per_step) const {
  if (o.num_train_epochs <= 0) return o.run.train_steps;
  const int64_t samples = o.num_train_epochs * train.size();
  return std::max<int64_t>(1, (samples + samples_per_step - 1) / samples_per_step);
}

void apply_lora(nn::Bloom& model, const LoraOptions& lora, uint64_t seed, const char* whose) {
  if (lora.dim <= 0) return;
  const int64_t wrapped =
      nn::apply_lora(model, {lora.dim, float(lora.scaling), lora.module_name, seed});
  if (!lora.only_optimize) model.set_trainable(true);  // apply_lora froze the rest
  log::info("LoRA on {}: {} linear layers with rank {} adapters (scaling {:g}){}", whose, wrapped,
            lora.dim, lora.scaling,
            lora.only_optimize ? "; only the adapters train" : "; every weight trains");
}

void save_common_state(train::StateMap& state, const data::Tokenizer& tokenizer,
                       const LoraOptions& lora) {
  state.set_file("tokenizer.json", tokenizer.to_json());
  state.set("lora_scaling", lora.scaling);
  state.set("data_identity", tokenizer.identity());
}

StepResult finish_step(const StepOptions& o, train::Loop& loop, train::TrainTask& task,
                       dist::Communicator& comm) {
  const train::LoopResult r = loop.run(task);
  StepResult out;
  if (r.stopped_early) {
    out.exit_status = kExitStoppedResumable;
    return out;
  }
  out.final_checkpoint = (fs::path(o.run.output_dir) / "checkpoints" /
                          train::CheckpointStore::step_name(loop.counters().step))
                             .string();
  if (comm.rank() == 0)
    log::info("{} done: {} steps; final checkpoint {}; metrics {}/metrics.jsonl",
              phase_name(o.phase), r.steps, out.final_checkpoint, o.run.output_dir);
  return out;
}

std::string checkpoint_config(const StepOptions& o, const nn::BloomConfig& model) {
  // The step's own `model:` section (model.type) gives way to the language
  // model's, which infer and the next step read: one `model:` key only.
  std::string step;
  bool in_model = false;
  size_t from = 0;
  const std::string& yaml = o.resolved_config_yaml;
  while (from < yaml.size()) {
    const size_t end = std::min(yaml.find('\n', from), yaml.size());
    const std::string line = yaml.substr(from, end - from);
    if (!line.empty() && line[0] != ' ' && line[0] != '#') in_model = line.rfind("model:", 0) == 0;
    if (!in_model) step += line + "\n";
    from = end + 1;
  }
  return step + "\n" + io::bloom_config_yaml(model);
}

void set_memory(nn::Bloom& model, const StepOptions& o) {
  model.set_activation_checkpointing(o.memory.checkpointing);
  model.set_loss_tile_tokens(
      o.max_tile_mb <= 0
          ? 0
          : std::max<int64_t>(
                1, int64_t(o.max_tile_mb * (1 << 20) / (4.0 * double(model.config().vocab_size)))));
}

// --------------------------------------------------------------------------------- SFT

namespace {

// Samples of a micro-batch: data-parallel rank r reads micro-batches
// [samples + (r x accumulation + m) x micro, ...) of the epoch order.
template <typename Sample>
std::vector<const Sample*> rows_of(const std::vector<Sample>& all, data::EpochOrder& order,
                                   int64_t first, const train::BatchOptions& batch, int rank,
                                   int64_t micro) {
  std::vector<const Sample*> out;
  for (const int64_t i : rank_rows(order, first, batch.micro, batch.accumulation, rank, micro))
    out.push_back(&all[size_t(i)]);
  return out;
}

// Every sample the whole step reads, over all ranks and micro-batches (each
// rank knows them: the order is global), for a step's token and FLOP counts.
template <typename Sample, typename Visit>
void for_each_step_sample(const std::vector<Sample>& all, data::EpochOrder& order,
                          const train::LoopCounters& at, const train::BatchOptions& batch,
                          int ranks, const Visit& visit) {
  for (int r = 0; r < ranks; ++r)
    for (int64_t m = 0; m < batch.accumulation; ++m)
      for (const Sample* s : rows_of(all, order, at.samples, batch, r, m)) visit(*s);
}

// This rank's evaluation micro-batches: the first eval_batches x micro
// samples shared out among the ranks, so any world size sees the same ones.
template <typename Sample, typename Visit>
void for_each_eval_batch(const std::vector<Sample>& all, int64_t eval_batches, int64_t micro,
                         const dist::Communicator& comm, const Visit& visit) {
  const int64_t total = std::min<int64_t>(eval_batches * micro, int64_t(all.size()));
  const int64_t begin = total * comm.rank() / comm.size();
  const int64_t end = total * (comm.rank() + 1) / comm.size();
  for (int64_t first = begin; first < end; first += micro) {
    std::vector<const Sample*> rows;
    for (int64_t i = first; i < std::min(end, first + micro); ++i) rows.push_back(&all[size_t(i)]);
    visit(rows);
  }
}

// The global index of this rank's micro-batch m of the step (its dropout stream).
uint64_t micro_batch_index(const train::LoopCounters& at, const train::BatchOptions& batch,
                           const dist::Communicator& comm, int64_t m) {
  return uint64_t(at.step) * uint64_t(comm.size()) * uint64_t(batch.accumulation) +
         uint64_t(comm.rank()) * uint64_t(batch.accumulation) + uint64_t(m);
}

class SftTask final : public train::TrainTask {
 public:
  SftTask(StepContext& ctx, nn::Bloom& model)
      : ctx_(ctx),
        o_(ctx.o),
        model_(model),
        order_(int64_t(ctx.train.sft.size()), o_.run.seed, true, 0x5f7u) {}

  double learning_rate(const train::LoopCounters& at) override {
    return o_.schedule.schedule.at(at.step);
  }

  Tensor micro_batch_loss(const train::LoopCounters& at, int64_t m) override {
    const auto rows = rows_of(ctx_.train.sft, order_, at.samples, o_.batch, ctx_.comm.rank(), m);
    const SftBatch b = sft_batch(rows, o_.tokens.train_on_prompt, ctx_.eos);
    model_.set_dropout_step(micro_batch_index(at, o_.batch, ctx_.comm, m));
    return model_.loss(b.ids, b.targets);
  }

  train::StepWork step_work(const train::LoopCounters& at) override {
    train::StepWork w;
    w.samples = o_.batch.global;
    int64_t targets = 0;
    for_each_step_sample(ctx_.train.sft, order_, at, o_.batch, ctx_.comm.size(),
                         [&](const SftSample& s) {
                           const int64_t n = int64_t(s.ids.size());
                           w.tokens += n;
                           targets += o_.tokens.train_on_prompt ? n - 1 : n - s.prompt_tokens;
                           w.flops += model_.config().train_flops_per_sequence(n, {}, 0);
                         });
    w.metrics = {{"target_tokens", targets}};
    return w;
  }

  // The mean next-token loss over the counted targets of the first
  // eval.batches x micro evaluation samples.
  double evaluate() override {
    if (ctx_.eval.sft.empty()) return NAN;
    const autograd::NoGradGuard no_grad;
    model_.set_training(false);
    double sums[2] = {0, 0};  // loss x targets, targets
    for_each_eval_batch(ctx_.eval.sft, o_.eval_batches, o_.batch.micro, ctx_.comm,
                        [&](const std::vector<const SftSample*>& rows) {
                          const SftBatch b = sft_batch(rows, o_.tokens.train_on_prompt, ctx_.eos);
                          if (b.targets_counted == 0) return;
                          sums[0] +=
                              model_.loss(b.ids, b.targets).item() * double(b.targets_counted);
                          sums[1] += double(b.targets_counted);
                        });
    ctx_.comm.allreduce_sum(sums, 2);
    model_.set_training(true);
    return sums[1] > 0 ? sums[0] / sums[1] : NAN;
  }

  // The first evaluation prompt, answered greedily.
  std::string sample(int64_t /*step*/) override {
    const std::vector<SftSample>& from = ctx_.eval.sft.empty() ? ctx_.train.sft : ctx_.eval.sft;
    const SftSample& s = from.front();
    infer::SamplingOptions options;
    options.max_new_tokens = o_.sample_tokens;
    options.temperature = 0;
    options.context = o_.tokens.max_seq_len + o_.sample_tokens;
    options.stop_token = ctx_.eos;
    const std::vector<int32_t> prompt(s.ids.begin(), s.ids.begin() + s.prompt_tokens);
    model_.set_training(false);
    std::vector<int32_t> all = infer::generate(model_, prompt, options);
    model_.set_training(true);
    if (!all.empty() && all.back() == ctx_.eos) all.pop_back();
    return ctx_.tokenizer.decode(prompt) + " ->" +
           ctx_.tokenizer.decode(
               std::vector<int32_t>(all.begin() + int64_t(prompt.size()), all.end()));
  }

  void save_state(train::StateMap& state) const override {
    save_common_state(state, ctx_.tokenizer, o_.lora);
  }

 private:
  StepContext& ctx_;
  const StepOptions& o_;
  nn::Bloom& model_;
  data::EpochOrder order_;
};

// ------------------------------------------------------------------------- reward model

class RewardTask final : public train::TrainTask {
 public:
  RewardTask(StepContext& ctx, RewardModel& model)
      : ctx_(ctx),
        o_(ctx.o),
        model_(model),
        order_(int64_t(ctx.train.reward.size()), o_.run.seed, true, 0x5f7u) {}

  double learning_rate(const train::LoopCounters& at) override {
    return o_.schedule.schedule.at(at.step);
  }

  void begin_step(const train::LoopCounters&) override { correct_ = pairs_ = 0; }

  Tensor micro_batch_loss(const train::LoopCounters& at, int64_t m) override {
    const auto rows = rows_of(ctx_.train.reward, order_, at.samples, o_.batch, ctx_.comm.rank(), m);
    const RewardBatch b = reward_batch(rows, ctx_.eos);
    model_.base().set_dropout_step(micro_batch_index(at, o_.batch, ctx_.comm, m));
    const PairLoss loss = pairwise_loss(model_.values(b.ids), pair_loss_inputs(b.ids, b.lengths));
    for (size_t i = 0; i < loss.chosen_scores.size(); ++i)
      correct_ += loss.chosen_scores[i] > loss.rejected_scores[i];
    pairs_ += double(loss.chosen_scores.size());
    return loss.loss;
  }

  train::StepWork step_work(const train::LoopCounters& at) override {
    train::StepWork w;
    w.samples = o_.batch.global;
    for_each_step_sample(ctx_.train.reward, order_, at, o_.batch, ctx_.comm.size(),
                         [&](const RewardSample& s) {
                           for (const auto* row : {&s.chosen, &s.rejected}) {
                             const int64_t n = int64_t(row->size());
                             w.tokens += n;
                             w.flops += model_.base().config().train_flops_per_sequence(n, {}, 0);
                           }
                         });
    double counts[2] = {correct_, pairs_};
    ctx_.comm.allreduce_sum(counts, 2);
    w.metrics = {{"train_accuracy", counts[0] / std::max(counts[1], 1.0)}};
    return w;
  }

  // Over the first eval.batches x micro held-out pairs: the pairwise loss,
  // accuracy (chosen scored above rejected) and the scores.
  double evaluate() override {
    if (ctx_.eval.reward.empty()) return NAN;
    const autograd::NoGradGuard no_grad;
    model_.base().set_training(false);
    double sums[5] = {0, 0, 0, 0, 0};  // loss x pairs, correct, chosen, rejected, pairs
    for_each_eval_batch(ctx_.eval.reward, o_.eval_batches, o_.batch.micro, ctx_.comm,
                        [&](const std::vector<const RewardSample*>& rows) {
                          const RewardBatch b = reward_batch(rows, ctx_.eos);
                          const PairLoss loss = pairwise_loss(model_.values(b.ids),
                                                              pair_loss_inputs(b.ids, b.lengths));
                          sums[0] += loss.loss.item() * double(rows.size());
                          for (size_t i = 0; i < rows.size(); ++i) {
                            sums[1] += loss.chosen_scores[i] > loss.rejected_scores[i];
                            sums[2] += loss.chosen_scores[i];
                            sums[3] += loss.rejected_scores[i];
                          }
                          sums[4] += double(rows.size());
                        });
    ctx_.comm.allreduce_sum(sums, 5);
    model_.base().set_training(true);
    const double n = std::max(sums[4], 1.0);
    metrics_ = {{"accuracy", sums[1] / n},
                {"chosen_score", sums[2] / n},
                {"rejected_score", sums[3] / n},
                {"score_gap", (sums[2] - sums[3]) / n}};
    return sums[0] / n;
  }
  nlohmann::ordered_json eval_metrics() const override { return metrics_; }
  bool loss_is_log_likelihood() const override { return false; }

  void save_state(train::StateMap& state) const override {
    save_common_state(state, ctx_.tokenizer, o_.lora);
  }

 private:
  StepContext& ctx_;
  const StepOptions& o_;
  RewardModel& model_;
  data::EpochOrder order_;
  double correct_ = 0, pairs_ = 0;
  nlohmann::ordered_json metrics_ = nlohmann::ordered_json::object();
};

StepResult run_sft(const StepOptions& options, train::Job& job) {
  StepOptions o = options;
  const Device device = job.pick_device(o.run.device);
  StartingModel start = load_starting_model(o.model_path, device);
  StepContext ctx(o, job, device, std::move(start.tokenizer));
  o.run.train_steps = ctx.train_steps(o.batch.global);
  kernels::MathModeGuard math(backend_for(ctx.device), o.engine.precision.math);
  nn::Bloom& model = start.model;
  set_memory(model, o);
  apply_lora(model, o.lora, o.run.seed, "the policy");
  train::Engine engine("model", ctx.comm, model.parameters(), o.engine);
  SftTask task(ctx, model);
  train::Loop loop(ctx.comm, o.run, ctx.device, engine, checkpoint_config(o, model.config()));
  loop.restore(task);
  if (job.leader() && !loop.resuming()) log::info("sft: starting from {}", o.model_path);
  train::log_engine(engine, ctx.device, ctx.comm.size());
  return finish_step(o, loop, task, ctx.comm);
}

StepResult run_reward(const StepOptions& options, train::Job& job) {
  StepOptions o = options;
  const Device device = job.pick_device(o.run.device);
  // A checkpoint that has a value head already (a reward model trained
  // before) keeps it, read once below; a policy's gets a fresh one.
  const bool has_value_head = is_turbine_checkpoint(o.model_path) &&
                              train::CheckpointStore::has_weight(o.model_path, "v_head.weight");
  StartingModel start = load_starting_model(o.model_path, device, !has_value_head);
  StepContext ctx(o, job, device, std::move(start.tokenizer));
  o.run.train_steps = ctx.train_steps(o.batch.global);
  kernels::MathModeGuard math(backend_for(ctx.device), o.engine.precision.math);
  set_memory(start.model, o);
  apply_lora(start.model, o.lora, o.run.seed, "the reward model");
  RewardModel model(std::move(start.model), o.run.seed);
  if (has_value_head) load_reward(o.model_path, model);
  train::Engine engine("model", ctx.comm, model.parameters(), o.engine);
  RewardTask task(ctx, model);
  train::Loop loop(ctx.comm, o.run, ctx.device, engine,
                   checkpoint_config(o, model.base().config()));
  loop.restore(task);
  train::log_engine(engine, ctx.device, ctx.comm.size());
  return finish_step(o, loop, task, ctx.comm);
}

}  // namespace

StepResult run_step(const RlhfOptions& options, train::Job& job) {
  switch (options.step.phase) {
    case Phase::sft:
      return options.step.visualchat ? run_visualchat_sft(options.step, job)
                                     : run_sft(options.step, job);
    case Phase::reward:
      return run_reward(options.step, job);
    case Phase::ppo:
      return run_ppo(options, job);
  }
  return {};
}

}  // namespace turbine::rlhf
