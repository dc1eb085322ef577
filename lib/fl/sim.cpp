// The federated simulation of sim.hpp.
#include "fl/sim.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/signals.hpp"
#include "tensor/hdf5.hpp"
#include "train/classify.hpp"
#include "train/metrics.hpp"
#include "train/schema.hpp"

namespace turbine::fl {

namespace fs = std::filesystem;

int64_t SimOptions::clients_per_round() const {
  const auto by_fraction = int64_t(std::llround(fraction_fit * double(num_clients)));
  return std::min(num_clients, std::max(min_fit_clients, by_fraction));
}

io::ConfigSchema sim_schema() {
  io::ConfigSchema s;
  train::declare_vision_model(s);
  s.string("data.path", "data/fashion-mnist.h5",
           "image data set made by tools/prepare-data --images fashion-mnist");
  s.integer("federation.rounds", 10, "server rounds").at_least(1);
  s.integer("federation.num_clients", 100, "clients in the population").at_least(1);
  s.number("federation.fraction_fit", 0.1, "share of the clients sampled each round")
      .at_least(0)
      .at_most(1);
  s.integer("federation.min_fit_clients", 2, "at least this many clients each round").at_least(1);
  s.string("federation.scheduler", "dynamic",
           "dynamic: a worker gets its next client when it returns one; naive: clients dealt "
           "round robin in advance")
      .one_of({std::string("dynamic"), std::string("naive")});
  s.string("partition.kind", "iid", "how the training split is shared: iid, dirichlet, shards")
      .one_of({std::string("iid"), std::string("dirichlet"), std::string("shards")});
  s.number("partition.alpha", 0.5, "dirichlet: concentration (smaller: fewer classes per client)");
  s.integer("partition.min_partition_size", 10, "dirichlet: at least this many samples a client")
      .at_least(0);
  s.integer("partition.shards_per_client", 2, "shards: shards (of one class each) a client")
      .at_least(1);
  s.integer("local.epochs", 1, "passes over its samples a client makes").at_least(1);
  s.integer("local.max_steps", 0, "> 0: a client stops after this many steps").at_least(0);
  s.integer("local.batch_size", 32, "client mini-batch").at_least(1);
  s.number("local.lr", 0.05, "client SGD learning rate").at_least(0);
  s.number("local.momentum", 0.0, "client SGD momentum").at_least(0).at_most(0.999);
  s.string("strategy.name", "fedavg",
           "fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad, qfedavg, fedmedian, "
           "fedtrimmedavg, krum, multikrum")
      .one_of({std::string("fedavg"), std::string("fedavgm"), std::string("fedprox"),
               std::string("fedadam"), std::string("fedyogi"), std::string("fedadagrad"),
               std::string("qfedavg"), std::string("fedmedian"), std::string("fedtrimmedavg"),
               std::string("krum"), std::string("multikrum")});
  s.number("strategy.proximal_mu", 0.0, "fedprox: the clients' proximal term mu").at_least(0);
  s.number("strategy.server_learning_rate", 1.0, "fedavgm: server learning rate").at_least(0);
  s.number("strategy.server_momentum", 0.0, "fedavgm: server momentum").at_least(0);
  s.number("strategy.eta", 0, "fedadam/fedyogi/fedadagrad: server learning rate; 0: Flower's")
      .at_least(0);
  s.number("strategy.tau", 0, "fedadam/fedyogi/fedadagrad: adaptivity; 0: Flower's").at_least(0);
  s.number("strategy.q_param", 0.2, "qfedavg: q").at_least(0);
  s.number("strategy.qffl_learning_rate", 0.1, "qfedavg: learning rate").at_least(0);
  s.number("strategy.beta", 0.2, "fedtrimmedavg: fraction cut at each end").at_least(0);
  s.integer("strategy.num_malicious_clients", 0, "krum: assumed Byzantine clients").at_least(0);
  s.integer("strategy.num_clients_to_keep", 0, "multikrum: updates averaged").at_least(0);
  s.boolean("dp.enabled", false,
            "client-level differential privacy: updates clipped to dp.clipping_norm, Gaussian "
            "noise of std noise_multiplier x clipping_norm / clients a round; epsilon reported");
  s.number("dp.noise_multiplier", 1.0, "noise std over the clipping norm (sigma)").at_least(0);
  s.number("dp.clipping_norm", 1.0, "L2 bound of each client's update").at_least(0);
  s.number("dp.delta", 0, "the delta epsilon is reported at; 0: 1 / federation.num_clients")
      .at_least(0)
      .at_most(1);
  s.integer("seed", 1234, "seed of the model, partitions, client sampling and shuffling")
      .at_least(0);
  s.string("device", "cpu", "cpu, or cuda (each rank takes the GPU of its local rank)")
      .one_of({std::string("cpu"), std::string("cuda")});
  s.integer("eval.interval", 1, "evaluate the global model every N rounds; 0: the last only")
      .at_least(0);
  s.integer("eval.batch", 256, "test images per forward pass").at_least(1);
  s.integer("checkpoint.interval", 0, "checkpoint every N rounds (and at the end); 0: end only")
      .at_least(0);
  s.integer("checkpoint.keep", 2, "complete checkpoints kept; 0: all").at_least(0);
  s.string("output.dir", "runs/fedsim", "folder for config.yaml, metrics.jsonl, checkpoints/");
  s.string("resume", "never",
           "auto: continue from the newest complete checkpoint in output.dir, if any")
      .one_of({std::string("never"), std::string("auto")});
  return s;
}

SimOptions sim_options(const io::Config& c, int world) {
  SimOptions o;
  o.rounds = c.get<int64_t>("federation.rounds");
  o.num_clients = c.get<int64_t>("federation.num_clients");
  o.fraction_fit = c.get<double>("federation.fraction_fit");
  o.min_fit_clients = c.get<int64_t>("federation.min_fit_clients");
  o.scheduler = c.get<std::string>("federation.scheduler");
  if (o.min_fit_clients > o.num_clients)
    c.fail("federation.min_fit_clients",
           fmt::format("{} clients a round, but the population has {} (federation.num_clients)",
                       o.min_fit_clients, o.num_clients));
  o.partition.kind = c.get<std::string>("partition.kind");
  o.partition.clients = o.num_clients;
  o.partition.alpha = c.get<double>("partition.alpha");
  if (o.partition.kind == "dirichlet" && !(o.partition.alpha > 0))
    c.fail("partition.alpha", fmt::format("alpha must be positive, got {}", o.partition.alpha));
  o.partition.min_partition_size = c.get<int64_t>("partition.min_partition_size");
  o.partition.shards_per_client = c.get<int64_t>("partition.shards_per_client");
  o.local.epochs = c.get<int64_t>("local.epochs");
  o.local.max_steps = c.get<int64_t>("local.max_steps");
  o.local.batch_size = c.get<int64_t>("local.batch_size");
  o.local.lr = c.get<double>("local.lr");
  o.local.momentum = c.get<double>("local.momentum");
  StrategyConfig& st = o.strategy;
  st.name = c.get<std::string>("strategy.name");
  if (st.name == "fedprox") st.proximal_mu = c.get<double>("strategy.proximal_mu");
  o.local.proximal_mu = st.name == "fedprox" ? c.get<double>("strategy.proximal_mu") : 0.0;
  st.server_learning_rate = c.get<double>("strategy.server_learning_rate");
  st.server_momentum = c.get<double>("strategy.server_momentum");
  if (c.get<double>("strategy.eta") > 0) st.eta = c.get<double>("strategy.eta");
  if (c.get<double>("strategy.tau") > 0) st.tau = c.get<double>("strategy.tau");
  st.eta_l = o.local.lr;
  st.q_param = c.get<double>("strategy.q_param");
  st.qffl_learning_rate = c.get<double>("strategy.qffl_learning_rate");
  st.beta = c.get<double>("strategy.beta");
  st.num_malicious_clients = c.get<int64_t>("strategy.num_malicious_clients");
  st.num_clients_to_keep = c.get<int64_t>("strategy.num_clients_to_keep");
  try {
    make_strategy(st);
  } catch (const Error& e) {
    c.fail("strategy.name", e.what());
  }
  o.dp = c.get<bool>("dp.enabled");
  o.dp_config.noise_multiplier = c.get<double>("dp.noise_multiplier");
  o.dp_config.clipping_norm = c.get<double>("dp.clipping_norm");
  o.dp_config.num_sampled_clients = o.clients_per_round();
  o.dp_config.seed = uint64_t(c.get<int64_t>("seed"));
  o.dp_delta =
      c.get<double>("dp.delta") > 0 ? c.get<double>("dp.delta") : 1.0 / double(o.num_clients);
  if (o.dp && !(o.dp_config.clipping_norm > 0))
    c.fail("dp.clipping_norm", "differential privacy needs a positive clipping norm");
  o.data_path = c.get<std::string>("data.path");
  o.model = train::vision_model_from(c, o.data_path);
  o.seed = uint64_t(c.get<int64_t>("seed"));
  o.model.seed = o.seed;
  o.partition.seed = o.seed;
  o.device = c.get<std::string>("device");
  o.eval_interval = c.get<int64_t>("eval.interval");
  o.eval_batch = c.get<int64_t>("eval.batch");
  o.checkpoint_interval = c.get<int64_t>("checkpoint.interval");
  o.checkpoint_keep = c.get<int64_t>("checkpoint.keep");
  o.output_dir = c.get<std::string>("output.dir");
  o.resume = c.get<std::string>("resume") == "auto";
  (void)world;
  o.resolved_config_yaml = train::resolved_yaml(c, {});
  return o;
}

std::vector<int64_t> select_clients(int64_t clients, int64_t count, uint64_t seed, int64_t round) {
  std::vector<int64_t> ids(static_cast<size_t>(clients));
  for (int64_t i = 0; i < clients; ++i) ids[size_t(i)] = i;
  for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates
    const auto r = philox4x32(seed, 0x5e1ec7 + uint64_t(round), uint64_t(i));
    const uint64_t draw = (uint64_t(r[0]) << 32) | r[1];
    std::swap(ids[size_t(i)], ids[size_t(i + int64_t(draw % uint64_t(clients - i)))]);
  }
  ids.resize(static_cast<size_t>(count));
  return ids;
}

namespace {

constexpr int kTagTask = 31, kTagHeader = 32, kTagWeights = 33;

// A client's training seed: the same whichever worker runs it.
uint64_t client_seed(uint64_t seed, int64_t round, int64_t client) {
  const auto r = philox4x32(seed, 0xc1e47 + uint64_t(round), uint64_t(client));
  return (uint64_t(r[0]) << 32) | r[1];
}

struct Outcome {
  LocalResult result;
  int64_t client = -1;
};

// One round's clients, run by the workers (or by rank 0 alone); rank 0
// returns the outcomes in selection order, the workers an empty list.
std::vector<Outcome> run_clients(const SimOptions& o, dist::Communicator& comm,
                                 ClientTrainer& trainer, const data::ImageSet& train,
                                 const std::vector<std::vector<int64_t>>& parts,
                                 const std::vector<float>& global,
                                 const std::vector<int64_t>& selected, int64_t round) {
  auto run_one = [&](int64_t client) {
    return trainer.train(global, train, parts[size_t(client)], o.local,
                         client_seed(o.seed, round, client));
  };
  const int workers = comm.size() - 1;
  const auto k = int64_t(selected.size());
  std::vector<Outcome> out;
  if (workers == 0) {
    for (int64_t client : selected) out.push_back({run_one(client), client});
    return out;
  }
  const int64_t numel = trainer.numel();
  if (comm.rank() != 0) {  // a worker: tasks until the terminator
    for (;;) {
      int64_t task[2];
      comm.recv(task, sizeof task, 0, kTagTask);
      if (task[0] < 0) return out;
      const LocalResult r = run_one(task[0]);
      const double header[6] = {double(task[0]), double(task[1]), double(r.num_examples),
                                double(r.steps), r.train_loss,    r.seconds};
      comm.send(header, sizeof header, 0, kTagHeader);
      comm.send(r.weights.data(), numel * int64_t(sizeof(float)), 0, kTagWeights);
    }
  }
  out.resize(static_cast<size_t>(k));
  auto send_task = [&](int worker, int64_t index) {
    const int64_t task[2] = {index < k ? selected[size_t(index)] : -1, index};
    comm.send(task, sizeof task, worker, kTagTask);
  };
  int64_t next = 0;
  if (o.scheduler == "naive") {  // dealt in advance: worker w takes every W-th client
    for (int w = 1; w <= workers; ++w) {
      for (int64_t i = w - 1; i < k; i += workers) send_task(w, i);
      send_task(w, k);
    }
    next = k;
  } else {
    for (int w = 1; w <= workers; ++w) send_task(w, next < k ? next++ : k);
  }
  for (int64_t received = 0; received < k; ++received) {
    double header[6];
    const int source = comm.recv_any(header, sizeof header, kTagHeader);
    const auto index = int64_t(header[1]);
    Outcome& slot = out[size_t(index)];
    slot.client = int64_t(header[0]);
    slot.result.num_examples = int64_t(header[2]);
    slot.result.steps = int64_t(header[3]);
    slot.result.train_loss = header[4];
    slot.result.seconds = header[5];
    slot.result.weights.resize(static_cast<size_t>(numel));
    comm.recv(slot.result.weights.data(), numel * int64_t(sizeof(float)), source, kTagWeights);
    if (o.scheduler == "dynamic") send_task(source, next < k ? next++ : k);
  }
  return out;
}

// ---- checkpoints: <output>/checkpoints/round_NNNNNN/state.h5, written whole or not at all

std::string round_dir(const SimOptions& o, int64_t round) {
  return fmt::format("{}/checkpoints/round_{:06d}", o.output_dir, round);
}

std::optional<int64_t> newest_checkpoint(const SimOptions& o) {
  std::optional<int64_t> best;
  const fs::path dir = fs::path(o.output_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return best;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("round_", 0) != 0 || name.find('.') != std::string::npos) continue;
    if (!fs::exists(entry.path() / "state.h5")) continue;
    const int64_t round = std::stoll(name.substr(6));
    if (!best || round > *best) best = round;
  }
  return best;
}

// Doubles as the bits of i64 (the tensors have no f64), so they come back exactly.
Tensor double_bits(const std::vector<double>& v) {
  std::vector<int64_t> bits(v.size());
  std::memcpy(bits.data(), v.data(), v.size() * sizeof(double));
  return Tensor::from_vector<int64_t>({int64_t(bits.size())}, bits);
}
std::vector<double> from_double_bits(const Tensor& t) {
  const auto bits = t.to_vector<int64_t>();
  std::vector<double> v(bits.size());
  std::memcpy(v.data(), bits.data(), bits.size() * sizeof(double));
  return v;
}

void save_checkpoint(const SimOptions& o, int64_t round, const std::vector<float>& global,
                     const Strategy& strategy) {
  const std::string dir = round_dir(o, round), staging = dir + ".tmp";
  fs::remove_all(staging);
  fs::create_directories(staging);
  {
    H5File f(staging + "/state.h5", H5File::Mode::create);
    f.write("weights", Tensor::from_vector<float>({int64_t(global.size())}, global));
    f.set_attribute("round", round);
    for (const auto& [key, values] : strategy.save_state())
      f.write("strategy/" + key, double_bits(values));
  }
  std::ofstream(staging + "/config.yaml") << o.resolved_config_yaml;
  fs::remove_all(dir);
  fs::rename(staging, dir);
  if (o.checkpoint_keep > 0) {  // the oldest beyond `keep` go
    std::vector<int64_t> rounds;
    for (const auto& entry : fs::directory_iterator(fs::path(o.output_dir) / "checkpoints")) {
      const std::string name = entry.path().filename().string();
      if (name.rfind("round_", 0) == 0 && name.find('.') == std::string::npos)
        rounds.push_back(std::stoll(name.substr(6)));
    }
    std::sort(rounds.begin(), rounds.end());
    for (size_t i = 0; i + size_t(o.checkpoint_keep) < rounds.size(); ++i)
      fs::remove_all(round_dir(o, rounds[i]));
  }
  log::info("round {}: checkpoint {}", round, dir);
}

int64_t load_checkpoint(const SimOptions& o, int64_t round, std::vector<float>& global,
                        Strategy& strategy) {
  const H5File f(round_dir(o, round) + "/state.h5", H5File::Mode::read);
  const auto weights = f.read("weights").to_vector<float>();
  TURBINE_CHECK(weights.size() == global.size(),
                "{}: {} weights, the model has {}: was it written for another model config?",
                round_dir(o, round), weights.size(), global.size());
  global = weights;
  StrategyState state;
  if (f.exists("strategy"))
    for (const std::string& key : f.list("strategy"))
      state[key] = from_double_bits(f.read("strategy/" + key));
  strategy.load_state(state);
  return f.attribute_int("round");
}

}  // namespace

SimResult simulate(const SimOptions& options, train::Job& job) {
  const SimOptions& o = options;
  dist::Communicator& comm = job.world();
  const Device device = job.pick_device(o.device);
  const data::ImageSet train = data::load_image_split(o.data_path, "train");
  const auto parts = data::partition(train.labels, train.num_classes(), o.partition);
  ClientTrainer trainer(o.model, device);
  std::vector<float> global = trainer.weights();
  std::unique_ptr<Strategy> strategy = make_strategy(o.strategy);
  if (o.dp) strategy = std::make_unique<DpFixedClippingStrategy>(std::move(strategy), o.dp_config);
  std::optional<data::ImageSet> test;
  const bool leader = comm.rank() == 0;
  int64_t start = 0;
  if (leader) {
    test = data::load_image_split(o.data_path, "test");
    fs::create_directories(o.output_dir);
    const auto existing = newest_checkpoint(o);
    TURBINE_CHECK(!existing || o.resume,
                  "{} holds checkpoints (round {}): continue it with --resume or choose another "
                  "output.dir",
                  o.output_dir, existing.value_or(0));
    if (existing) start = load_checkpoint(o, *existing, global, *strategy);
    std::ofstream(o.output_dir + "/config.yaml") << o.resolved_config_yaml;
    int64_t smallest = INT64_MAX, largest = 0;
    for (const auto& p : parts) {
      smallest = std::min(smallest, int64_t(p.size()));
      largest = std::max(largest, int64_t(p.size()));
    }
    log::info(
        "fedsim: {} clients ({} partition, {} to {} samples each), {} a round for {} "
        "rounds, strategy {}, {} scheduler over {} worker rank(s); model {} ({} weights)",
        o.num_clients, o.partition.kind, smallest, largest, o.clients_per_round(), o.rounds,
        strategy->name(), o.scheduler, std::max(1, comm.size() - 1), o.model.arch, trainer.numel());
    if (start > 0) log::info("resuming after round {}", start);
  }
  comm.broadcast(&start, sizeof start, 0);
  comm.broadcast(global.data(), int64_t(global.size() * sizeof(float)), 0);
  std::optional<train::MetricsWriter> metrics;
  if (leader) metrics.emplace(o.output_dir + "/metrics.jsonl", start);

  SimResult result;
  result.rounds = start;
  const auto began = std::chrono::steady_clock::now();
  double simulated = 0;
  for (int64_t round = start + 1; round <= o.rounds; ++round) {
    int32_t stop = leader && stop_requested() ? 1 : 0;
    comm.broadcast(&stop, sizeof stop, 0);
    if (stop) {
      if (leader) save_checkpoint(o, round - 1, global, *strategy);
      result.stopped_early = true;
      break;
    }
    const auto round_start = std::chrono::steady_clock::now();
    const auto selected = select_clients(o.num_clients, o.clients_per_round(), o.seed, round);
    comm.broadcast(global.data(), int64_t(global.size() * sizeof(float)), 0);
    const std::vector<Outcome> outcomes =
        run_clients(o, comm, trainer, train, parts, global, selected, round);
    if (!leader) {
      result.rounds = round;
      continue;
    }
    std::vector<ClientUpdate> updates;
    double loss_sum = 0, examples = 0, slowest = 0, seconds_sum = 0;
    for (const Outcome& out : outcomes) {
      updates.push_back({out.result.weights, out.result.num_examples, out.result.train_loss, 0,
                         fmt::format("client {}", out.client)});
      loss_sum += out.result.train_loss * double(out.result.num_examples);
      examples += double(out.result.num_examples);
      slowest = std::max(slowest, out.result.seconds);
      seconds_sum += out.result.seconds;
    }
    global = strategy->aggregate(global, updates, round);
    simulated += slowest;  // the round lasts as long as its slowest client
    nlohmann::ordered_json line = {
        {"step", round},  // the key the run tools (tools/lib/metrics.py) index by
        {"round", round},
        {"clients", int64_t(outcomes.size())},
        {"train_loss", loss_sum / std::max(examples, 1.0)},
        {"client_seconds_mean", seconds_sum / double(outcomes.size())},
        {"client_seconds_max", slowest},
        {"simulated_s", simulated},
        {"round_s",
         std::chrono::duration<double>(std::chrono::steady_clock::now() - round_start).count()}};
    if (o.dp) {  // the privacy spent so far (RDP accountant, subsampled Gaussian)
      const double q = double(o.clients_per_round()) / double(o.num_clients);
      const PrivacySpent spent =
          rdp_privacy_spent(q, o.dp_config.noise_multiplier, round, o.dp_delta);
      line["epsilon"] = spent.epsilon;
      line["delta"] = o.dp_delta;
    }
    const bool last = round == o.rounds;
    if (last || (o.eval_interval > 0 && round % o.eval_interval == 0)) {
      const EvalResult e = trainer.evaluate(global, *test, 0, test->count, o.eval_batch);
      result.accuracy = e.accuracy;
      result.loss = e.loss;
      line["val_loss"] = e.loss;
      line["accuracy"] = e.accuracy;
      log::info("round {}/{}: train loss {:.4f}, test loss {:.4f}, accuracy {:.2f}% ({:.1f} s){}",
                round, o.rounds, double(line["train_loss"]), e.loss, 100 * e.accuracy,
                double(line["round_s"]),
                o.dp ? fmt::format("; (epsilon {:.3f}, delta {:g})-DP", double(line["epsilon"]),
                                   o.dp_delta)
                     : "");
    }
    line["time_s"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
    metrics->write(line);
    if (last || (o.checkpoint_interval > 0 && round % o.checkpoint_interval == 0))
      save_checkpoint(o, round, global, *strategy);
    result.rounds = round;
  }
  return result;
}

int report_sim(const SimOptions& options, const SimResult& result) {
  if (result.stopped_early) return kExitStoppedResumable;
  log::info("done: {} rounds, test accuracy {:.2f}%, test loss {:.4f}", result.rounds,
            100 * result.accuracy, result.loss);
  log::info("metrics: {}/metrics.jsonl  checkpoints: {}/checkpoints", options.output_dir,
            options.output_dir);
  return 0;
}

}  // namespace turbine::fl
