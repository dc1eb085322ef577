// Schema and options of the pretrain job: the shared pieces plus the model,
// data efficiency, data, evaluation and sample keys.
#include "core/error.hpp"
#include "data/token_dataset.hpp"
#include "io/model_config.hpp"
#include "train/pretrain.hpp"

namespace turbine::train {

io::ConfigSchema pretrain_schema() {
  io::ConfigSchema s;
  declare_batch(s);
  declare_run(s, "pretrain");
  declare_precision(s);
  declare_optimizer(s);
  declare_scheduler(s);
  declare_zero(s);
  declare_deepspeed_foreign(s);
  io::declare_bloom_config(s);
  efficiency::declare_curriculum_config(s);
  efficiency::declare_random_ltd_config(s);

  s.string("data.path", "data/kjv.h5", "token data set made by tools/prepare-data");
  s.integer("data.seq_len", 128, "tokens per training sequence").at_least(1);
  s.boolean("data.shuffle", true, "shuffle windows each epoch (seeded)");
  s.integer("eval.batches", 8,
            "validation micro-batches in all (shared among ranks): batches x micro windows")
      .at_least(1);
  s.string("sample.prompt", "And God said", "text the sample continues");
  s.integer("sample.max_new_tokens", 48, "tokens to generate").at_least(1);
  s.number("sample.temperature", 0.8, "sampling temperature; 0: greedy").at_least(0);
  s.integer("sample.top_k", 40, "sample among the k likeliest tokens; 0: all").at_least(0);
  return s;
}

PretrainOptions pretrain_options(const io::Config& c, int world) {
  PretrainOptions o;
  o.run = run_from(c);
  o.batch = batch_from(c, world);
  o.engine.optimizer = optimizer_from(c);
  o.engine.zero = zero_from(c);
  o.engine.precision = precision_from(c);
  o.engine.gradient_clipping = o.run.gradient_clipping;
  o.engine.accumulation = o.batch.accumulation;
  o.schedule = scheduler_from(c, o.engine.optimizer.lr, o.run.train_steps);
  o.model = io::bloom_config_from(c);
  o.data_path = c.get<std::string>("data.path");
  o.seq_len = c.get<int64_t>("data.seq_len");
  o.shuffle = c.get<bool>("data.shuffle");
  o.random_ltd = efficiency::random_ltd_from(c, o.model.n_layer, o.seq_len);
  o.curriculum = efficiency::curriculum_from(c);
  o.eval_batches = c.get<int64_t>("eval.batches");
  o.sample.prompt = c.get<std::string>("sample.prompt");
  o.sample.max_new_tokens = c.get<int64_t>("sample.max_new_tokens");
  o.sample.temperature = c.get<double>("sample.temperature");
  o.sample.top_k = c.get<int64_t>("sample.top_k");
  // Without model.vocab_size the model takes the data set's (a missing or
  // broken data set is reported here, before any work).
  if (!c.has("model.vocab_size"))
    o.model.vocab_size = data::TokenDataset::open(o.data_path).vocab_size();
  o.schedule.schedule.validate();
  o.engine.optimizer.validate();
  // The resolved config holds the values the run uses, derived ones included.
  std::vector<std::string> derived = {
      fmt::format("train_batch_size={}", o.batch.global),
      fmt::format("gradient_accumulation_steps={}", o.batch.accumulation),
      fmt::format("scheduler.params.total_num_steps={}", o.schedule.schedule.total_steps),
      fmt::format("model.vocab_size={}", o.model.vocab_size)};
  derived.insert(derived.end(), o.curriculum.resolved_overrides.begin(),
                 o.curriculum.resolved_overrides.end());
  o.resolved_config_yaml = resolved_yaml(c, derived);
  return o;
}

}  // namespace turbine::train
