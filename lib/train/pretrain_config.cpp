// Schema and options of the language-model jobs (pretrain, ulysses-train):
// the shared pieces plus the model, data efficiency, activation memory,
// sequence parallelism, data, evaluation and sample keys.
#include "core/error.hpp"
#include "data/token_dataset.hpp"
#include "io/model_config.hpp"
#include "seqpar/ulysses.hpp"
#include "train/pretrain.hpp"

namespace turbine::train {

io::ConfigSchema pretrain_schema(const std::string& app) {
  io::ConfigSchema s;
  declare_training_job(s, app);
  io::declare_bloom_config(s);
  efficiency::declare_curriculum_config(s);
  efficiency::declare_random_ltd_config(s);
  declare_activation_memory(s);
  s.integer("sequence_parallel_size", 1,
            "ranks that share each sequence (DeepSpeed-Ulysses; ulysses-train): each holds 1/P "
            "of its tokens and n_head/P heads in attention; mpirun -np = this x data-parallel "
            "size")
      .at_least(1);

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

namespace {

// Sequence parallelism's rules, reported at the keys before any work.
void check_sequence_parallel(const io::Config& c, const PretrainOptions& o, int world) {
  const int p = o.sequence_parallel;
  if (const auto problem = seqpar::Layout::problem(world, p))
    c.fail("sequence_parallel_size", *problem);
  if (const auto problem = o.model.sequence_parallel_problem(p))
    c.fail("sequence_parallel_size", *problem);
  if (p > 1 && o.random_ltd.enabled)
    c.fail("data_efficiency.data_routing.random_ltd.enabled",
           "random-LTD with sequence_parallel_size > 1 is not supported (each layer would pick "
           "its kept tokens across the ranks' slices): turn one of them off");
}

PretrainOptions language_model_options(const io::Config& c, int world, bool sequence_parallel) {
  PretrainOptions o;
  o.sequence_parallel = static_cast<int>(c.get<int64_t>("sequence_parallel_size"));
  if (o.sequence_parallel > 1 && !sequence_parallel)
    c.fail("sequence_parallel_size",
           fmt::format("pretrain is data-parallel only: sequence_parallel_size {} needs "
                       "ulysses-train (mpirun -np N ulysses-train --config ... takes the same "
                       "config)",
                       o.sequence_parallel));
  o.model = io::bloom_config_from(c);
  o.run = run_from(c);
  o.seq_len = c.get<int64_t>("data.seq_len");
  o.random_ltd = efficiency::random_ltd_from(c, o.model.n_layer, o.seq_len);
  check_sequence_parallel(c, o, world);
  o.batch = batch_from(c, world / o.sequence_parallel);
  o.engine.optimizer = optimizer_from(c);
  o.engine.zero = zero_from(c);
  o.engine.precision = precision_from(c);
  o.engine.gradient_clipping = o.run.gradient_clipping;
  o.engine.accumulation = o.batch.accumulation;
  o.schedule = scheduler_from(c, o.engine.optimizer.lr, o.run.train_steps);
  o.data_path = c.get<std::string>("data.path");
  o.shuffle = c.get<bool>("data.shuffle");
  o.curriculum = efficiency::curriculum_from(c);
  o.eval_batches = c.get<int64_t>("eval.batches");
  o.sample.prompt = c.get<std::string>("sample.prompt");
  o.sample.max_new_tokens = c.get<int64_t>("sample.max_new_tokens");
  o.sample.temperature = c.get<double>("sample.temperature");
  o.sample.top_k = c.get<int64_t>("sample.top_k");
  // The data set (a missing or broken one is reported here, before any
  // work): the model takes its vocabulary unless model.vocab_size is given,
  // and a window must fit in its training split.
  const data::TokenDataset dataset = data::TokenDataset::open(o.data_path);
  if (!c.has("model.vocab_size")) o.model.vocab_size = dataset.vocab_size();
  const int64_t train_tokens = dataset.num_tokens(data::Split::train);
  if (o.seq_len + 1 > train_tokens)
    c.fail("data.seq_len",
           fmt::format("a window of data.seq_len {} + 1 tokens is longer than the {} training "
                       "tokens of {}: use a shorter data.seq_len or more data",
                       o.seq_len, train_tokens, o.data_path));
  o.memory = activation_memory_from(c, o.model.vocab_size);
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

}  // namespace

PretrainOptions pretrain_options(const io::Config& c, int world) {
  return language_model_options(c, world, false);
}

PretrainOptions ulysses_options(const io::Config& c, int world) {
  return language_model_options(c, world, true);
}

}  // namespace turbine::train
