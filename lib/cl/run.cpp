// cl-edge's job of run.hpp.
#include "cl/run.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "autograd/tape.hpp"
#include "cl/controller.hpp"
#include "core/error.hpp"
#include "core/rng.hpp"
#include "core/signals.hpp"
#include "data/token_dataset.hpp"
#include "io/model_config.hpp"
#include "train/checkpoint.hpp"
#include "train/classify.hpp"
#include "train/metrics.hpp"
#include "train/schema.hpp"

namespace turbine::cl {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

constexpr double kGiB = 1073741824.0;
constexpr uint64_t kOrderStream = 0xc1ed, kProfileStream = 0xc1ee;

// The task's training order for an epoch: a Fisher-Yates shuffle by (seed, task, epoch).
std::vector<int64_t> epoch_order(std::vector<int64_t> ids, uint64_t seed, int64_t task,
                                 int64_t epoch) {
  philox_shuffle(ids, seed, kOrderStream, (uint64_t(task) << 20) + uint64_t(epoch));
  return ids;
}

// Miro's profiling of the candidates before (part of) a task.
struct Profiler {
  const ClOptions& o;
  Learner& learner;
  ReplayTier& tier;  // the run's hierarchical tier
  const Stream& stream;

  struct Outcome {
    std::vector<ProfiledConfiguration> table;
    ConfigurationChoice choice;
    double seconds = 0;
    EnergyUsage usage;
  };

  // Expected records appended to storage of st_size over `n` more samples
  // after `seen`: Algorithm R keeps the k-th with probability min(1, st/k).
  static double expected_writes(int64_t st, int64_t seen, int64_t n) {
    double writes = 0;
    for (int64_t k = seen + 1; k <= seen + n; ++k) writes += std::min(1.0, double(st) / double(k));
    return writes;
  }

  // What every candidate's trial uses: the task's profile subset (80% trial
  // training, 20% held out), earlier tasks' held-out samples from storage
  // (the same for every candidate), and the stored records that fill the
  // candidates' RAM, read once for all (the largest takes them all, a
  // smaller one the first rb_size).
  struct Samples {
    std::vector<int64_t> trial;
    std::vector<uint8_t> val_payloads, old_payloads, fill_payloads;
    std::vector<int32_t> val_labels, old_labels;
    std::vector<StoredSample> filled;
    int64_t read_bytes = 0;  // from storage
  };

  Samples samples(int64_t task, int64_t profile_round,
                  const std::vector<MemoryConfiguration>& candidates) {
    Samples s;
    std::vector<int64_t> ids =
        epoch_order(stream.train_ids(task), o.seed ^ kProfileStream, task, 1000 + profile_round);
    const auto n =
        std::max<int64_t>(5, int64_t(std::llround(o.miro.profile_fraction * double(ids.size()))));
    ids.resize(size_t(std::min<int64_t>(n, int64_t(ids.size()))));
    const auto held = std::max<size_t>(1, ids.size() / 5);
    const std::vector<int64_t> val(ids.begin(), ids.begin() + long(held));
    s.trial.assign(ids.begin() + long(held), ids.end());
    const int64_t bytes = stream.payload_bytes();
    s.val_payloads.resize(val.size() * size_t(bytes));
    for (size_t i = 0; i < val.size(); ++i) {
      stream.payload(val[i],
                     std::span<uint8_t>(s.val_payloads.data() + i * size_t(bytes), size_t(bytes)));
      s.val_labels.push_back(stream.label(val[i]));
    }
    SampleStore& store = *tier.store();
    std::vector<int64_t> records(size_t(store.records()));
    for (size_t r = 0; r < records.size(); ++r) records[r] = int64_t(r);
    records = epoch_order(records, o.seed ^ kProfileStream, task, 2000 + profile_round);
    const size_t old_count = std::min(records.size() / 5, held * 4);
    const std::vector<int64_t> old_records(records.begin(), records.begin() + long(old_count));
    const std::vector<int64_t> fill_records(records.begin() + long(old_count), records.end());
    s.old_payloads.resize(old_count * size_t(bytes));
    for (const StoredSample& in : store.read(old_records, s.old_payloads))
      s.old_labels.push_back(in.label);
    s.read_bytes += int64_t(old_count) * store.record_bytes();
    int64_t largest = 0;
    for (const MemoryConfiguration& cand : candidates) largest = std::max(largest, cand.rb_size);
    const std::vector<int64_t> fill_read(
        fill_records.begin(),
        fill_records.begin() + long(std::min(fill_records.size(), size_t(largest))));
    s.fill_payloads.resize(fill_read.size() * size_t(bytes));
    s.filled = store.read(fill_read, s.fill_payloads);
    s.read_bytes += int64_t(fill_read.size()) * store.record_bytes();
    return s;
  }

  // The learner's accuracy on samples given as payloads.
  double accuracy_on(const std::vector<uint8_t>& payloads, const std::vector<int32_t>& labels) {
    autograd::NoGradGuard no_grad;
    const Batch b = stream.batch(payloads, labels, learner.config().device);
    const Tensor logits = learner.logits(b, false, 0);
    return double(train::count_correct(logits, b.targets)) / double(b.targets.numel());
  }

  // One candidate's trial: ER with its RAM filled from storage, as the
  // reconfiguration would, trained from the learner's weights (the caller
  // restores them), then its accuracy on the held-out samples of this task
  // and the earlier ones. Adds the payload bytes its steps moved.
  ProfiledConfiguration trial(const MemoryConfiguration& cand, const Samples& s, int64_t task,
                              double* payload_bytes) {
    const auto trial_start = Clock::now();
    TierConfig tc = o.tier;
    tc.rb_size = cand.rb_size;
    tc.st_size = 0;
    tc.budget_mb = 0;
    auto trial_tier = std::make_unique<ReplayTier>(tc);
    const auto bytes = size_t(stream.payload_bytes());
    const size_t fill = std::min(s.filled.size(), size_t(cand.rb_size));
    for (size_t r = 0; r < fill; ++r)
      trial_tier->observe(s.filled[r].id, s.filled[r].label,
                          std::span<const uint8_t>(s.fill_payloads.data() + r * bytes, bytes));
    StrategyConfig sc = o.strategy;
    sc.name = "er";
    Strategy trial_strategy(sc, learner, std::move(trial_tier));
    learner.reset_optimizer();
    int64_t moved = 0;
    for (int64_t it = 0; it < o.miro.profile_iterations; ++it) {
      std::vector<int64_t> batch;
      for (int64_t b = 0; b < o.batch_size; ++b)
        batch.push_back(s.trial[size_t((it * o.batch_size + b) % int64_t(s.trial.size()))]);
      moved += trial_strategy.train_step(batch, (int64_t(1) << 30) + it).payload_bytes;
    }
    *payload_bytes = double(moved);
    ProfiledConfiguration row;
    row.config = cand;
    row.seconds = since(trial_start);
    row.accuracy = accuracy_on(s.val_payloads, s.val_labels);
    if (!s.old_labels.empty())
      row.accuracy = (row.accuracy + double(task) * accuracy_on(s.old_payloads, s.old_labels)) /
                     double(task + 1);
    return row;
  }

  // Each candidate's energy for the rest of the task. Its steps take the
  // same time (the replay batch is the same size): the mean over the
  // trials, or miro.step_seconds when set (then the choice is reproducible,
  // not subject to timing noise).
  void price(std::vector<ProfiledConfiguration>& table, const std::vector<double>& payload_bytes,
             int64_t task_iterations, int64_t task_samples) {
    const auto iters = double(std::max<int64_t>(1, o.miro.profile_iterations));
    double per_step = o.miro.step_seconds;
    if (per_step <= 0) {
      for (const ProfiledConfiguration& row : table) per_step += row.seconds;
      per_step /= iters * double(table.size());
    }
    const SampleStore& store = *tier.store();
    const int64_t sample_bytes = o.tier.payload_bytes + kIdLabelBytes;
    for (size_t k = 0; k < table.size(); ++k) {
      const MemoryConfiguration& cand = table[k].config;
      const auto slots = double(std::llround(cand.swap_ratio * double(cand.rb_size)));
      const double swaps = double(task_iterations) / double(o.tier.swap_period);
      const auto record = double(store.record_bytes());
      EnergyUsage u;
      u.busy_s = per_step * double(task_iterations);
      u.wall_s = u.busy_s;
      u.resident_gib_s = double((cand.rb_size + int64_t(slots)) * sample_bytes) / kGiB * u.busy_s;
      u.dram_bytes = payload_bytes[k] / iters * double(task_iterations) +
                     swaps * slots * double(stream.payload_bytes());
      u.storage_read_bytes = swaps * slots * record;
      u.storage_write_bytes = expected_writes(cand.st_size, store.seen(), task_samples) * record;
      table[k].energy_j = std::max(1e-9, model_energy(o.profile, u).total_j);
    }
  }

  Outcome profile(int64_t task, int64_t profile_round, int64_t task_iterations,
                  int64_t task_samples) {
    const auto start = Clock::now();
    Outcome out;
    const auto candidates =
        candidate_configurations(o.miro.rb_sizes, o.miro.st_sizes, o.miro.swap_ratios,
                                 o.miro.candidates, o.seed + uint64_t(profile_round));
    const Samples s = samples(task, profile_round, candidates);
    const std::vector<float> weights = learner.weights();
    const std::vector<float> velocity = learner.velocity();
    std::vector<double> payload_bytes(candidates.size());
    for (size_t k = 0; k < candidates.size(); ++k) {
      out.table.push_back(trial(candidates[k], s, task, &payload_bytes[k]));
      learner.set_weights(weights);
      learner.set_velocity(velocity);
    }
    price(out.table, payload_bytes, task_iterations, task_samples);
    out.choice = choose_configuration(out.table, o.miro.cutline);
    out.seconds = since(start);
    out.usage.busy_s = out.seconds;
    out.usage.wall_s = out.seconds;
    out.usage.storage_read_bytes = double(s.read_bytes);
    return out;
  }
};

}  // namespace

io::ConfigSchema cl_schema() {
  io::ConfigSchema s;
  train::declare_vision_model(s, {"bloom"});
  io::declare_bloom_config(s);
  s.string("data.path", "data/fashion-mnist.h5",
           "image data set (tools/prepare-data --images fashion-mnist), or for kjv-books the "
           "token data set (tools/prepare-data; data/kjv.h5)");
  s.string("stream.benchmark", "split-fashion-mnist",
           "split-fashion-mnist, permuted-fashion-mnist, or kjv-books (the KJV's books in order)")
      .one_of({std::string("split-fashion-mnist"), std::string("permuted-fashion-mnist"),
               std::string("kjv-books")});
  s.string("stream.scenario", "class",
           "class (class-incremental, one head), task (task-incremental: logits masked to the "
           "task's classes), domain (permuted, kjv-books)")
      .one_of({std::string("class"), std::string("task"), std::string("domain")});
  s.integer("stream.tasks", 5, "tasks (split: classes / classes_per_task; kjv-books: first books)")
      .at_least(1);
  s.integer("stream.classes_per_task", 2, "split: classes a task").at_least(1);
  s.boolean("stream.shuffle_classes", false, "split: class order drawn by the seed");
  s.integer("stream.train_per_task", 0, "training samples a task at most (seeded); 0: all")
      .at_least(0);
  s.integer("stream.test_per_task", 0, "test samples a task at most (seeded); 0: all").at_least(0);
  s.number("stream.text_test_fraction", 0.1, "kjv-books: a book's windows held out for its test")
      .at_least(0)
      .at_most(1);
  s.integer("stream.seq_len", 64, "kjv-books: tokens a window").at_least(1);
  s.string("stream.groups", "data/kjv.books", "kjv-books: each chapter's book (tools/get-kjv)");
  s.integer("train.epochs", 1, "passes over a task's samples").at_least(1);
  s.integer("train.batch_size", 10, "stream samples a step").at_least(1);
  s.number("train.lr", 0.01, "SGD learning rate").at_least(0);
  s.number("train.momentum", 0.0, "SGD momentum (reset every task)").at_least(0).at_most(0.999);
  s.integer("train.eval_batch", 256, "test samples a forward pass").at_least(1);
  s.string("strategy.name", "er",
           "naive, joint, er, cb-er, agem, ewc, lwf, der++, hierarchical (CarM-like fixed "
           "RAM + storage), miro")
      .one_of(std::vector<io::ConfigValue>(strategy_names().begin(), strategy_names().end()));
  s.integer("strategy.replay_batch", 10, "memory samples a step").at_least(1);
  s.number("strategy.ewc_lambda", 100.0, "ewc: penalty weight").at_least(0);
  s.number("strategy.ewc_decay", 1.0, "ewc: online decay of the old importance")
      .at_least(0)
      .at_most(1);
  s.number("strategy.lwf_alpha", 1.0, "lwf: distillation weight").at_least(0);
  s.number("strategy.lwf_temperature", 2.0, "lwf: temperature").at_least(0);
  s.number("strategy.der_alpha", 0.1, "der++: logit matching weight").at_least(0);
  s.number("strategy.der_beta", 0.5, "der++: replay cross-entropy weight").at_least(0);
  s.string("memory.policy", "reservoir", "the RAM memory: reservoir or class_balanced (cb-er)")
      .one_of({std::string("reservoir"), std::string("class_balanced")});
  s.integer("memory.rb_size", 500, "samples in RAM (the episodic memory)").at_least(1);
  s.number("memory.budget_mb", 0, "RAM the memory may take (MB of 2^20 bytes); 0: none")
      .at_least(0);
  s.integer("memory.st_size", 10000, "hierarchical, miro: samples on storage").at_least(1);
  s.string("memory.storage_dir", "",
           "hierarchical, miro: folder of the storage tier's file; empty: output.dir/storage");
  s.integer("memory.swap_period", 10, "iterations between swaps").at_least(1);
  s.number("memory.swap_ratio", 0.1, "of the RAM slots replaced by stored samples a swap")
      .at_least(0)
      .at_most(1);
  s.boolean("memory.direct_io", true,
            "swaps read the storage file with O_DIRECT where the file system allows");
  s.boolean("memory.direct_writes", false,
            "appends to the storage file with O_DIRECT too (each waits for the device); false: "
            "through the page cache, written behind by the kernel");
  s.integers("miro.rb_sizes", {100, 250, 500, 1000}, "miro: candidate rb_size values");
  s.integers("miro.st_sizes", {10000}, "miro: candidate st_size values");
  s.numbers("miro.swap_ratios", {0.05, 0.1}, "miro: candidate swap_ratio values");
  s.integer("miro.candidates", 0, "miro: > 0: that many candidates sampled from the grid")
      .at_least(0);
  s.number("miro.profile_fraction", 0.05, "miro: of a task's samples profiled")
      .at_least(0)
      .at_most(1);
  s.integer("miro.profile_iterations", 20, "miro: steps a candidate's trial").at_least(1);
  s.integer("miro.profile_period", 0, "miro: > 0: profile again every N iterations of a task")
      .at_least(0);
  s.integer("miro.cutline", 3, "miro: the most accurate candidates kept").at_least(1);
  s.number("miro.step_seconds", 0,
           "miro: > 0: a step's seconds in the candidates' energy estimates (reproducible "
           "choices); 0: measured in the trials")
      .at_least(0);
  s.string("energy.device", "jetson-xavier-nx",
           "device profile of configs/devices (or a .yaml path) the energy is modelled with");
  s.string("energy.devices_dir", "configs/devices", "where device profiles are looked up");
  s.strings("sweep.strategies", {"naive", "er", "agem", "ewc", "lwf", "der++", "miro"},
            "--sweep: strategies run");
  s.integers("sweep.rb_sizes", {500}, "--sweep: rb_size values (memory strategies)");
  s.integers("sweep.seeds", {1, 2, 3}, "--sweep: seeds");
  s.integer("seed", 1234, "seed of the model, the stream's subsets and order, the memory")
      .at_least(0);
  s.string("device", "cpu", "cpu, or cuda").one_of({std::string("cpu"), std::string("cuda")});
  s.string("output.dir", "runs/cl-edge", "folder for config.yaml, metrics.jsonl, summary.json");
  s.integer("checkpoint.interval", 0,
            "also checkpoint every N iterations within a task (a checkpoint ends every task); "
            "0: at task ends only")
      .at_least(0);
  s.integer("checkpoint.keep", 2, "complete checkpoints kept; 0: all").at_least(0);
  s.integer("train.stop_after", 0,
            "> 0: stop after this many iterations in all with a checkpoint (exit status 75), as "
            "a stop signal would; --resume continues")
      .at_least(0);
  s.string("resume", "never",
           "auto: continue from the newest complete checkpoint in output.dir, if any")
      .one_of({std::string("never"), std::string("auto")});
  return s;
}

namespace {

// cl_options' parts, in the order their problems are reported.

// The stream's keys; whether it is text (the KJV's books).
bool stream_from(const io::Config& c, ClOptions& o) {
  StreamConfig& sc = o.stream;
  sc.benchmark = c.get<std::string>("stream.benchmark");
  sc.scenario = c.get<std::string>("stream.scenario");
  sc.data_path = c.get<std::string>("data.path");
  sc.groups_path = c.get<std::string>("stream.groups");
  sc.tasks = c.get<int64_t>("stream.tasks");
  sc.classes_per_task = c.get<int64_t>("stream.classes_per_task");
  sc.shuffle_classes = c.get<bool>("stream.shuffle_classes");
  sc.train_per_task = c.get<int64_t>("stream.train_per_task");
  sc.test_per_task = c.get<int64_t>("stream.test_per_task");
  sc.text_test_fraction = c.get<double>("stream.text_test_fraction");
  sc.seq_len = c.get<int64_t>("stream.seq_len");
  sc.seed = o.seed;
  const bool text = sc.benchmark == "kjv-books";
  const bool bloom = c.get<std::string>("model.arch") == "bloom";
  if (text != bloom)
    c.fail("model.arch", text ? "the kjv-books stream trains a language model: model.arch bloom"
                              : "an image stream trains an image model: mlp, cnn, resnet or vit");
  return text;
}

// What a memory keeps of a sample (its payload's bytes) and the model's outputs.
struct SampleShape {
  int64_t payload = 0, outputs = 0;
};

// The model (BLOOM for text, else an image classifier) and the scenario it
// learns under.
SampleShape model_from(const io::Config& c, ClOptions& o, bool text) {
  const StreamConfig& sc = o.stream;
  LearnerConfig& lc = o.learner;
  SampleShape shape;
  if (text) {
    lc.bloom = io::bloom_config_from(c);
    try {
      const data::TokenDataset set = data::TokenDataset::open(sc.data_path);
      if (!c.has("model.vocab_size")) lc.bloom.vocab_size = set.vocab_size();
    } catch (const Error& e) {
      c.fail("data.path", e.what());
    }
    shape = {(sc.seq_len + 1) * int64_t(sizeof(int32_t)), lc.bloom.vocab_size};
  } else {
    lc.vision = train::vision_model_from(c, sc.data_path);
    const int64_t classes = lc.vision.num_classes;
    if (sc.benchmark == "split-fashion-mnist" && sc.tasks * sc.classes_per_task != classes)
      c.fail("stream.classes_per_task",
             fmt::format("stream.tasks {} x classes_per_task {} must be the data set's {} "
                         "classes: classes_per_task must divide {} (and tasks be {} / it)",
                         sc.tasks, sc.classes_per_task, classes, classes, classes));
    shape = {lc.vision.channels * lc.vision.height * lc.vision.width, classes};
  }
  if (sc.benchmark == "split-fashion-mnist" && sc.scenario == "domain")
    c.fail("stream.scenario", "split-fashion-mnist is class- or task-incremental: class or task");
  if (sc.benchmark != "split-fashion-mnist" && sc.scenario != "domain")
    c.fail("stream.scenario",
           fmt::format("{} is domain-incremental: stream.scenario domain", sc.benchmark));
  return shape;
}

// The optimizer, the run's length and place, its checkpoints.
void training_from(const io::Config& c, ClOptions& o) {
  LearnerConfig& lc = o.learner;
  lc.lr = c.get<double>("train.lr");
  lc.momentum = c.get<double>("train.momentum");
  lc.seed = o.seed;
  lc.eval_batch = c.get<int64_t>("train.eval_batch");
  o.device = c.get<std::string>("device");
  o.epochs = c.get<int64_t>("train.epochs");
  o.batch_size = c.get<int64_t>("train.batch_size");
  o.output_dir = c.get<std::string>("output.dir");
  o.checkpoint_interval = c.get<int64_t>("checkpoint.interval");
  o.checkpoint_keep = c.get<int64_t>("checkpoint.keep");
  o.stop_after = c.get<int64_t>("train.stop_after");
  o.resume = c.get<std::string>("resume") == "auto";
}

void strategy_from(const io::Config& c, ClOptions& o, bool text) {
  StrategyConfig& st = o.strategy;
  st.name = c.get<std::string>("strategy.name");
  st.replay_batch = c.get<int64_t>("strategy.replay_batch");
  st.ewc_lambda = c.get<double>("strategy.ewc_lambda");
  st.ewc_decay = c.get<double>("strategy.ewc_decay");
  st.lwf_alpha = c.get<double>("strategy.lwf_alpha");
  st.lwf_temperature = c.get<double>("strategy.lwf_temperature");
  st.der_alpha = c.get<double>("strategy.der_alpha");
  st.der_beta = c.get<double>("strategy.der_beta");
  if (st.name == "der++" && text)
    c.fail("strategy.name",
           "der++ keeps each sample's logits, seq_len x vocabulary floats for a text window: "
           "use er, agem, ewc or lwf on kjv-books");
}

// The replay tiers (RAM memory, storage) and Miro's candidates.
void memory_from(const io::Config& c, ClOptions& o, const SampleShape& shape) {
  const std::string& strategy = o.strategy.name;
  TierConfig& t = o.tier;
  t.policy = strategy == "cb-er" ? "class_balanced" : c.get<std::string>("memory.policy");
  t.rb_size = c.get<int64_t>("memory.rb_size");
  t.budget_mb = c.get<double>("memory.budget_mb");
  t.payload_bytes =
      shape.payload + (strategy == "der++" ? shape.outputs * int64_t(sizeof(float)) : 0);
  t.seed = o.seed;
  t.swap_period = c.get<int64_t>("memory.swap_period");
  t.swap_ratio = c.get<double>("memory.swap_ratio");
  t.direct_io = c.get<bool>("memory.direct_io");
  t.direct_writes = c.get<bool>("memory.direct_writes");
  t.storage_dir = c.get<std::string>("memory.storage_dir");
  if (t.storage_dir.empty()) t.storage_dir = o.output_dir + "/storage";
  o.st_size = c.get<int64_t>("memory.st_size");
  t.st_size = uses_storage(strategy) ? o.st_size : 0;
  o.miro.rb_sizes = c.get<std::vector<int64_t>>("miro.rb_sizes");
  o.miro.st_sizes = c.get<std::vector<int64_t>>("miro.st_sizes");
  o.miro.swap_ratios = c.get<std::vector<double>>("miro.swap_ratios");
  o.miro.candidates = c.get<int64_t>("miro.candidates");
  o.miro.profile_fraction = c.get<double>("miro.profile_fraction");
  o.miro.profile_iterations = c.get<int64_t>("miro.profile_iterations");
  o.miro.profile_period = c.get<int64_t>("miro.profile_period");
  o.miro.cutline = c.get<int64_t>("miro.cutline");
  o.miro.step_seconds = c.get<double>("miro.step_seconds");
}

// The memories fit their budget (every Miro candidate too), and the storage
// tier's folder takes a file (checked by writing one).
void check_memory(const io::Config& c, const ClOptions& o) {
  const std::string& strategy = o.strategy.name;
  const TierConfig& t = o.tier;
  const int64_t sample_bytes = t.payload_bytes + kIdLabelBytes;
  if (uses_memory(strategy)) {
    try {
      check_memory_budget(t.rb_size, sample_bytes, t.budget_mb);
    } catch (const Error& e) {
      c.fail("memory.rb_size", e.what());
    }
  }
  if (strategy == "miro") {
    try {
      for (const auto& cand :
           candidate_configurations(o.miro.rb_sizes, o.miro.st_sizes, o.miro.swap_ratios, 0, 0))
        check_memory_budget(cand.rb_size, sample_bytes, t.budget_mb);
      for (const int64_t st_size : o.miro.st_sizes)
        if (st_size < 1) c.fail("miro.st_sizes", "miro keeps the stream on storage: st_size >= 1");
    } catch (const Error& e) {
      c.fail("miro.rb_sizes", e.what());
    }
  }
  if (uses_storage(strategy)) {
    std::error_code ec;
    fs::create_directories(t.storage_dir, ec);
    const std::string probe = t.storage_dir + "/.cl-edge-probe-" + std::to_string(::getpid());
    std::ofstream out(probe);
    out << "probe";
    out.close();
    if (!out || !fs::exists(probe))
      c.fail("memory.storage_dir",
             fmt::format("{}: cannot write the storage tier's file there ({}): choose a "
                         "writable folder",
                         t.storage_dir, ec ? ec.message() : "not writable"));
    fs::remove(probe, ec);
  }
}

void sweep_from(const io::Config& c, ClOptions& o, bool text) {
  o.sweep.strategies = c.get<std::vector<std::string>>("sweep.strategies");
  for (const auto& name : o.sweep.strategies)
    if (std::find(strategy_names().begin(), strategy_names().end(), name) == strategy_names().end())
      c.fail("sweep.strategies", fmt::format("{} is not a strategy (one of {})", name,
                                             fmt::join(strategy_names(), ", ")));
  if (text && std::find(o.sweep.strategies.begin(), o.sweep.strategies.end(), "der++") !=
                  o.sweep.strategies.end())
    c.fail("sweep.strategies", "der++ does not run on kjv-books (see strategy.name)");
  o.sweep.rb_sizes = c.get<std::vector<int64_t>>("sweep.rb_sizes");
  o.sweep.seeds = c.get<std::vector<int64_t>>("sweep.seeds");
}

}  // namespace

ClOptions cl_options(const io::Config& c, int world) {
  (void)world;
  ClOptions o;
  o.seed = uint64_t(c.get<int64_t>("seed"));
  const bool text = stream_from(c, o);
  const SampleShape shape = model_from(c, o, text);
  training_from(c, o);
  strategy_from(c, o, text);
  memory_from(c, o, shape);
  check_memory(c, o);
  try {
    o.profile = load_device_profile(c.get<std::string>("energy.device"),
                                    c.get<std::string>("energy.devices_dir"));
  } catch (const Error& e) {
    c.fail("energy.device", e.what());
  }
  sweep_from(c, o, text);
  o.resolved_config_yaml = train::resolved_yaml(c, {});
  return o;
}

ClOptions sweep_run(const ClOptions& base, const std::string& strategy, int64_t rb_size,
                    int64_t seed) {
  ClOptions o = base;
  o.strategy.name = strategy;
  o.seed = uint64_t(seed);
  o.stream.seed = o.seed;
  o.learner.seed = o.seed;
  o.tier.seed = o.seed;
  o.tier.rb_size = rb_size;
  o.tier.policy = strategy == "cb-er" ? "class_balanced" : base.tier.policy;
  const int64_t payload = base.tier.payload_bytes -
                          (base.strategy.name == "der++" ? base.learner.vision.num_classes * 4 : 0);
  o.tier.payload_bytes = payload + (strategy == "der++" ? o.learner.vision.num_classes * 4 : 0);
  o.tier.st_size = uses_storage(strategy) ? base.st_size : 0;
  const std::string name = uses_memory(strategy)
                               ? fmt::format("{}-rb{}-seed{}", strategy, rb_size, seed)
                               : fmt::format("{}-seed{}", strategy, seed);
  o.output_dir = base.output_dir + "/runs/" + name;
  o.tier.storage_dir = o.output_dir + "/storage";
  return o;
}

namespace {

// The counters of a run that every checkpoint keeps (cl_state.json beside
// the model and the strategy's state) and a resume restores.
struct Progress {
  int64_t iteration = 0, profile_round = 0, projected = 0;
  double loss = 0;            // summed over the current task's steps so far
  double elapsed_before = 0;  // seconds of the runs this one resumes
  EnergyUsage usage;
  double profiling_seconds = 0, profiling_j = 0;  // Miro's
  nlohmann::ordered_json miro_log = nlohmann::ordered_json::array();

  // At (task, step): the step within the task to run next.
  nlohmann::ordered_json to_json(int64_t task, int64_t step, double elapsed) const {
    nlohmann::ordered_json state;
    state["task"] = task;
    state["step"] = step;
    state["iteration"] = iteration;
    state["profile_round"] = profile_round;
    state["loss"] = loss;
    state["projected"] = projected;
    state["usage"] = {usage.busy_s,
                      usage.wall_s,
                      usage.resident_gib_s,
                      usage.dram_bytes,
                      usage.storage_read_bytes,
                      usage.storage_write_bytes};
    state["profiling_seconds"] = profiling_seconds;
    state["profiling_j"] = profiling_j;
    state["elapsed_s"] = elapsed;
    state["miro_log"] = miro_log;
    return state;
  }
  static Progress from_json(const nlohmann::ordered_json& saved, const std::string& where) {
    Progress p;
    p.iteration = saved.at("iteration");
    p.profile_round = saved.at("profile_round");
    p.loss = saved.at("loss");
    p.projected = saved.at("projected");
    const auto u = saved.at("usage").get<std::vector<double>>();
    TURBINE_CHECK(u.size() == 6, "{}: usage of {} values", where, u.size());
    p.usage = {u[0], u[1], u[2], u[3], u[4], u[5]};
    p.profiling_seconds = saved.at("profiling_seconds");
    p.profiling_j = saved.at("profiling_j");
    p.elapsed_before = saved.at("elapsed_s");
    p.miro_log = saved.at("miro_log");
    return p;
  }
};

// Measured energy: the host's CPU packages (RAPL) and the GPU (NVML), where readable.
class EnergyMeters {
 public:
  explicit EnergyMeters(Device device) : rapl_(RaplMeter::open()) {
    if (device.is_cuda()) nvml_ = NvmlMeter::open(device.index);
    if (rapl_) names_.push_back(fmt::format("RAPL ({})", fmt::join(rapl_->zones(), ", ")));
    if (nvml_) names_.push_back("NVML (" + nvml_->name() + ")");
  }
  std::optional<double> joules() {
    if (!rapl_ && !nvml_) return std::nullopt;
    return (rapl_ ? rapl_->joules() : 0.0) + (nvml_ ? nvml_->joules() : 0.0);
  }
  bool any() const { return !names_.empty(); }
  std::string names() const { return fmt::format("{}", fmt::join(names_, " + ")); }

 private:
  std::optional<RaplMeter> rapl_;
  std::optional<NvmlMeter> nvml_;
  std::vector<std::string> names_;
};

// One run of a stream (run_stream): its parts made or restored on
// construction, then task after task.
class StreamRun {
 public:
  StreamRun(const ClOptions& o, Device device, dist::Communicator& self, bool log);
  StreamResult run();

 private:
  std::string saved_file(const std::string& name) const;
  void save(int64_t task, int64_t step);
  // Miro's profiling at `step` of `task`, and the configuration it chose.
  void profile(int64_t task, int64_t step, int64_t steps_left, int64_t samples);
  // The task's steps from `first_step`; false when stopped inside it (a
  // checkpoint written).
  bool train_task(int64_t task, int64_t first_step, const std::vector<int64_t>& ids,
                  int64_t iterations);
  // After the task: the accuracy row, metrics.jsonl's line, the progress line.
  void end_task(int64_t task, const std::vector<int64_t>& ids, int64_t iterations,
                Clock::time_point task_start);
  // `u` with the tier's storage and swap traffic so far.
  EnergyUsage with_tier_traffic(EnergyUsage u);
  void write_summary(StreamResult& result);

  const ClOptions& o_;
  const bool log_;
  const Clock::time_point start_ = Clock::now();
  train::CheckpointStore checkpoints_;
  std::optional<std::string> latest_;
  nlohmann::ordered_json saved_;  // cl_state.json: too large for trainer.h5's attributes
  EnergyMeters meters_;
  std::optional<Stream> stream_;  // made once the checkpoint is known
  std::optional<Learner> learner_;
  std::optional<Strategy> strategy_;
  std::vector<train::CheckpointPart> parts_;
  std::optional<train::MetricsWriter> metrics_;
  AccuracyMatrix matrix_{1};
  Progress p_;
  int64_t first_task_ = 0, first_step_ = 0;
};

LearnerConfig on_device(LearnerConfig lc, Device device) {
  lc.device = device;
  return lc;
}

// output.dir, made; a finished run there is refused.
std::string finished_refused(const ClOptions& o) {
  fs::create_directories(o.output_dir);
  TURBINE_CHECK(!fs::exists(o.output_dir + "/summary.json"),
                "{} holds a finished run (summary.json): choose another output.dir or remove it",
                o.output_dir);
  return o.output_dir;
}

StreamRun::StreamRun(const ClOptions& o, Device device, dist::Communicator& self, bool log)
    : o_(o), log_(log), checkpoints_(finished_refused(o) + "/checkpoints", self), meters_(device) {
  // Resuming: the newest checkpoint that passes its checksums.
  latest_ = o.resume ? checkpoints_.resume_point() : checkpoints_.latest();
  TURBINE_CHECK(!latest_ || o.resume,
                "{} holds a checkpoint ({}): continue it with --resume, or choose another "
                "output.dir",
                o.output_dir, latest_.value_or(""));
  if (latest_) saved_ = nlohmann::ordered_json::parse(saved_file("cl_state.json"));
  std::ofstream(o.output_dir + "/config.yaml") << o.resolved_config_yaml;
  if (o.tier.st_size > 0) fs::create_directories(o.tier.storage_dir);
  stream_.emplace(o.stream, o.learner.bloom);
  learner_.emplace(*stream_, on_device(o.learner, device));
  std::unique_ptr<ReplayTier> tier;
  if (uses_memory(o.strategy.name)) {
    TierConfig tc = o.tier;
    if (o.strategy.name == "miro") {  // starts at the smallest candidate; profiling chooses
      tc.rb_size = *std::min_element(o.miro.rb_sizes.begin(), o.miro.rb_sizes.end());
      tc.st_size = o.miro.st_sizes.front();
      tc.swap_ratio = o.miro.swap_ratios.front();
    }
    tier = latest_ ? ReplayTier::restore(tc, saved_.at("strategy").at("tier"),
                                         [this](const std::string& n) { return saved_file(n); })
                   : std::make_unique<ReplayTier>(tc);
  }
  strategy_.emplace(o.strategy, *learner_, std::move(tier));
  parts_ = {{"model", &learner_->state_list(), nullptr}};
  if (latest_) {
    checkpoints_.load(*latest_, parts_);
    strategy_->restore(saved_.at("strategy"),
                       [this](const std::string& n) { return saved_file(n); });
  }
  metrics_.emplace(o.output_dir + "/metrics.jsonl", latest_ ? int64_t(saved_.at("iteration")) : -1);
  if (log_)
    fmt::print("cl-edge: {} with {}; model of {} parameters; energy modelled as {}{}\n",
               stream_->describe(), o.strategy.name, learner_->parameter_numel(), o.profile.name,
               meters_.any() ? ", measured by " + meters_.names()
                             : std::string(", not measured (no readable RAPL or NVML here)"));
  if (latest_) {
    matrix_ = AccuracyMatrix::from_json(saved_.at("matrix"));
    first_task_ = saved_.at("task");
    first_step_ = saved_.at("step");
    p_ = Progress::from_json(saved_, *latest_);
    if (log_)
      fmt::print("cl-edge: resumed from {}: task {}, step {} of it\n", *latest_, first_task_,
                 first_step_);
  } else {
    // b: the accuracy of the model at its initialization, for FWT.
    std::vector<double> random_init;
    for (int64_t t = 0; t < stream_->tasks(); ++t)
      random_init.push_back(learner_->evaluate(t).accuracy);
    matrix_ = AccuracyMatrix(stream_->tasks(), random_init);
  }
}

// The checkpoint's files' bytes.
std::string StreamRun::saved_file(const std::string& name) const {
  std::ifstream in(*latest_ + "/" + name, std::ios::binary);
  TURBINE_CHECK(in, "{}/{}: missing from the checkpoint", *latest_, name);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Checkpoints: the position (task, the step within it to run next), the
// model, the strategy's state (memory, storage file, EWC, LwF, momentum),
// the accuracy matrix and the counters.
void StreamRun::save(int64_t task, int64_t step) {
  nlohmann::ordered_json state = p_.to_json(task, step, p_.elapsed_before + since(start_));
  state["matrix"] = matrix_.to_json();
  std::map<std::string, std::string> files;
  nlohmann::ordered_json strategy_state;
  strategy_->save(strategy_state, files);
  state["strategy"] = std::move(strategy_state);
  train::StateMap map;
  map.set("cl.task", task);
  map.set("cl.step", step);
  map.set("cl.iteration", p_.iteration);
  map.set_file("cl_state.json", state.dump());
  for (auto& [name, bytes] : files) map.set_file(name, std::move(bytes));
  checkpoints_.save(p_.iteration, parts_, map, o_.resolved_config_yaml, o_.checkpoint_keep);
}

void StreamRun::profile(int64_t task, int64_t step, int64_t steps_left, int64_t samples) {
  Profiler profiler{o_, *learner_, *strategy_->tier(), *stream_};
  Profiler::Outcome out = profiler.profile(task, p_.profile_round++, steps_left, samples);
  const MemoryConfiguration chosen = out.table[out.choice.chosen].config;
  TierConfig next = strategy_->tier()->config();
  next.rb_size = chosen.rb_size;
  next.st_size = chosen.st_size;
  next.swap_ratio = chosen.swap_ratio;
  strategy_->tier()->reconfigure(next);
  p_.usage += out.usage;
  p_.profiling_seconds += out.seconds;
  p_.profiling_j += model_energy(o_.profile, out.usage).total_j;
  nlohmann::ordered_json j = out.choice.to_json(out.table);
  j["task"] = task;
  j["step"] = step;
  j["seconds"] = out.seconds;
  j["candidates"] = out.table.size();
  if (log_)
    fmt::print("  miro: task {} step {}: {} candidates profiled in {:.1f} s; chose {}\n", task,
               step, out.table.size(), out.seconds, chosen.describe());
  p_.miro_log.push_back(j);
}

bool StreamRun::train_task(int64_t task, int64_t first_step, const std::vector<int64_t>& ids,
                           int64_t iterations) {
  const int64_t per_epoch = (int64_t(ids.size()) + o_.batch_size - 1) / o_.batch_size;
  std::vector<int64_t> order;
  for (int64_t step = first_step; step < iterations; ++step, ++p_.iteration) {
    if (o_.strategy.name == "miro" &&
        (step == 0 || (o_.miro.profile_period > 0 && step % o_.miro.profile_period == 0)))
      profile(task, step, iterations - step, int64_t(ids.size()));
    const int64_t epoch = step / per_epoch, first = (step % per_epoch) * o_.batch_size;
    if (first == 0 || order.empty()) order = epoch_order(ids, o_.seed, task, epoch);
    const std::span<const int64_t> batch(
        order.data() + first,
        size_t(std::min<int64_t>(o_.batch_size, int64_t(ids.size()) - first)));
    const auto step_start = Clock::now();
    const StepResult r = strategy_->train_step(batch, p_.iteration, /*observe=*/epoch == 0);
    const double step_s = since(step_start);
    TURBINE_CHECK(std::isfinite(r.loss),
                  "the loss is {} at task {} ({}), step {} of {}: training diverged; lower "
                  "train.lr (now {}) or train.momentum (now {})",
                  r.loss, task, stream_->task_name(task), step, iterations, o_.learner.lr,
                  o_.learner.momentum);
    p_.loss += r.loss;
    p_.projected += r.projected;
    p_.usage.busy_s += step_s;
    p_.usage.dram_bytes += double(r.payload_bytes);
    if (strategy_->tier())
      p_.usage.resident_gib_s += double(strategy_->tier()->ram_bytes()) / kGiB * step_s;
    // A checkpoint within the task (its last step's is the task's own, in run).
    const bool stop = stop_requested() || (o_.stop_after > 0 && p_.iteration + 1 == o_.stop_after);
    const bool due = o_.checkpoint_interval > 0 && (p_.iteration + 1) % o_.checkpoint_interval == 0;
    if ((stop || due) && step + 1 < iterations) {
      ++p_.iteration;
      save(task, step + 1);
      if (stop) return false;
      --p_.iteration;
    }
  }
  return true;
}

EnergyUsage StreamRun::with_tier_traffic(EnergyUsage u) {
  if (ReplayTier* tier = strategy_->tier()) {
    u.storage_read_bytes += double(tier->storage_read_bytes());
    u.storage_write_bytes += double(tier->storage_written_bytes());
    u.dram_bytes += double(tier->swap_stats().bytes_to_ram);
  }
  return u;
}

void StreamRun::end_task(int64_t task, const std::vector<int64_t>& ids, int64_t iterations,
                         Clock::time_point task_start) {
  const auto eval_start = Clock::now();
  const int64_t fisher_bytes = strategy_->after_task(task, ids, o_.batch_size);
  p_.usage.dram_bytes += double(fisher_bytes);
  nlohmann::ordered_json row = nlohmann::ordered_json::array();
  for (int64_t j = 0; j < stream_->tasks(); ++j) {
    const TaskAccuracy a = learner_->evaluate(j);
    matrix_.set(task, j, a.accuracy);
    row.push_back(a.accuracy);
  }
  p_.usage.busy_s += since(eval_start);
  const StreamMetrics m = matrix_.metrics_after(task);
  EnergyUsage so_far = p_.usage;
  so_far.wall_s = p_.elapsed_before + since(start_);
  const EnergyBreakdown e = model_energy(o_.profile, with_tier_traffic(so_far));
  nlohmann::ordered_json line;
  line["task"] = task;
  line["step"] = p_.iteration;
  line["name"] = stream_->task_name(task);
  line["iterations"] = iterations;
  line["samples"] = ids.size();
  line["loss"] = p_.loss / double(std::max<int64_t>(1, iterations));
  line["seconds"] = since(task_start);
  line["accuracy"] = row;
  line["metrics"] = m.to_json();
  line["energy_j"] = e.to_json();
  if (const auto j = meters_.joules()) line["measured_j"] = *j;
  line["strategy"] = strategy_->to_json();
  if (o_.strategy.name == "agem") line["projected"] = p_.projected;
  if (o_.strategy.name == "miro") line["miro"] = p_.miro_log.back();
  metrics_->write(line);
  if (log_)
    fmt::print(
        "task {} ({}): {} steps, loss {:.4f}, accuracy on it {:.2f}%, ACC {:.2f}%, "
        "forgetting {:.2f}, {:.1f} s, {:.1f} J modelled\n",
        task, stream_->task_name(task), iterations, double(line["loss"]),
        100 * matrix_.at(task, task), 100 * m.accuracy, 100 * m.forgetting, double(line["seconds"]),
        e.total_j);
}

StreamResult StreamRun::run() {
  StreamResult result;
  for (int64_t task = first_task_; task < stream_->tasks(); ++task) {
    const auto task_start = Clock::now();
    const int64_t first_step = task == first_task_ ? first_step_ : 0;
    if (first_step == 0) {
      strategy_->before_task(task);
      p_.loss = 0;
      p_.projected = 0;
    }
    const std::vector<int64_t> ids = strategy_->training_ids(task);
    const int64_t per_epoch = (int64_t(ids.size()) + o_.batch_size - 1) / o_.batch_size;
    const int64_t iterations = per_epoch * o_.epochs;
    if (!train_task(task, first_step, ids, iterations)) {
      result.stopped = true;
      return result;
    }
    end_task(task, ids, iterations, task_start);
    save(task + 1, 0);
    if ((stop_requested() || (o_.stop_after > 0 && p_.iteration == o_.stop_after)) &&
        task + 1 < stream_->tasks()) {
      result.stopped = true;
      return result;
    }
  }
  write_summary(result);
  return result;
}

void StreamRun::write_summary(StreamResult& result) {
  EnergyUsage& usage = result.usage;
  usage = p_.usage;
  usage.wall_s = p_.elapsed_before + since(start_);
  usage = with_tier_traffic(usage);
  result.profiling_seconds = p_.profiling_seconds;
  result.profiling_j = p_.profiling_j;
  result.matrix = matrix_;
  result.metrics = matrix_.metrics();
  result.energy = model_energy(o_.profile, usage);
  result.measured_j = meters_.joules();
  result.seconds = usage.wall_s;
  result.accuracy_per_kj = result.metrics.accuracy * 100 / (result.energy.total_j / 1000);
  nlohmann::ordered_json& s = result.summary;
  s["strategy"] = o_.strategy.name;
  s["stream"] = stream_->describe();
  s["seed"] = o_.seed;
  s["matrix"] = matrix_.to_json();
  s["metrics"] = result.metrics.to_json();
  s["seconds"] = result.seconds;
  s["energy"] = {{"modelled", result.energy.to_json()},
                 {"device", o_.profile.name},
                 {"measured_j", result.measured_j ? nlohmann::ordered_json(*result.measured_j)
                                                  : nlohmann::ordered_json(nullptr)},
                 {"measured_by", meters_.any() ? meters_.names()
                                               : std::string("none (no readable RAPL or NVML)")}};
  s["accuracy_per_kj"] = result.accuracy_per_kj;
  s["usage"] = {{"busy_s", usage.busy_s},
                {"wall_s", usage.wall_s},
                {"resident_gib_s", usage.resident_gib_s},
                {"dram_bytes", usage.dram_bytes},
                {"storage_read_bytes", usage.storage_read_bytes},
                {"storage_write_bytes", usage.storage_write_bytes}};
  s["final"] = strategy_->to_json();
  if (o_.strategy.name == "miro")
    s["miro"] = {{"profiling_seconds", result.profiling_seconds},
                 {"profiling_j", result.profiling_j},
                 {"choices", p_.miro_log}};
  const std::string tmp = o_.output_dir + "/summary.json.tmp";
  std::ofstream(tmp) << s.dump(2) << "\n";
  fs::rename(tmp, o_.output_dir + "/summary.json");
}

}  // namespace

StreamResult run_stream(const ClOptions& o, Device device, dist::Communicator& self, bool log) {
  return StreamRun(o, device, self, log).run();
}

int report_stream(const ClOptions& o, const StreamResult& r) {
  const StreamMetrics& m = r.metrics;
  fmt::print(
      "cl-edge {}: ACC {:.2f}%, forgetting {:.2f}, BWT {:.2f}, FWT {}, {:.1f} s, energy {:.1f} J "
      "modelled ({}){}, {:.3f} accuracy points per kJ; {}/summary.json\n",
      o.strategy.name, 100 * m.accuracy, 100 * m.forgetting, 100 * m.backward_transfer,
      m.forward_transfer ? fmt::format("{:.2f}", 100 * *m.forward_transfer) : "-", r.seconds,
      r.energy.total_j, o.profile.name,
      r.measured_j ? fmt::format(", {:.1f} J measured", *r.measured_j) : "", r.accuracy_per_kj,
      o.output_dir);
  return 0;
}

int run_sweep(const ClOptions& o, train::Job& job) {
  dist::Communicator& world = job.world();
  struct Cell {
    std::string strategy;
    int64_t rb_size = 0;  // 0: the strategy has no memory
    int64_t seed = 0;
  };
  std::vector<Cell> grid;
  for (const std::string& s : o.sweep.strategies)
    for (const int64_t rb : uses_memory(s) ? o.sweep.rb_sizes : std::vector<int64_t>{0})
      for (const int64_t seed : o.sweep.seeds) grid.push_back({s, rb, seed});
  const Device device = job.pick_device(o.device);
  dist::Communicator self = world.split(world.rank(), 0);
  bool stopped = false;
  if (job.leader())
    fmt::print("cl-edge sweep: {} runs on {} ranks; {}/runs/\n", grid.size(), world.size(),
               o.output_dir);
  for (size_t i = size_t(world.rank()); i < grid.size(); i += size_t(world.size())) {
    const Cell& cell = grid[i];
    const ClOptions run =
        sweep_run(o, cell.strategy, std::max<int64_t>(cell.rb_size, 1), cell.seed);
    if (fs::exists(run.output_dir + "/summary.json")) {
      fmt::print("  rank {}: {} finished earlier\n", world.rank(), run.output_dir);
      continue;
    }
    ClOptions resumable = run;
    resumable.resume = true;  // a sweep started again continues its unfinished runs
    const StreamResult r = run_stream(resumable, device, self, false);
    if (r.stopped) {
      stopped = true;
      break;
    }
    fmt::print("  rank {}: {} ACC {:.2f}% forgetting {:.2f} {:.1f} J in {:.1f} s\n", world.rank(),
               run.output_dir, 100 * r.metrics.accuracy, 100 * r.metrics.forgetting,
               r.energy.total_j, r.seconds);
  }
  world.barrier();
  double any_stopped = stopped ? 1 : 0;
  world.allreduce_sum(&any_stopped, 1);
  if (any_stopped > 0) {
    if (job.leader()) fmt::print("cl-edge sweep: stopped; run it again to continue\n");
    return kExitStoppedResumable;
  }
  if (!job.leader()) return 0;
  // The table: mean and std over seeds of each (strategy, rb_size).
  struct Stats {
    std::vector<double> acc, forgetting, bwt, energy, per_kj, seconds;
  };
  std::map<std::pair<size_t, int64_t>, Stats> table;
  std::ofstream csv(o.output_dir + "/sweep.csv");
  csv << "strategy,rb_size,seed,acc,forgetting,bwt,fwt,energy_j,accuracy_per_kj,seconds\n";
  for (const Cell& cell : grid) {
    const ClOptions run =
        sweep_run(o, cell.strategy, std::max<int64_t>(cell.rb_size, 1), cell.seed);
    std::ifstream in(run.output_dir + "/summary.json");
    TURBINE_CHECK(in, "{}/summary.json: the run did not finish", run.output_dir);
    const auto s = nlohmann::ordered_json::parse(in);
    const auto& m = s["metrics"];
    const size_t order =
        size_t(std::find(o.sweep.strategies.begin(), o.sweep.strategies.end(), cell.strategy) -
               o.sweep.strategies.begin());
    Stats& st = table[{order, cell.rb_size}];
    st.acc.push_back(m["acc"]);
    st.forgetting.push_back(m["forgetting"]);
    st.bwt.push_back(m["bwt"]);
    st.energy.push_back(s["energy"]["modelled"]["total_j"]);
    st.per_kj.push_back(s["accuracy_per_kj"]);
    st.seconds.push_back(s["seconds"]);
    csv << fmt::format("{},{},{},{},{},{},{},{},{},{}\n", cell.strategy, cell.rb_size, cell.seed,
                       double(m["acc"]), double(m["forgetting"]), double(m["bwt"]),
                       m["fwt"].is_null() ? std::string("") : fmt::format("{}", double(m["fwt"])),
                       st.energy.back(), st.per_kj.back(), st.seconds.back());
  }
  auto mean_std = [](const std::vector<double>& v, double scale) {
    double mean = 0, var = 0;
    for (const double x : v) mean += x;
    mean /= double(v.size());
    for (const double x : v) var += (x - mean) * (x - mean);
    const double sd = v.size() > 1 ? std::sqrt(var / double(v.size() - 1)) : 0;
    return fmt::format("{:.2f} ± {:.2f}", mean * scale, sd * scale);
  };
  std::ofstream md(o.output_dir + "/sweep.md");
  md << fmt::format("Energy modelled with the {} profile; mean ± std over {} seeds.\n\n",
                    o.profile.name, o.sweep.seeds.size());
  md << "| strategy | rb_size | ACC % | forgetting % | BWT % | energy J | ACC per kJ | time s |\n"
        "|---|---|---|---|---|---|---|---|\n";
  for (const auto& [key, st] : table)
    md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", o.sweep.strategies[key.first],
                      key.second > 0 ? std::to_string(key.second) : "-", mean_std(st.acc, 100),
                      mean_std(st.forgetting, 100), mean_std(st.bwt, 100), mean_std(st.energy, 1),
                      mean_std(st.per_kj, 1), mean_std(st.seconds, 1));
  md.close();
  std::ifstream shown(o.output_dir + "/sweep.md");
  fmt::print("{}", std::string(std::istreambuf_iterator<char>(shown), {}));
  fmt::print("cl-edge sweep: {}/sweep.md and sweep.csv\n", o.output_dir);
  return 0;
}

}  // namespace turbine::cl
