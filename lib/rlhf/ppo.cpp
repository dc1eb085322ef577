// rlhf's step 3: PPO with four models and the hybrid engine
// (DeepSpeed-Chat's DeepSpeedPPOTrainer and its main loop).
//
// One loop step is one PPO iteration: each rank answers generation_batches
// x per_device_generation_batch_size prompts with the actor (rollout.hpp),
// scores them (the reference's log-probabilities, the reward model's score,
// the critic's values), computes per-token rewards and GAE (ppo_math.hpp),
// then runs ppo_epochs passes over the experience in mini-batches of
// per_device_training_batch_size, each an actor update then a critic update
// (and an unsupervised actor update when unsup_coef > 0). Global prompt
// position i of a step is prompt order[samples + i]; rank r answers
// positions (g x world + r) x G + [0, G) of generation batch g, with one
// seed per position, so the answers do not depend on the world size.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/timer.hpp"
#include "data/loader.hpp"
#include "nn/compact.hpp"
#include "rlhf/ppo_math.hpp"
#include "rlhf/rollout.hpp"
#include "rlhf/steps.hpp"
#include "train/checkpoint.hpp"

namespace turbine::rlhf {

namespace fs = std::filesystem;

namespace {

// A generation batch scored: everything the updates need, on the host.
struct Experience {
  Tensor ids;  // (B, W) right-packed
  std::vector<int64_t> starts, answer_lengths;
  int64_t width = 0;                                            // answer region width n
  Tensor old_log_probs, old_values, advantages, returns, mask;  // (B, n)
};

// Rows [begin, begin + count) of a host tensor.
Tensor rows(const Tensor& t, int64_t begin, int64_t count) {
  return t.narrow(0, begin, count).contiguous();
}
template <typename T>
std::vector<T> rows(const std::vector<T>& v, int64_t begin, int64_t count) {
  return std::vector<T>(v.begin() + begin, v.begin() + begin + count);
}

// Words shared by an answer and the reference, as an F1 score (bag of
// lowercase words): the task check that does not go through the reward model.
double overlap_f1(const std::string& answer, const std::string& reference) {
  const auto words = [](const std::string& text) {
    std::map<std::string, int> bag;
    std::stringstream in(text);
    std::string w;
    while (in >> w) {
      std::string clean;
      for (const char c : w)
        if (std::isalnum(static_cast<unsigned char>(c)))
          clean += char(std::tolower(static_cast<unsigned char>(c)));
      if (!clean.empty()) ++bag[clean];
    }
    return bag;
  };
  const auto a = words(answer), r = words(reference);
  int64_t common = 0, na = 0, nr = 0;
  for (const auto& [w, n] : a) {
    na += n;
    const auto it = r.find(w);
    if (it != r.end()) common += std::min(n, it->second);
  }
  for (const auto& [w, n] : r) nr += n;
  if (common == 0) return 0;
  const double p = double(common) / double(na), q = double(common) / double(nr);
  return 2 * p * q / (p + q);
}

class PpoTask final : public train::TrainTask {
 public:
  PpoTask(StepContext& ctx, const PpoOptions& p, nn::Bloom& actor, RewardModel& critic,
          const nn::Bloom& reference, const RewardModel& reward, train::Engine& critic_engine,
          nn::Bloom* ema)
      : ctx_(ctx),
        o_(ctx.o),
        p_(p),
        actor_(actor),
        critic_(critic),
        reference_(reference),
        reward_(reward),
        critic_engine_(critic_engine),
        ema_(ema),
        order_(int64_t(ctx.train.prompts.size()), o_.run.seed, true, 0x99au) {
    if (p_.unsup_coef > 0) {
      unsup_data_.emplace(data::TokenDataset::open(p_.unsup_data));
      TURBINE_CHECK(unsup_data_->vocab_size() == actor.config().vocab_size,
                    "unsup_data {} has vocabulary {}, the actor {}: prepare it with the model's "
                    "tokenizer",
                    p_.unsup_data, unsup_data_->vocab_size(), actor.config().vocab_size);
      unsup_loader_.emplace(*unsup_data_, data::Split::train, p_.unsup_seq_len, o_.run.seed, true);
    }
  }

  int64_t prompts_per_step() const {
    return p_.generation_batches * p_.generation_batch * ctx_.comm.size();
  }
  int64_t updates_per_step() const {
    return p_.ppo_epochs * p_.generation_batches * p_.generation_batch / p_.training_batch /
           o_.batch.accumulation;
  }

  double learning_rate(const train::LoopCounters& at) override {
    return o_.schedule.schedule.at(at.step);
  }
  Tensor micro_batch_loss(const train::LoopCounters&, int64_t) override {
    TURBINE_FAIL("PpoTask runs its own steps");
  }
  train::StepWork step_work(const train::LoopCounters&) override { return {}; }

  train::StepOutcome run_step(dist::Communicator& comm, train::Engine& actor_engine,
                              train::LoopCounters& counters) override {
    Timer timer;
    train::StepOutcome out;
    out.lr = o_.schedule.schedule.at(counters.step);
    const double critic_lr = p_.critic_schedule.schedule.at(counters.step);
    // 1. Experience.
    Stats stats;
    std::vector<Experience> experience;
    for (int64_t g = 0; g < p_.generation_batches; ++g)
      experience.push_back(make_experience(counters, g, stats));
    const double generate_s = stats.generate_s, score_s = timer.seconds() - generate_s;
    // 2. Updates: ppo_epochs passes over the experience, mini-batch by mini-batch.
    Timer train_timer;
    const int64_t per_experience = p_.generation_batch / p_.training_batch;
    std::vector<std::pair<int64_t, int64_t>> minibatches;  // (experience, first row)
    for (int64_t e = 0; e < int64_t(experience.size()); ++e)
      for (int64_t k = 0; k < per_experience; ++k)
        minibatches.push_back({e, k * p_.training_batch});
    const int64_t accumulation = o_.batch.accumulation;
    double actor_loss_sum = 0, critic_loss_sum = 0, unsup_sum = 0, clip_sum[2] = {0, 0};
    int64_t updates = 0;
    train::Engine::StepResult critic_update;
    for (int64_t epoch = 0; epoch < p_.ppo_epochs; ++epoch) {
      for (size_t first = 0; first < minibatches.size(); first += size_t(accumulation)) {
        actor_.set_training(true);
        actor_engine.zero_grad();
        for (int64_t a = 0; a < accumulation; ++a) {
          const auto [e, row] = minibatches[first + size_t(a)];
          const Experience& x = experience[size_t(e)];
          const Tensor ids = rows(x.ids, row, p_.training_batch);
          const auto starts = rows(x.starts, row, p_.training_batch);
          const Tensor old = rows(x.old_log_probs, row, p_.training_batch),
                       mask = rows(x.mask, row, p_.training_batch);
          const Tensor log_probs = region_log_probs(actor_, ids, starts, x.width);
          const Tensor loss = actor_loss(log_probs, old, rows(x.advantages, row, p_.training_batch),
                                         mask, p_.constants.cliprange);
          actor_engine.backward(loss, a);
          actor_loss_sum += loss.item();
          clip_sum[0] += policy_clip_fraction(log_probs, old, mask, p_.constants.cliprange);
        }
        out.update = actor_engine.step(out.lr);
        update_ema();
        critic_engine_.zero_grad();
        for (int64_t a = 0; a < accumulation; ++a) {
          const auto [e, row] = minibatches[first + size_t(a)];
          const Experience& x = experience[size_t(e)];
          const Tensor ids = rows(x.ids, row, p_.training_batch);
          const Tensor values =
              critic_.region_values(ids, rows(x.starts, row, p_.training_batch), x.width);
          const Tensor old = rows(x.old_values, row, p_.training_batch),
                       ret = rows(x.returns, row, p_.training_batch),
                       mask = rows(x.mask, row, p_.training_batch);
          const Tensor loss = critic_loss(values, old, ret, mask, p_.constants.cliprange_value);
          critic_engine_.backward(loss, a);
          critic_loss_sum += loss.item();
          clip_sum[1] += value_clip_fraction(values, old, ret, mask, p_.constants.cliprange_value);
        }
        critic_update = critic_engine_.step(critic_lr);
        if (unsup_loader_)
          unsup_sum += unsupervised_update(actor_engine, counters, updates, out.lr);
        autograd::clear_tape();
        ++updates;
      }
    }
    const double train_s = train_timer.seconds();
    // 3. What the step did, over all ranks.
    const double micro = double(updates * accumulation);
    double sums[] = {actor_loss_sum / micro, critic_loss_sum / micro, clip_sum[0] / micro,
                     clip_sum[1] / micro, unsup_sum / double(std::max<int64_t>(updates, 1))};
    comm.allreduce_sum(sums, 5);
    const double world = comm.size();
    stats.reduce(comm);
    out.loss = sums[0] / world;
    out.work.samples = prompts_per_step();
    out.work.tokens = int64_t(stats.answer_tokens);
    out.work.flops = stats.flops * double(p_.ppo_epochs);
    const double reward_mean = stats.score_sum / stats.rows;
    out.work.metrics = {
        {"reward_mean", reward_mean},
        {"reward_std",
         std::sqrt(std::max(0.0, stats.score_sq / stats.rows - reward_mean * reward_mean))},
        {"kl", stats.kl_sum / stats.answer_tokens},
        {"actor_loss", sums[0] / world},
        {"critic_loss", sums[1] / world},
        {"policy_clip_fraction", sums[2] / world},
        {"value_clip_fraction", sums[3] / world},
        {"value_mean", stats.value_sum / stats.answer_tokens},
        {"advantage_mean", stats.adv_sum / stats.answer_tokens},
        {"advantage_std",
         std::sqrt(std::max(0.0, stats.adv_sq / stats.answer_tokens -
                                     std::pow(stats.adv_sum / stats.answer_tokens, 2)))},
        {"return_mean", stats.return_sum / stats.answer_tokens},
        {"answer_len", stats.answer_tokens / stats.rows},
        {"eos_fraction", stats.eos_rows / stats.rows},
        {"critic_grad_norm", critic_update.grad_norm},
        {"critic_lr", critic_lr},
        {"generate_s", stats.generate_s / world},
        {"score_s", score_s},
        {"train_s", train_s},
        {"generate_tokens_per_s", stats.answer_tokens / std::max(stats.generate_s / world, 1e-9)},
        {"hybrid_engine", p_.hybrid_engine}};
    if (unsup_loader_) out.work.metrics["unsup_loss"] = sums[4] / world;
    counters.step += 1;
    counters.samples += out.work.samples;
    counters.tokens += out.work.tokens;
    counters.flops += out.work.flops;
    out.seconds = timer.seconds();
    return out;
  }

  // Mean reward-model score, KL to the reference and word overlap with the
  // true answer of the first eval.batches x G x world held-out prompts (the
  // same ones for any world size at the same global batch), answered with
  // seeds fixed per prompt: comparable from step to step.
  double evaluate() override {
    if (ctx_.eval.prompts.empty()) return NAN;
    const autograd::NoGradGuard no_grad;
    const int rank = ctx_.comm.rank(), world = ctx_.comm.size();
    const int64_t total = std::min<int64_t>(o_.eval_batches * p_.generation_batch * world,
                                            int64_t(ctx_.eval.prompts.size()));
    const int64_t begin = total * rank / world, end = total * (rank + 1) / world;
    double sums[5] = {0, 0, 0, 0, 0};  // score, overlap, answer tokens, kl, rows
    for (int64_t first = begin; first < end; first += p_.generation_batch) {
      const int64_t count = std::min(p_.generation_batch, end - first);
      std::vector<std::vector<int32_t>> prompts;
      std::vector<uint64_t> seeds;
      for (int64_t i = first; i < first + count; ++i) {
        prompts.push_back(ctx_.eval.prompts[size_t(i)].prompt);
        seeds.push_back(row_seed(0xe7a1ull, i));
      }
      const Rollout r = rollout(prompts, seeds);
      const std::vector<float> scores = score(r);
      const Tensor lp = region_log_probs(actor_, r.ids, r.starts(), r.answer_width);
      const Tensor ref = region_log_probs(reference_, r.ids, r.starts(), r.answer_width);
      const auto a = lp.to_vector<float>(), b = ref.to_vector<float>();
      for (int64_t j = 0; j < count; ++j) {
        sums[0] += scores[size_t(j)];
        std::vector<int32_t> answer = r.answer(j);
        if (!answer.empty() && answer.back() == ctx_.eos) answer.pop_back();
        sums[1] +=
            overlap_f1(ctx_.tokenizer.decode(answer), ctx_.eval.prompts[size_t(first + j)].chosen);
        sums[2] += double(r.answer_lengths[size_t(j)]);
        for (int64_t k = 0; k < r.answer_lengths[size_t(j)]; ++k)
          sums[3] += double(a[size_t(j * r.answer_width + k)]) - b[size_t(j * r.answer_width + k)];
        sums[4] += 1;
      }
      if (first == 0) last_eval_sample_ = describe(r, 0);
    }
    ctx_.comm.allreduce_sum(sums, 5);
    const double n = std::max(sums[4], 1.0);
    metrics_ = {{"eval_reward", sums[0] / n},
                {"eval_overlap_f1", sums[1] / n},
                {"eval_answer_len", sums[2] / n},
                {"eval_kl", sums[3] / std::max(sums[2], 1.0)}};
    return NAN;
  }
  nlohmann::ordered_json eval_metrics() const override { return metrics_; }

  std::string sample(int64_t) override { return last_sample_; }

  void save_state(train::StateMap& state) const override {
    save_common_state(state, ctx_.tokenizer, o_.lora);
    critic_engine_.save_state(state);
  }
  void load_state(const train::StateMap& state) override { critic_engine_.load_state(state); }

 private:
  struct Stats {
    double rows = 0, answer_tokens = 0, eos_rows = 0, score_sum = 0, score_sq = 0, kl_sum = 0,
           value_sum = 0, adv_sum = 0, adv_sq = 0, return_sum = 0, generate_s = 0, flops = 0;
    void reduce(dist::Communicator& comm) {
      double all[] = {rows,      answer_tokens, eos_rows, score_sum,  score_sq,   kl_sum,
                      value_sum, adv_sum,       adv_sq,   return_sum, generate_s, flops};
      comm.allreduce_sum(all, 12);
      rows = all[0], answer_tokens = all[1], eos_rows = all[2], score_sum = all[3];
      score_sq = all[4], kl_sum = all[5], value_sum = all[6], adv_sum = all[7], adv_sq = all[8];
      return_sum = all[9], generate_s = all[10], flops = all[11];
    }
  };

  uint64_t row_seed(uint64_t salt, int64_t position) const {
    const auto r = philox4x32(o_.run.seed, salt, uint64_t(position));
    return (uint64_t(r[0]) << 32) | r[1];
  }

  // The actor answers: the hybrid engine merges LoRA adapters for the phase.
  Rollout rollout(const std::vector<std::vector<int32_t>>& prompts,
                  const std::vector<uint64_t>& seeds) {
    RolloutOptions r;
    r.max_answer = o_.tokens.max_answer_seq_len;
    r.sampling = p_.sampling;
    r.kv_cache = p_.hybrid_engine;
    r.eos = ctx_.eos;
    r.pad = ctx_.eos;
    actor_.set_training(false);
    const bool merge = p_.hybrid_engine && o_.lora.dim > 0;
    if (merge) nn::merge_lora(actor_, true);
    Rollout out = generate_rollout(actor_, prompts, seeds, r);
    if (merge) nn::merge_lora(actor_, false);
    actor_.set_training(true);
    return out;
  }

  // The reward model's score at each row's last answer token.
  std::vector<float> score(const Rollout& r) const {
    std::vector<int64_t> last;
    for (size_t b = 0; b < r.prompt_lengths.size(); ++b)
      last.push_back(r.prompt_lengths[b] + r.answer_lengths[b] - 1);
    return reward_.region_values(r.ids, last, 1).to_vector<float>();
  }

  std::string describe(const Rollout& r, int64_t row) const {
    const std::vector<int64_t> all = r.ids.to_vector<int64_t>();
    const int64_t w = r.ids.dim(1);
    const std::vector<int32_t> prompt(all.begin() + row * w,
                                      all.begin() + row * w + r.prompt_lengths[size_t(row)]);
    std::vector<int32_t> answer = r.answer(row);
    if (!answer.empty() && answer.back() == ctx_.eos) answer.pop_back();
    return ctx_.tokenizer.decode(prompt) + " ->" + ctx_.tokenizer.decode(answer);
  }

  Experience make_experience(const train::LoopCounters& at, int64_t g, Stats& stats) {
    const autograd::NoGradGuard no_grad;
    const int64_t G = p_.generation_batch;
    const int64_t first = at.samples + (g * ctx_.comm.size() + ctx_.comm.rank()) * G;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<uint64_t> seeds;
    for (int64_t i = 0; i < G; ++i) {
      prompts.push_back(ctx_.train.prompts[size_t(order_.at(first + i))].prompt);
      seeds.push_back(row_seed(0x9e11ull, first + i));
    }
    const Rollout r = rollout(prompts, seeds);
    stats.generate_s += r.seconds;
    if (g == 0 && ctx_.comm.rank() == 0) last_sample_ = describe(r, 0);
    Experience x;
    x.ids = r.ids;
    x.starts = r.starts();
    x.answer_lengths = r.answer_lengths;
    x.width = r.answer_width;
    x.old_log_probs = region_log_probs(actor_, r.ids, x.starts, x.width).to(Device::cpu());
    const Tensor ref = region_log_probs(reference_, r.ids, x.starts, x.width).to(Device::cpu());
    const std::vector<float> scores = score(r);
    x.old_values = critic_.region_values(r.ids, x.starts, x.width).to(Device::cpu());
    const Tensor rewards =
        per_token_rewards(x.old_log_probs, ref, scores, x.answer_lengths, p_.constants);
    const Gae gae = advantages_and_returns(x.old_values, rewards, x.answer_lengths, p_.constants);
    x.advantages = gae.advantages;
    x.returns = gae.returns;
    x.mask = answer_mask(x.answer_lengths, x.width);
    // Statistics over the answers' tokens.
    const auto lp = x.old_log_probs.to_vector<float>(), rf = ref.to_vector<float>(),
               v = x.old_values.to_vector<float>(), adv = x.advantages.to_vector<float>(),
               ret = x.returns.to_vector<float>();
    const nn::BloomConfig& c = actor_.config();
    for (int64_t b = 0; b < G; ++b) {
      const int64_t len = x.answer_lengths[size_t(b)];
      stats.rows += 1;
      stats.answer_tokens += double(len);
      stats.score_sum += scores[size_t(b)];
      stats.score_sq += double(scores[size_t(b)]) * scores[size_t(b)];
      stats.eos_rows += r.answer(b).back() == ctx_.eos;
      for (int64_t k = 0; k < len; ++k) {
        const size_t i = size_t(b * x.width + k);
        stats.kl_sum += double(lp[i]) - rf[i];
        stats.value_sum += v[i];
        stats.adv_sum += adv[i];
        stats.adv_sq += double(adv[i]) * adv[i];
        stats.return_sum += ret[i];
      }
      // Training FLOPs of the row: actor and critic forward and backward;
      // scoring adds three forwards (reference, reward, critic) and the
      // actor's (a forward is a third of forward + backward).
      const double seq = c.train_flops_per_sequence(r.prompt_lengths[size_t(b)] + len, {}, 0);
      stats.flops += 2 * seq + (4.0 / 3.0) * seq / double(p_.ppo_epochs);
    }
    return x;
  }

  void update_ema() {
    if (!ema_) return;
    const autograd::NoGradGuard no_grad;
    const nn::ParameterList& from = actor_.parameters();
    const nn::ParameterList& to = ema_->parameters();
    const float d = float(p_.ema_decay);
    for (size_t i = 0; i < from.size(); ++i)
      Tensor(to[i].tensor).copy_from(ops::add(to[i].tensor, from[i].tensor, d, 1.0f - d));
  }

  // DeepSpeed-Chat's train_unsupervised: unsup_coef x the next-token loss of
  // a batch of windows, a separate actor update. Returns the loss.
  double unsupervised_update(train::Engine& engine, const train::LoopCounters& at, int64_t update,
                             double lr) {
    const int64_t index =
        (at.step * updates_per_step() + update) * ctx_.comm.size() + ctx_.comm.rank();
    const data::Batch b = unsup_loader_->read(index * p_.training_batch, p_.training_batch);
    engine.zero_grad();
    const Tensor loss = actor_.loss(b.ids, b.targets);
    const double value = loss.item();
    // One micro-batch as the last of the engine's accumulation (which starts
    // the reduction); backward divides by the accumulation, so it is undone.
    const int64_t accumulation = o_.batch.accumulation;
    engine.backward(ag::scale(loss, float(p_.unsup_coef * double(accumulation))), accumulation - 1);
    engine.step(lr);
    update_ema();
    return value;
  }

  StepContext& ctx_;
  const StepOptions& o_;
  const PpoOptions& p_;
  nn::Bloom& actor_;
  RewardModel& critic_;
  const nn::Bloom& reference_;
  const RewardModel& reward_;
  train::Engine& critic_engine_;
  nn::Bloom* ema_;
  data::EpochOrder order_;
  std::optional<data::TokenDataset> unsup_data_;
  std::optional<data::WindowLoader> unsup_loader_;
  std::string last_sample_, last_eval_sample_;
  nlohmann::ordered_json metrics_ = nlohmann::ordered_json::object();
};

}  // namespace

StepResult run_ppo(const RlhfOptions& options, train::Job& job) {
  StepOptions o = options.step;
  const PpoOptions& p = options.ppo;
  const Device device = job.pick_device(o.run.device);
  StartingModel start = load_starting_model(o.model_path, device);
  StepContext ctx(o, job, device, start.tokenizer);
  const int64_t prompts_per_step = p.generation_batches * p.generation_batch * ctx.comm.size();
  o.run.train_steps = ctx.train_steps(prompts_per_step);
  if (p.print_answers) o.run.sample_interval = p.print_answers_interval;
  kernels::MathModeGuard math(backend_for(device), o.engine.precision.math);
  nn::Bloom& actor = start.model;
  set_memory(actor, o);
  // The reference: the SFT model as it starts, frozen (offloaded: in host memory).
  nn::Bloom reference = p.offload_reference && !device.is_cpu()
                            ? load_starting_model(o.model_path, Device::cpu()).model
                            : actor.frozen_copy();
  reference.set_trainable(false);
  apply_lora(actor, o.lora, o.run.seed, "the actor");
  // The critic and the reward model both start as the reward model (its
  // weights read once, by load_reward).
  StartingModel critic_start = load_starting_model(p.critic_model_path, device, false);
  TURBINE_CHECK(
      critic_start.model.config().vocab_size == actor.config().vocab_size,
      "the reward model {} has vocabulary {}, the actor {} {}: both must use one tokenizer",
      p.critic_model_path, critic_start.model.config().vocab_size, o.model_path,
      actor.config().vocab_size);
  set_memory(critic_start.model, o);
  RewardModel critic(std::move(critic_start.model), o.run.seed);
  load_reward(p.critic_model_path, critic);
  RewardModel reward = critic.frozen_copy();
  if (p.frozen_dtype != "f32") {
    // infer's compact weights for the frozen models' linear layers.
    const DType type = p.frozen_dtype == "int8" ? DType::i8 : dtype_from_name(p.frozen_dtype);
    const nn::CompactReport a = nn::compact_linears(reference, type);
    const nn::CompactReport b = nn::compact_linears(reward.base(), type);
    reward.refresh_parameters();
    if (job.leader())
      log::info("frozen models in {}: {} linear layers, {:.1f} MiB -> {:.1f} MiB", p.frozen_dtype,
                a.layers + b.layers, double(a.bytes_before + b.bytes_before) / (1 << 20),
                double(a.bytes_after + b.bytes_after) / (1 << 20));
  }
  if (p.critic_lora.dim > 0) {
    apply_lora(critic.base(), p.critic_lora, o.run.seed + 1, "the critic");
    critic.refresh_parameters();
  }
  std::optional<nn::Bloom> ema;
  if (p.ema) ema.emplace(actor.frozen_copy());

  train::Engine actor_engine("model", ctx.comm, actor.parameters(), o.engine);
  train::Engine critic_engine("critic", ctx.comm, critic.parameters(), p.critic_engine);
  PpoTask task(ctx, p, actor, critic, reference, reward, critic_engine, ema ? &*ema : nullptr);
  train::Loop loop(ctx.comm, o.run, device, actor_engine, checkpoint_config(o, actor.config()));
  loop.add_part(critic_engine.checkpoint_part());
  if (ema) loop.add_part({"model_ema", &ema->parameters(), nullptr});
  loop.restore(task);
  if (job.leader()) {
    const nn::BloomConfig& c = actor.config();
    log::info(
        "ppo: actor and reference from {}, critic and reward from {}; {:.2f}M parameters "
        "each; {} prompts per step ({} x {} per rank), {} updates of {} rows per step; "
        "generation {}",
        o.model_path, p.critic_model_path, c.parameter_count() / 1e6, prompts_per_step,
        p.generation_batches, p.generation_batch, task.updates_per_step(),
        p.training_batch * o.batch.accumulation,
        p.hybrid_engine ? "with the hybrid engine (KV cache on the actor's weights)"
                        : "by recomputation (enable_hybrid_engine: false)");
    log::info("frozen: reference and reward hold no gradients or optimizer state{}",
              p.offload_reference && !device.is_cpu() ? "; the reference runs in host memory" : "");
  }
  train::log_engine(actor_engine, device, ctx.comm.size());
  if (!loop.resuming() && loop.counters().step == 0) {
    // The starting policy's evaluation: what PPO is measured against.
    task.evaluate();
    if (job.leader()) {
      log::info("step 0 (the SFT policy): {}", task.eval_metrics().dump());
      fs::create_directories(o.run.output_dir);
      std::ofstream(fs::path(o.run.output_dir) / "baseline.json")
          << task.eval_metrics().dump() << "\n";
    }
  }
  return finish_step(o, loop, task, ctx.comm);
}

}  // namespace turbine::rlhf
