// The rlhf job's schema, per-step config views and options.
#include "rlhf/config.hpp"

#include <filesystem>
#include <sstream>

#include "core/error.hpp"

namespace turbine::rlhf {

namespace fs = std::filesystem;

namespace {
constexpr const char* kSteps[] = {"sft", "reward", "ppo"};

void declare_lora(io::ConfigSchema& s, const std::string& prefix, const std::string& whose) {
  s.integer(prefix + "lora_dim", 0, "LoRA rank of " + whose + "'s adapters; 0: no LoRA")
      .at_least(0);
  s.string(prefix + "lora_module_name", "",
           "LoRA wraps the linear layers whose names contain this (\"\" all; \"mlp.\", "
           "\"self_attention.\")");
}
}  // namespace

io::ConfigSchema rlhf_schema() {
  io::ConfigSchema s;
  train::declare_training_job(s, "rlhf");
  train::declare_activation_memory(s);
  // DeepSpeed-Chat's data keys.
  s.string("data_path", "data/kjv-pairs",
           "folder with train.jsonl and eval.jsonl of {prompt, chosen, rejected} lines "
           "(tools/make-preference-data)");
  s.string("data_split", "2,4,4", "shares of the pairs for SFT, reward model and PPO");
  s.integer("max_seq_len", 256, "SFT and reward sequences are cut at this many tokens").at_least(2);
  s.integer("max_prompt_seq_len", 128, "PPO prompts longer than this are left out").at_least(1);
  s.integer("max_answer_seq_len", 64, "PPO answers are at most this many tokens").at_least(1);
  s.boolean("train_on_prompt", false,
            "SFT: the prompt's tokens are targets too (DeepSpeed-Chat's step 1 trains on them)");
  s.string("end_of_conversation_token", "<|endoftext|>",
           "ends every answer (and a generated one); one token of the model's tokenizer; \"\": "
           "its end-of-text token");
  s.integer("num_train_epochs", 0,
            "> 0: train_steps follow from the step's data (epochs over its samples)")
      .at_least(0);
  s.integer("eval.batches", 8, "evaluation micro-batches in all (shared among ranks)").at_least(1);
  s.integer("sample.max_new_tokens", 48, "SFT: tokens of the sample answer").at_least(1);
  s.ignored("num_padding_at_beginning",
            "sequences carry their lengths, so no padding token is looked for");
  s.ignored("print_loss", "losses are in metrics.jsonl and the progress line");
  // Models: step 1 and 2 start from model_name_or_path; step 3's actor and
  // critic from actor_model_name_or_path and critic_model_name_or_path.
  s.string("model_name_or_path", "",
           "sft, reward: the checkpoint to start from (pretrain's, or convert-hf's import of a "
           "Hugging Face BLOOM)");
  s.string("actor_model_name_or_path", "", "ppo: the SFT checkpoint (actor and reference)");
  s.string("critic_model_name_or_path", "", "ppo: the reward checkpoint (critic and reward)");
  declare_lora(s, "", "the step's model");
  declare_lora(s, "actor_", "PPO's actor");
  declare_lora(s, "critic_", "PPO's critic");
  s.number("lora_scaling", 1.0, "LoRA's alpha / r: the adapters' update is scaled by it")
      .at_least(0);
  s.boolean("only_optimize_lora", false,
            "train only the LoRA adapters (the base weights stay frozen, no optimizer state)");
  // VisualChat (DeepSpeed-VisualChat) in the sft step.
  s.string("model.type", "bloom",
           "bloom, or visualchat: images in the dialogues (sft only; data_path holds "
           "tools/make-visualchat-data's conversations)")
      .one_of({io::ConfigValue(std::string("bloom")), io::ConfigValue(std::string("visualchat"))});
  s.string("visualchat.encoder", "",
           "the vision encoder: `rlhf encoder`'s checkpoint (a vit), frozen");
  s.string("visualchat.projection", "baseline",
           "image features to embeddings: baseline (linear + LayerNorm) or vit (a ViT block first)")
      .one_of({io::ConfigValue(std::string("baseline")), io::ConfigValue(std::string("vit"))});
  s.string("visualchat.attention", "mmca",
           "mmca (multi-modal causal attention) or causal (plain causal attention, to compare)")
      .one_of({io::ConfigValue(std::string("mmca")), io::ConfigValue(std::string("causal"))});
  s.integer("visualchat.max_images", 8, "images per conversation at most").at_least(1);
  s.integer("visualchat.eval_conversations", 300,
            "evaluation conversations whose answers are generated and scored at the end; 0: none")
      .at_least(0);
  s.integer("visualchat.answer_tokens", 12, "tokens of a generated answer at most").at_least(1);
  // PPO (DeepSpeed-Chat's step 3).
  s.integer("per_device_generation_batch_size", 4, "prompts each rank answers per generation batch")
      .at_least(1);
  s.integer("per_device_training_batch_size", 4,
            "PPO mini-batch on each rank (must divide per_device_generation_batch_size)")
      .at_least(1);
  s.integer("generation_batches", 1, "generation batches per PPO step, trained on together")
      .at_least(1);
  s.integer("ppo_epochs", 1, "passes over each step's generated experience").at_least(1);
  s.number("actor_learning_rate", 9.65e-6, "the actor's peak learning rate").at_least(0);
  s.number("critic_learning_rate", 5e-6, "the critic's peak learning rate").at_least(0);
  s.number("actor_weight_decay", 0.0, "the actor's weight decay").at_least(0);
  s.number("critic_weight_decay", 0.0, "the critic's weight decay").at_least(0);
  s.integer("actor_zero_stage", -1, "the actor's ZeRO stage; -1: zero_optimization.stage")
      .one_of({int64_t(-1), int64_t(0), int64_t(1), int64_t(2)});
  s.integer("critic_zero_stage", -1, "the critic's ZeRO stage; -1: zero_optimization.stage")
      .one_of({int64_t(-1), int64_t(0), int64_t(1), int64_t(2)});
  s.boolean("enable_hybrid_engine", true,
            "generate with the KV cache on the actor's training weights; false: recompute the "
            "whole sequence for every token");
  s.boolean("offload_reference_model", false,
            "on a GPU, keep the frozen reference model in host memory and run it there");
  s.string("frozen_models_dtype", "f32",
           "weights of the frozen reference and reward models' linear layers: f32, or infer's "
           "bf16, f16, int8 (less memory; their scores then differ by rounding)")
      .one_of({io::ConfigValue(std::string("f32")), io::ConfigValue(std::string("bf16")),
               io::ConfigValue(std::string("f16")), io::ConfigValue(std::string("int8"))});
  s.boolean("enable_ema", false,
            "keep an exponential moving average of the actor (saved beside it)");
  s.number("ema_decay", 0.992, "the EMA's decay").at_least(0).at_most(1);
  s.number("unsup_coef", 0.0, "weight of the unsupervised (pretraining) loss mixed into PPO")
      .at_least(0);
  s.string("unsup_data", "", "token data set (tools/prepare-data) for the unsupervised loss");
  s.integer("unsup_seq_len", 128, "tokens per unsupervised window").at_least(1);
  s.number("kl_ctl", 0.1, "weight of the per-token KL penalty to the reference").at_least(0);
  s.number("clip_reward_value", 5.0, "the reward-model score is clipped to +-this").at_least(0);
  s.number("cliprange", 0.2, "PPO's policy ratio clip").at_least(0);
  s.number("cliprange_value", 0.2, "PPO's value clip").at_least(0);
  s.number("gamma", 1.0, "GAE discount").at_least(0).at_most(1);
  s.number("lam", 0.95, "GAE lambda").at_least(0).at_most(1);
  s.number("generation.temperature", 1.0, "rollout sampling temperature; 0: greedy").at_least(0);
  s.integer("generation.top_k", 0, "rollouts sample among the k likeliest tokens; 0: all")
      .at_least(0);
  s.number("generation.top_p", 1.0, "rollouts' nucleus; 1: off").at_least(1e-6).at_most(1);
  s.boolean("print_answers", false, "print a prompt and its generated answer");
  s.integer("print_answers_interval", 1, "... every this many PPO steps").at_least(1);
  return s;
}

namespace {

bool is_step_section(const std::string& key) {
  return key == "sft" || key == "reward" || key == "ppo";
}

// `over` laid on `base`: mappings merge key by key, anything else replaces.
// The original key nodes are kept, so errors still point at their lines.
// A mapping's key as text; a list, mapping or null as a key is refused.
std::string key_name(const YAML::Node& key, const std::string& path) {
  TURBINE_CHECK(key.IsScalar(), "{}:{}: a key is not a name", path, key.Mark().line + 1);
  return key.Scalar();
}

YAML::Node merge(const YAML::Node& base, const YAML::Node& over, const std::string& path) {
  if (!base.IsMap() || !over.IsMap()) return over;
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& item : base) {
    const YAML::Node replacement = over[key_name(item.first, path)];
    if (!replacement) out.force_insert(item.first, item.second);
  }
  for (const auto& item : over) {
    const YAML::Node original = base[key_name(item.first, path)];
    out.force_insert(item.first, original ? merge(original, item.second, path) : item.second);
  }
  return out;
}

bool has_path(const YAML::Node& root, const std::string& dotted) {
  YAML::Node node = YAML::Clone(root);
  std::stringstream parts(dotted);
  std::string part;
  while (std::getline(parts, part, '.')) {
    if (!node.IsMap() || !node[part]) return false;
    node = node[part];
  }
  return true;
}

}  // namespace

io::Config step_config(const std::string& path, Phase phase,
                       const std::vector<std::string>& overrides,
                       const std::vector<std::string>& chained) {
  const std::string step = phase_name(phase);
  const YAML::Node root = path.empty() ? YAML::Node(YAML::NodeType::Map) : io::read_yaml_file(path);
  TURBINE_CHECK(root.IsMap() || root.IsNull(), "{}: the config must be a mapping", path);
  YAML::Node shared(YAML::NodeType::Map);
  YAML::Node section;
  if (root.IsMap())
    for (const auto& item : root) {
      const std::string key = key_name(item.first, path);
      if (key == step)
        section = item.second;
      else if (!is_step_section(key))
        shared.force_insert(item.first, item.second);
    }
  TURBINE_CHECK(!section || section.IsMap() || section.IsNull(),
                "{}:{}: `{}:` must be a mapping of the step's keys", path, section.Mark().line + 1,
                step);
  const YAML::Node view = section && section.IsMap() ? merge(shared, section, path) : shared;

  // Shared overrides first, then the step's own; a chained default yields
  // only to the step's own section or overrides, not to shared values.
  std::vector<std::string> shared_flags, own_flags;
  const auto key_of = [](const std::string& flag) { return flag.substr(0, flag.find('=')); };
  for (const std::string& flag : overrides) {
    const std::string key = key_of(flag);
    const std::string first = key.substr(0, key.find('.'));
    if (first == step && key.size() > step.size())
      own_flags.push_back(flag.substr(step.size() + 1));
    else if (!is_step_section(first))
      shared_flags.push_back(flag);
  }
  std::vector<std::string> all = shared_flags;
  for (const std::string& flag : chained) {
    const std::string key = key_of(flag);
    const bool given = (section && has_path(section, key)) ||
                       std::any_of(own_flags.begin(), own_flags.end(),
                                   [&](const std::string& f) { return key_of(f) == key; });
    if (!given) all.push_back(flag);
  }
  all.insert(all.end(), own_flags.begin(), own_flags.end());
  const std::string origin = path.empty() ? std::string("(no config file)") : path;
  return io::Config::from_yaml(view, origin, rlhf_schema(), all);
}

std::string step_dir(const std::string& output_dir, Phase phase) {
  return (fs::path(output_dir) / phase_name(phase)).string();
}

namespace {

std::vector<double> parse_split(const io::Config& c) {
  const std::string text = c.get<std::string>("data_split");
  std::vector<double> out;
  std::stringstream parts(text);
  std::string part;
  while (std::getline(parts, part, ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stod(part, &used));
      if (used != part.size() || out.back() < 0) throw std::invalid_argument("");
    } catch (const std::exception&) {
      c.fail("data_split", fmt::format("data_split '{}' must be three non-negative numbers "
                                       "separated by commas, e.g. 2,4,4",
                                       text));
    }
  }
  if (out.size() != 3 || out[0] + out[1] + out[2] <= 0)
    c.fail("data_split",
           fmt::format("data_split '{}' must be three shares (SFT, reward, PPO) with a positive "
                       "sum, e.g. 2,4,4",
                       text));
  return out;
}

LoraOptions lora_from(const io::Config& c, const std::string& prefix) {
  LoraOptions o;
  o.dim = c.get<int64_t>(prefix + "lora_dim");
  o.module_name = c.get<std::string>(prefix + "lora_module_name");
  o.scaling = c.get<double>("lora_scaling");
  o.only_optimize = c.get<bool>("only_optimize_lora");
  if (o.only_optimize && o.dim == 0)
    c.fail("only_optimize_lora",
           fmt::format("only_optimize_lora needs LoRA: set {}lora_dim > 0", prefix));
  return o;
}

// PPO's keys. The actor's engine, batch and schedule in `o` become PPO's:
// mini-batches of per_device_training_batch_size, actor_learning_rate, the
// actor's ZeRO stage.
PpoOptions ppo_options_from(const io::Config& c, StepOptions& o, int world) {
  PpoOptions p;
  p.critic_model_path = c.get<std::string>("critic_model_name_or_path");
  if (p.critic_model_path.empty())
    c.fail("critic_model_name_or_path",
           "ppo needs the reward model: set critic_model_name_or_path to `rlhf reward`'s "
           "checkpoint");
  p.critic_lora = lora_from(c, "critic_");
  p.generation_batch = c.get<int64_t>("per_device_generation_batch_size");
  p.training_batch = c.get<int64_t>("per_device_training_batch_size");
  if (p.generation_batch % p.training_batch != 0)
    c.fail("per_device_training_batch_size",
           fmt::format("per_device_training_batch_size {} must divide "
                       "per_device_generation_batch_size {}",
                       p.training_batch, p.generation_batch));
  p.generation_batches = c.get<int64_t>("generation_batches");
  const int64_t minibatches = p.generation_batches * p.generation_batch / p.training_batch;
  if (minibatches % o.batch.accumulation != 0)
    c.fail("gradient_accumulation_steps",
           fmt::format("gradient_accumulation_steps {} must divide the {} mini-batches of a PPO "
                       "step (generation_batches x per_device_generation_batch_size / "
                       "per_device_training_batch_size)",
                       o.batch.accumulation, minibatches));
  // The engines' batch: PPO's mini-batches, not train_micro_batch_size_per_gpu.
  o.batch.micro = p.training_batch;
  o.batch.global = p.training_batch * o.batch.accumulation * world;
  p.ppo_epochs = c.get<int64_t>("ppo_epochs");
  p.actor_lr = c.get<double>("actor_learning_rate");
  p.critic_lr = c.get<double>("critic_learning_rate");
  p.critic_engine = o.engine;
  o.engine.optimizer.lr = float(p.actor_lr);
  o.engine.optimizer.weight_decay = float(c.get<double>("actor_weight_decay"));
  p.critic_engine.optimizer.lr = float(p.critic_lr);
  p.critic_engine.optimizer.weight_decay = float(c.get<double>("critic_weight_decay"));
  if (const int64_t stage = c.get<int64_t>("actor_zero_stage"); stage >= 0)
    o.engine.zero.stage = int(stage);
  if (const int64_t stage = c.get<int64_t>("critic_zero_stage"); stage >= 0)
    p.critic_engine.zero.stage = int(stage);
  // The schedules run over PPO steps (one learning rate per step's updates).
  o.schedule = train::scheduler_from(c, p.actor_lr, o.run.train_steps);
  p.critic_schedule = train::scheduler_from(c, p.critic_lr, o.run.train_steps);
  p.hybrid_engine = c.get<bool>("enable_hybrid_engine");
  p.offload_reference = c.get<bool>("offload_reference_model");
  p.frozen_dtype = c.get<std::string>("frozen_models_dtype");
  p.ema = c.get<bool>("enable_ema");
  p.ema_decay = c.get<double>("ema_decay");
  p.unsup_coef = c.get<double>("unsup_coef");
  p.unsup_data = c.get<std::string>("unsup_data");
  p.unsup_seq_len = c.get<int64_t>("unsup_seq_len");
  if (p.unsup_coef > 0 && p.unsup_data.empty())
    c.fail("unsup_data",
           "unsup_coef > 0 needs unsup_data: a token data set made by "
           "tools/prepare-data (data/kjv.h5)");
  p.constants.kl_ctl = c.get<double>("kl_ctl");
  p.constants.clip_reward_value = c.get<double>("clip_reward_value");
  p.constants.cliprange = c.get<double>("cliprange");
  p.constants.cliprange_value = c.get<double>("cliprange_value");
  p.constants.gamma = c.get<double>("gamma");
  p.constants.lam = c.get<double>("lam");
  p.sampling.temperature = c.get<double>("generation.temperature");
  p.sampling.top_k = c.get<int64_t>("generation.top_k");
  p.sampling.top_p = c.get<double>("generation.top_p");
  p.print_answers = c.get<bool>("print_answers");
  p.print_answers_interval = c.get<int64_t>("print_answers_interval");
  o.engine.optimizer.validate();
  p.critic_engine.optimizer.validate();
  return p;
}

}  // namespace

RlhfOptions rlhf_options(const io::Config& c, Phase phase, int world) {
  RlhfOptions out;
  StepOptions& o = out.step;
  o.phase = phase;
  o.run = train::run_from(c);
  o.run.output_dir = step_dir(o.run.output_dir, phase);
  if (c.has("init_from"))
    c.fail("init_from",
           "rlhf starts each step from model_name_or_path (sft, reward) or "
           "actor_model_name_or_path / critic_model_name_or_path (ppo): set those");
  o.batch = train::batch_from(c, world);
  o.engine.optimizer = train::optimizer_from(c);
  o.engine.zero = train::zero_from(c);
  o.engine.precision = train::precision_from(c);
  o.engine.gradient_clipping = o.run.gradient_clipping;
  o.engine.accumulation = o.batch.accumulation;
  o.data_path = c.get<std::string>("data_path");
  for (const char* file : {"train.jsonl", "eval.jsonl"})
    if (!fs::exists(fs::path(o.data_path) / file))
      c.fail("data_path",
             fmt::format("{} has no {}: make the KJV pairs with tools/make-preference-data "
                         "(VisualChat's dialogues with tools/make-visualchat-data), or point "
                         "data_path at a folder of such JSONL files",
                         o.data_path, file));
  o.data_split = parse_split(c);
  o.visualchat = c.get<std::string>("model.type") == "visualchat";
  if (o.visualchat) {
    if (phase != Phase::sft)
      c.fail("model.type",
             fmt::format("visualchat trains in the sft step only, not in {}", phase_name(phase)));
    o.visual.encoder = c.get<std::string>("visualchat.encoder");
    if (o.visual.encoder.empty() || !fs::exists(fs::path(o.visual.encoder) / "trainer.h5"))
      c.fail("visualchat.encoder",
             fmt::format("'{}' is not a checkpoint: pretrain the encoder with `rlhf encoder "
                         "--config configs/rlhf/visualchat-encoder.yaml` and name its final "
                         "checkpoint",
                         o.visual.encoder));
    o.visual.projection = c.get<std::string>("visualchat.projection");
    o.visual.mmca = c.get<std::string>("visualchat.attention") == "mmca";
    o.visual.max_images = c.get<int64_t>("visualchat.max_images");
    o.answer_conversations = c.get<int64_t>("visualchat.eval_conversations");
    o.answer_tokens = c.get<int64_t>("visualchat.answer_tokens");
  }
  o.tokens.max_seq_len = c.get<int64_t>("max_seq_len");
  o.tokens.max_prompt_seq_len = c.get<int64_t>("max_prompt_seq_len");
  o.tokens.max_answer_seq_len = c.get<int64_t>("max_answer_seq_len");
  o.tokens.train_on_prompt = c.get<bool>("train_on_prompt");
  o.tokens.end_token = c.get<std::string>("end_of_conversation_token");
  o.num_train_epochs = c.get<int64_t>("num_train_epochs");
  o.eval_batches = c.get<int64_t>("eval.batches");
  o.sample_tokens = c.get<int64_t>("sample.max_new_tokens");
  const std::string model_key =
      phase == Phase::ppo ? "actor_model_name_or_path" : "model_name_or_path";
  o.model_path = c.get<std::string>(model_key);
  if (o.model_path.empty())
    c.fail(model_key, fmt::format("{} needs a checkpoint to start from: set {} ({})",
                                  phase_name(phase), model_key,
                                  phase == Phase::sft ? "pretrain's checkpoint, or convert-hf's "
                                                        "import of a Hugging Face BLOOM"
                                  : phase == Phase::reward ? "SFT's or a pretrained checkpoint"
                                                           : "the SFT checkpoint"));
  o.lora = lora_from(c, phase == Phase::ppo ? "actor_" : "");
  // The vocabulary is the checkpoint's: the loss tile follows from it later.
  o.memory = train::activation_memory_from(c, 1);
  o.max_tile_mb = c.get<double>("tiled_loss.max_tile_mb");
  std::vector<std::string> derived = {
      fmt::format("train_batch_size={}", o.batch.global),
      fmt::format("gradient_accumulation_steps={}", o.batch.accumulation),
      fmt::format("output.dir={}", o.run.output_dir)};
  if (phase != Phase::ppo) {
    o.schedule = train::scheduler_from(c, o.engine.optimizer.lr, o.run.train_steps);
    o.schedule.schedule.validate();
    o.engine.optimizer.validate();
    o.resolved_config_yaml = train::resolved_yaml(c, derived);
    return out;
  }

  out.ppo = ppo_options_from(c, o, world);
  const PpoOptions& p = out.ppo;
  derived.push_back(fmt::format("actor_zero_stage={}", o.engine.zero.stage));
  derived.push_back(fmt::format("critic_zero_stage={}", p.critic_engine.zero.stage));
  o.resolved_config_yaml = train::resolved_yaml(c, derived);
  return out;
}

}  // namespace turbine::rlhf
