// The federated simulation of sim.hpp.
#include "fl/sim.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "core/error.hpp"
#include "core/files.hpp"
#include "core/log.hpp"
#include "core/rng.hpp"
#include "core/signals.hpp"
#include "data/token_dataset.hpp"
#include "fl/pool.hpp"
#include "fl/task.hpp"
#include "fl/workers.hpp"
#include "io/model_config.hpp"
#include "tensor/hdf5.hpp"
#include "train/checkpoint.hpp"
#include "train/classify.hpp"
#include "train/metrics.hpp"
#include "train/schema.hpp"

namespace turbine::fl {

namespace fs = std::filesystem;

int64_t SimOptions::clients_per_round() const {
  const auto by_fraction = int64_t(std::llround(fraction_fit * double(num_clients)));
  return std::min(num_clients, std::max(min_fit_clients, by_fraction));
}

namespace {

// The clients' devices, workloads and availability, and the workers' budgets.
void declare_population(io::ConfigSchema& s) {
  s.numbers("devices.compute", {1.0},
            "compute tiers: a client's share of a worker's cores, each in (0, 1]");
  s.numbers("devices.compute_weights", {},
            "how likely each compute tier is (relative); empty: equally likely");
  s.numbers("devices.memory_mb", {},
            "memory caps (MiB) drawn uniformly; a client past its cap fails; empty: no cap");
  s.numbers("devices.bandwidth_mbps", {0, 0},
            "[lo, hi]: bandwidth drawn log-uniformly (Mb/s) for the model's download and upload; "
            "[0, 0]: communication takes no time");
  s.string("devices.trace", "",
           "CSV of devices (compute, memory_mb, bandwidth_mbps, batch_size, local_steps); client "
           "c takes row c mod rows. Overrides the drawn devices");
  s.integers("workload.batch_sizes", {}, "batch sizes drawn per client; empty: local.batch_size");
  s.integers("workload.local_steps", {0, 0},
             "[lo, hi]: local steps drawn per client; [0, 0]: local.epochs and local.max_steps");
  s.string("availability.trace", "",
           "CSV of online windows (client, start_s, end_s) in simulated seconds");
  s.number("availability.mean_online_s", 0, "drawn availability: mean online spell (s)")
      .at_least(0);
  s.number("availability.mean_offline_s", 0,
           "drawn availability: mean offline spell (s); 0: always online")
      .at_least(0);
  s.number("budget.worker_cores", 0,
           "cores of a worker rank that compute shares are of; 0: the node's cores over its ranks")
      .at_least(0);
  s.string("budget.gpu_share", "auto",
           "on a GPU, a client's compute share as an SM partition (green contexts) or a time "
           "slice; auto: partitions where the device offers them")
      .one_of({std::string("auto"), std::string("sm_partition"), std::string("time_slice")});
  s.number("budget.worker_memory_mb", 0,
           "memory a worker's running clients' caps may sum to (MiB); 0: no limit")
      .at_least(0);
}

// Reads what declare_population declared into `o` (o.num_clients set), and
// builds the population (o.checked_population) to refuse bad devices and
// traces before any round.
void population_from(const io::Config& c, SimOptions& o) {
  PopulationConfig& pc = o.population;
  pc.clients = o.num_clients;
  pc.seed = uint64_t(c.get<int64_t>("seed"));
  pc.compute = c.get<std::vector<double>>("devices.compute");
  pc.compute_weights = c.get<std::vector<double>>("devices.compute_weights");
  pc.memory_mb = c.get<std::vector<double>>("devices.memory_mb");
  const auto bandwidth = c.get<std::vector<double>>("devices.bandwidth_mbps");
  if (bandwidth.size() != 2)
    c.fail("devices.bandwidth_mbps", "two numbers expected: [lo, hi] (Mb/s), or [0, 0]");
  pc.bandwidth_lo = bandwidth[0];
  pc.bandwidth_hi = bandwidth[1];
  pc.device_trace = c.get<std::string>("devices.trace");
  pc.batch_sizes = c.get<std::vector<int64_t>>("workload.batch_sizes");
  const auto steps = c.get<std::vector<int64_t>>("workload.local_steps");
  if (steps.size() != 2) c.fail("workload.local_steps", "two numbers expected: [lo, hi]");
  pc.local_steps_lo = steps[0];
  pc.local_steps_hi = steps[1];
  pc.availability_trace = c.get<std::string>("availability.trace");
  pc.mean_online_s = c.get<double>("availability.mean_online_s");
  pc.mean_offline_s = c.get<double>("availability.mean_offline_s");
  o.worker_cores = c.get<double>("budget.worker_cores");
  if (o.worker_cores > 0 && o.worker_cores < 1)
    c.fail("budget.worker_cores",
           fmt::format("a worker has at least one core, got {}", o.worker_cores));
  o.worker_memory_mb = c.get<double>("budget.worker_memory_mb");
  o.gpu_share = gpu_share_named(c.get<std::string>("budget.gpu_share"));
  {  // every client's device and workload, checked before any round
    std::shared_ptr<const Population> population;
    const std::string key = !pc.device_trace.empty()         ? "devices.trace"
                            : !pc.availability_trace.empty() ? "availability.trace"
                                                             : "devices.compute";
    try {
      population = std::make_shared<const Population>(pc);
    } catch (const Error& e) {
      c.fail(key, e.what());
    }
    for (int64_t i = 0; i < o.num_clients && o.worker_memory_mb > 0; ++i)
      if (population->profile(i).memory_mb > o.worker_memory_mb)
        c.fail(pc.device_trace.empty() ? "devices.memory_mb" : "devices.trace",
               fmt::format("client {} has a memory cap of {} MiB, more than a worker holds "
                           "(budget.worker_memory_mb {}): it fits on no worker",
                           i, population->profile(i).memory_mb, o.worker_memory_mb));
    o.checked_population = population;
  }
}

}  // namespace

io::ConfigSchema sim_schema() {
  io::ConfigSchema s;
  train::declare_vision_model(s, {"bloom"});
  io::declare_bloom_config(s);  // model.arch: bloom
  s.string("data.path", "data/fashion-mnist.h5",
           "image data set made by tools/prepare-data --images fashion-mnist, or (model.arch "
           "bloom) a token data set made by tools/prepare-data");
  s.integer("data.seq_len", 64, "model.arch bloom: tokens a training window").at_least(1);
  s.string("data.groups", "",
           "model.arch bloom: a file naming each input document's group (data/kjv.books: the "
           "KJV's book of each chapter), for partition.kind groups");
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
  s.string("federation.sampling", "uniform",
           "uniform: clients sampled among all (an offline one drops out); available: among "
           "those online at the round's start")
      .one_of({std::string("uniform"), std::string("available")});
  s.integer("federation.concurrency", 0,
            "fedbuff: clients training at once; 0: as many as a round would sample")
      .at_least(0);
  s.number("federation.round_deadline_s", 0,
           "simulated seconds a round waits; later clients are stragglers (dropped); 0: none")
      .at_least(0);
  declare_population(s);
  s.string("partition.kind", "iid",
           "how the training split is shared: iid, dirichlet, shards (by class labels), or "
           "groups (text: one client a group of data.groups)")
      .one_of({std::string("iid"), std::string("dirichlet"), std::string("shards"),
               std::string("groups")});
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
           "fedtrimmedavg, krum, multikrum, fedbuff (asynchronous)")
      .one_of({std::string("fedavg"), std::string("fedavgm"), std::string("fedprox"),
               std::string("fedadam"), std::string("fedyogi"), std::string("fedadagrad"),
               std::string("qfedavg"), std::string("fedmedian"), std::string("fedtrimmedavg"),
               std::string("krum"), std::string("multikrum"), std::string("fedbuff")});
  s.integer("strategy.buffer_size", 10, "fedbuff: client updates per server step (K)").at_least(1);
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
  s.integer("eval.client_samples", 128,
            "each client evaluates the global model it receives on up to this many of its own "
            "samples before training (the per-client accuracy distribution; QFedAvg's loss); 0: "
            "off")
      .at_least(0);
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
  o.sampling = c.get<std::string>("federation.sampling");
  o.round_deadline_s = c.get<double>("federation.round_deadline_s");
  population_from(c, o);
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
  o.local.eval_samples = c.get<int64_t>("eval.client_samples");
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
  st.buffer_size = c.get<int64_t>("strategy.buffer_size");
  o.concurrency = c.get<int64_t>("federation.concurrency");
  if (o.asynchronous() && c.get<bool>("dp.enabled"))
    c.fail("dp.enabled",
           "differential privacy is implemented for the synchronous strategies, not fedbuff");
  if (o.asynchronous() && o.round_deadline_s > 0)
    c.fail("federation.round_deadline_s",
           "fedbuff has no rounds to wait for: its clients are never stragglers (set 0)");
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
  o.seed = uint64_t(c.get<int64_t>("seed"));
  o.text = c.get<std::string>("model.arch") == "bloom";
  if (o.text) {  // a language model on a token data set
    o.text_model = io::bloom_config_from(c);
    o.seq_len = c.get<int64_t>("data.seq_len");
    o.groups_path = c.get<std::string>("data.groups");
    try {
      const data::TokenDataset set = data::TokenDataset::open(o.data_path);
      if (!c.has("model.vocab_size")) o.text_model.vocab_size = set.vocab_size();
    } catch (const Error& e) {
      c.fail("data.path", e.what());
    }
    if (o.partition.kind == "dirichlet" || o.partition.kind == "shards")
      c.fail("partition.kind",
             fmt::format("{} partitions by class labels, which a language model's data lacks: "
                         "use iid or groups",
                         o.partition.kind));
  } else {
    o.model = train::vision_model_from(c, o.data_path);
    o.model.seed = o.seed;
  }
  if (o.partition.kind == "groups") {
    if (o.groups_path.empty())
      c.fail("partition.kind",
             "groups partitions a text data set by data.groups (one group name a line, a line "
             "an input document, e.g. data/kjv.books by tools/get-kjv): set data.groups");
    std::ifstream in(o.groups_path);
    if (!in) c.fail("data.groups", fmt::format("{}: cannot open the groups file", o.groups_path));
    std::set<std::string> names;
    for (std::string line; std::getline(in, line);) names.insert(line);
    if (int64_t(names.size()) != o.num_clients)
      c.fail("federation.num_clients",
             fmt::format("{} names {} groups, one client each: set federation.num_clients: {}",
                         o.groups_path, names.size(), names.size()));
  }
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

// A client's training seed: the same whichever worker runs it.
uint64_t client_seed(uint64_t seed, int64_t round, int64_t client) {
  const auto r = philox4x32(seed, 0xc1e47 + uint64_t(round), uint64_t(client));
  return (uint64_t(r[0]) << 32) | r[1];
}

// The cores a worker's shares are of.
double worker_cores(const SimOptions& o, dist::Communicator& comm) {
  if (o.worker_cores > 0) return o.worker_cores;
  const int local = comm.node_local().size();
  const int ranks_computing = comm.size() > 1 ? local : 1;  // rank 0 mostly waits
  return std::max(1.0, std::floor(double(std::thread::hardware_concurrency()) /
                                  double(std::max(1, ranks_computing))));
}

// What the server knows of the clients' runtimes: each client's last
// measured time, and for clients never seen a rate (seconds x share per
// sample) over all of them. Only the dynamic scheduler's order uses it.
class RuntimePredictor {
 public:
  double predict(int64_t client, double share, double samples) const {
    const auto it = last_.find(client);
    if (it != last_.end()) return it->second;
    return rate_ * samples / share;
  }
  void observe(int64_t client, double share, double samples, double seconds) {
    last_[client] = seconds;
    const double rate = seconds * share / std::max(samples, 1.0);
    rate_ = seen_ == 0 ? rate : 0.8 * rate_ + 0.2 * rate;
    ++seen_;
  }

 private:
  std::map<int64_t, double> last_;
  double rate_ = 1e-3;
  int64_t seen_ = 0;
};

// The samples a task trains on (steps x batch): the predictor's measure of work.
double task_samples(const LocalTraining& local, int64_t partition_size) {
  const int64_t per_epoch = (partition_size + local.batch_size - 1) / local.batch_size;
  int64_t steps = per_epoch * local.epochs;
  if (local.max_steps > 0) steps = std::min(steps, local.max_steps);
  return double(steps * local.batch_size);
}

// The server's clocks: simulated seconds, and (FedBuff) client updates taken.
struct Clock {
  double simulated = 0;
  int64_t updates = 0;
};

// ---- checkpoints: <output>/checkpoints/round_NNNNNN/state.h5, written whole or not at all

std::string round_dir(const SimOptions& o, int64_t round) {
  return fmt::format("{}/checkpoints/round_{:06d}", o.output_dir, round);
}

// The rounds output.dir holds checkpoints of (folders with a state.h5,
// unverified), in order.
std::vector<int64_t> checkpoint_rounds(const SimOptions& o) {
  const fs::path dir = fs::path(o.output_dir) / "checkpoints";
  std::vector<int64_t> rounds;
  if (!fs::is_directory(dir)) return rounds;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("round_", 0) != 0 || name.find('.') != std::string::npos) continue;
    if (!fs::exists(entry.path() / "state.h5")) continue;
    rounds.push_back(std::stoll(name.substr(6)));
  }
  std::sort(rounds.begin(), rounds.end());
  return rounds;
}

// The newest intact checkpoint among `rounds` (checkpoint_rounds'); damaged
// ones are named and moved aside (train::newest_intact): for --resume only.
std::optional<int64_t> newest_checkpoint(const SimOptions& o, const std::vector<int64_t>& rounds) {
  std::vector<std::string> folders;
  for (const int64_t round : rounds) folders.push_back(round_dir(o, round));
  const auto chosen = train::newest_intact(folders, train::verify_checksums);
  if (!chosen) return std::nullopt;
  return rounds[size_t(std::find(folders.begin(), folders.end(), *chosen) - folders.begin())];
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
                     const Strategy& strategy, const Clock& clock) {
  const std::string dir = round_dir(o, round), staging = dir + ".tmp";
  const StrategyState state = strategy.save_state();
  double needed = 128 * 1024 + 4.0 * double(global.size()) + double(o.resolved_config_yaml.size());
  for (const auto& [key, values] : state) needed += 8.0 * double(values.size());
  try {
    fs::create_directories(fs::path(dir).parent_path());
    train::check_free_space(fs::path(dir).parent_path().string(), needed,
                            "free space, lower checkpoint.keep or set output.dir elsewhere");
    fs::remove_all(staging);
    fs::create_directories(staging);
    H5File f(staging + "/state.h5", H5File::Mode::create);
    f.write("weights", Tensor::from_vector<float>({int64_t(global.size())}, global));
    f.set_attribute("round", round);
    f.set_attribute("simulated_s", clock.simulated);
    f.set_attribute("client_updates", clock.updates);
    for (const auto& [key, values] : state) f.write("strategy/" + key, double_bits(values));
    f.close();
    {
      std::ofstream yaml(staging + "/config.yaml");
      yaml << o.resolved_config_yaml;
      yaml.close();
      TURBINE_CHECK(yaml.good(), "{}/config.yaml: write failed", staging);
    }
    const auto files = train::digest_files(staging, {"state.h5", "config.yaml"});
    fs::remove_all(dir);
    train::seal_checkpoint(staging, dir, round, files);
  } catch (const std::exception& e) {
    std::error_code ignored;
    fs::remove_all(staging, ignored);
    const std::string cause = write_failure_cause(fs::path(dir).parent_path().string());
    TURBINE_FAIL(
        "checkpoint round {} abandoned ({}{}); it needs about {}; its partial files are "
        "removed; the newest complete checkpoint is intact: continue from it with --resume",
        round, e.what(), cause.empty() ? "" : "; " + cause, human_bytes(needed));
  }
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
                        Strategy& strategy, Clock& clock) {
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
  clock.simulated = f.attribute_double("simulated_s");
  clock.updates = f.attribute_int("client_updates");
  return f.attribute_int("round");
}

// What rank 0 holds while it serves: the synchronous rounds and FedBuff's
// asynchronous run share it.
struct Server {
  const SimOptions& o;
  const Population& population;
  const std::vector<std::vector<int64_t>>& parts;
  ClientTrainer& trainer;  // evaluates the global model
  Strategy& strategy;
  WorkerGroup& group;
  train::MetricsWriter& metrics;
  train::MetricsWriter& client_log;
  std::vector<float> global;
  Clock clock;
  RuntimePredictor predictor;
  SimResult result;
  std::chrono::steady_clock::time_point began = std::chrono::steady_clock::now();

  int64_t model_bytes() const { return trainer.numel() * int64_t(sizeof(float)); }

  ClientTask task_for(int64_t client, int64_t index, uint64_t seed) const {
    const ClientProfile& p = population.profile(client);
    ClientTask t;
    t.client = client;
    t.index = index;
    t.share = p.compute;
    t.memory_mb = p.memory_mb;
    t.batch_size = p.batch_size;
    t.local_steps = p.local_steps;
    t.seed = seed;
    return t;
  }
  double predict(const ClientTask& t) const {
    return predictor.predict(
        t.client, t.share,
        task_samples(local_for(o.local, t), int64_t(parts[size_t(t.client)].size())));
  }
  double communication_s(int64_t client) const {
    return population.profile(client).communication_seconds(model_bytes());
  }
};

// One round's (or server step's) tally of its clients.
struct Tally {
  std::map<std::string, int64_t> fates = {
      {"ok", 0}, {"dropped", 0}, {"straggler", 0}, {"failed", 0}};
  double loss_sum = 0, examples = 0, wall_max = 0, wall_sum = 0;
  int64_t ran = 0;
  std::vector<double> client_accuracy, staleness;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();

  void fill(nlohmann::ordered_json& line) {
    int64_t total = 0;
    for (const auto& [fate, n] : fates) total += n;
    line["clients"] = total;
    line["clients_ok"] = fates["ok"];
    line["clients_dropped"] = fates["dropped"];
    line["clients_straggled"] = fates["straggler"];
    line["clients_failed"] = fates["failed"];
    line["train_loss"] = examples > 0 ? loss_sum / examples : std::nan("");
    line["client_seconds_mean"] = ran > 0 ? wall_sum / double(ran) : 0.0;
    line["client_seconds_max"] = wall_max;
    if (!client_accuracy.empty()) {  // the global model on each client's own data
      std::sort(client_accuracy.begin(), client_accuracy.end());
      auto quantile = [&](double q) {
        return client_accuracy[size_t(std::lround(q * double(client_accuracy.size() - 1)))];
      };
      double sum = 0;
      for (double a : client_accuracy) sum += a;
      line["client_accuracy_mean"] = sum / double(client_accuracy.size());
      line["client_accuracy_min"] = client_accuracy.front();
      line["client_accuracy_p10"] = quantile(0.1);
      line["client_accuracy_p50"] = quantile(0.5);
      line["client_accuracy_p90"] = quantile(0.9);
    }
    if (!staleness.empty()) {
      double sum = 0, worst = 0;
      for (double s : staleness) {
        sum += s;
        worst = std::max(worst, s);
      }
      line["staleness_mean"] = sum / double(staleness.size());
      line["staleness_max"] = worst;
    }
  }
};

// The fate of a client that ran from simulated time `start` for `sim_s`.
std::string fate_of(const Server& s, const ClientOutcome& out, double start, double sim_s) {
  if (out.status == ClientStatus::out_of_memory) return "failed";
  if (s.o.round_deadline_s > 0 && sim_s > s.o.round_deadline_s) return "straggler";
  if (s.population.online_until(out.task.client, start) < start + sim_s) return "dropped";
  return "ok";
}

// Counts a client that ran into the tally and clients.jsonl; learns its runtime.
void record(Server& s, Tally& tally, int64_t step, const Ran& r, const std::string& fate,
            double sim_s, std::optional<int64_t> staleness) {
  const ClientOutcome& out = r.outcome;
  const ClientProfile& p = s.population.profile(out.task.client);
  ++tally.fates[fate];
  ++tally.ran;
  tally.wall_max = std::max(tally.wall_max, out.result.seconds);
  tally.wall_sum += out.result.seconds;
  const LocalTraining local = local_for(s.o.local, out.task);
  if (out.status == ClientStatus::ok)
    s.predictor.observe(out.task.client, out.task.share,
                        double(out.result.steps * local.batch_size), out.result.seconds);
  if (fate == "ok") {
    tally.loss_sum += out.result.train_loss * double(out.result.num_examples);
    tally.examples += double(out.result.num_examples);
    if (staleness) tally.staleness.push_back(double(*staleness));
  }
  if (out.result.eval_count > 0) tally.client_accuracy.push_back(out.result.eval_accuracy);
  nlohmann::ordered_json line = {
      {"step", step},
      {"client", out.task.client},
      {"fate", fate},
      {"worker", r.worker + (s.group.remote() ? 1 : 0)},  // its rank
      {"compute", out.task.share},
      {"threads", out.threads},
      {"sms", out.sms},
      {"memory_mb", out.task.memory_mb},
      {"bandwidth_mbps", p.bandwidth_mbps},
      {"batch_size", local.batch_size},
      {"steps", out.result.steps},
      {"compute_s", out.result.seconds},
      {"cpu_s", out.cpu_seconds},
      {"throttled_s", out.slept_seconds},
      {"comm_s", s.communication_s(out.task.client)},
      {"simulated_s", sim_s},
      {"peak_mb", double(out.peak_bytes) / (1 << 20)},
      {"accuracy", out.result.eval_count > 0 ? out.result.eval_accuracy : std::nan("")},
      {"loss", out.result.eval_count > 0 ? out.result.eval_loss : std::nan("")}};
  if (staleness) line["staleness"] = *staleness;
  s.client_log.write(line);
}

// The end of round (server step) `round`: evaluation when due, the metrics
// line, the checkpoint when due.
void close_round(Server& s, int64_t round, nlohmann::ordered_json line, Tally& tally) {
  const SimOptions& o = s.o;
  const double round_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - tally.started).count();
  tally.fill(line);
  line["simulated_s"] = s.clock.simulated;
  line["round_s"] = round_s;
  line["clients_per_s"] = double(tally.ran) / std::max(round_s, 1e-9);
  if (o.dp) {  // the privacy spent so far (RDP accountant, subsampled Gaussian)
    const double q = double(o.clients_per_round()) / double(o.num_clients);
    line["epsilon"] = rdp_privacy_spent(q, o.dp_config.noise_multiplier, round, o.dp_delta).epsilon;
    line["delta"] = o.dp_delta;
  }
  const bool last = round == o.rounds;
  if (last || (o.eval_interval > 0 && round % o.eval_interval == 0)) {
    const EvalResult e = s.trainer.evaluate_test(s.global, o.eval_batch);
    s.result.accuracy = e.accuracy;
    s.result.loss = e.loss;
    line["val_loss"] = e.loss;
    line["accuracy"] = e.accuracy;
    const double train_loss = line["train_loss"].is_number() ? double(line["train_loss"]) : NAN;
    log::info(
        "{} {}/{}: {} of {} clients ok, train loss {:.4f}, test loss {:.4f}, accuracy {:.2f}% "
        "({:.1f} s, {} simulated){}",
        o.asynchronous() ? "server step" : "round", round, o.rounds, tally.fates["ok"],
        int64_t(line["clients"]), train_loss, e.loss, 100 * e.accuracy, round_s,
        train::format_duration(s.clock.simulated),
        o.dp ? fmt::format("; (epsilon {:.3f}, delta {:g})-DP", double(line["epsilon"]), o.dp_delta)
             : "");
  }
  line["time_s"] =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - s.began).count();
  s.metrics.write(line);
  if (last || (o.checkpoint_interval > 0 && round % o.checkpoint_interval == 0))
    save_checkpoint(o, round, s.global, s.strategy, s.clock);
  s.result.rounds = round;
  tally = Tally{};
}

// Synchronous rounds: sample, run every client, aggregate in selection order.
void run_rounds(Server& s, int64_t start) {
  const SimOptions& o = s.o;
  for (int64_t round = start + 1; round <= o.rounds; ++round) {
    if (stop_requested()) {
      save_checkpoint(o, round - 1, s.global, s.strategy, s.clock);
      s.result.stopped_early = true;
      return;
    }
    Tally tally;
    const double now = s.clock.simulated;
    // Sampling: among all clients, or among those online now.
    std::vector<int64_t> candidates;
    for (int64_t c = 0; c < o.num_clients; ++c)
      if (o.sampling == "uniform" || s.population.online(c, now)) candidates.push_back(c);
    const int64_t count = std::min(o.clients_per_round(), int64_t(candidates.size()));
    std::vector<int64_t> selected;
    for (int64_t pick : select_clients(int64_t(candidates.size()), count, o.seed, round))
      selected.push_back(candidates[size_t(pick)]);
    // Those online run; the others drop out at once.
    s.group.set_model(s.global);
    s.group.restart_dealing();
    int64_t index = 0;
    for (int64_t c : selected) {
      if (!s.population.online(c, now)) {
        ++tally.fates["dropped"];
        continue;
      }
      const ClientTask t = s.task_for(c, index++, client_seed(o.seed, round, c));
      s.group.submit(t, s.predict(t));
    }
    std::vector<Ran> ran;
    while (s.group.outstanding() > 0)
      if (auto r = s.group.next(0.05)) ran.push_back(std::move(*r));
    std::sort(ran.begin(), ran.end(), [](const Ran& a, const Ran& b) {
      return a.outcome.task.index < b.outcome.task.index;
    });
    // Fates by the simulated clock; the accepted updates in selection order.
    std::vector<ClientUpdate> updates;
    double round_sim = 0;
    for (const Ran& r : ran) {
      const ClientOutcome& out = r.outcome;
      const double sim_s = out.result.seconds + s.communication_s(out.task.client);
      const std::string fate = fate_of(s, out, now, sim_s);
      record(s, tally, round, r, fate, sim_s, std::nullopt);
      if (fate == "ok") {
        round_sim = std::max(round_sim, sim_s);
        // QFedAvg's F_k(w^t): the received model's loss on the client's data if measured.
        const double loss =
            out.result.eval_count > 0 ? out.result.eval_loss : out.result.train_loss;
        updates.push_back({out.result.weights, out.result.num_examples, loss, 0,
                           fmt::format("client {}", out.task.client)});
      } else if (fate == "straggler") {
        round_sim = std::max(round_sim, o.round_deadline_s);
      }
    }
    if (updates.empty())
      round_sim = o.round_deadline_s > 0 ? o.round_deadline_s : std::max(round_sim, 60.0);
    if (!updates.empty() && int64_t(updates.size()) >= std::min(o.min_fit_clients, count))
      s.global = s.strategy.aggregate(s.global, updates, round);
    else
      log::warn(
          "round {}: {} of {} clients returned an update (min_fit_clients {}): the global model "
          "stays as it was",
          round, updates.size(), selected.size(), o.min_fit_clients);
    s.clock.simulated += round_sim;
    close_round(s, round,
                {{"step", round},  // the key the run tools (tools/lib/metrics.py) index by
                 {"round", round},
                 {"round_simulated_s", round_sim}},
                tally);
  }
}

// FedBuff (Nguyen et al. 2022), asynchronous: `concurrency` clients train at
// once, each from the global model of the moment it starts; their deltas
// reach the strategy in the order of their simulated completion times,
// weighted by staleness, and every buffer_size of them make a server step
// (a "round" in metrics.jsonl and checkpoints). A finished client is
// replaced at once. Simulated completion = start + compute under the
// budget + communication; a result is taken only when no client still
// running could complete earlier (its compute so far is a lower bound), so
// the order is the simulated one while the clients run side by side.
void run_async(Server& s, int64_t start) {
  const SimOptions& o = s.o;
  struct Flight {
    ClientTask task;
    double start = 0;
    int64_t version = 0;
    std::optional<Ran> ran;
  };
  std::map<int64_t, Flight> flights;
  std::map<int64_t, std::vector<float>> models;  // by version, while a flight needs one
  int64_t version = start, next_index = 0, failed_in_a_row = 0;
  uint64_t draws = uint64_t(s.clock.updates) * 7919;  // fresh draws after a resume
  models[version] = s.global;
  s.group.set_model(s.global);
  Tally tally;
  const int64_t concurrency = o.concurrency > 0 ? o.concurrency : o.clients_per_round();
  auto completion = [&](const Flight& f) {
    const ClientOutcome& out = f.ran->outcome;
    return f.start + out.result.seconds +
           (out.status == ClientStatus::ok ? s.communication_s(out.task.client) : 0.0);
  };
  auto launch = [&] {
    for (int64_t attempts = 0; int64_t(flights.size()) < concurrency && attempts < o.num_clients;
         ++attempts) {
      const double now = s.clock.simulated;
      std::vector<int64_t> candidates;
      std::set<int64_t> busy;
      for (const auto& [index, f] : flights) busy.insert(f.task.client);
      for (int64_t c = 0; c < o.num_clients; ++c)
        if (!busy.count(c) && (o.sampling == "uniform" || s.population.online(c, now)))
          candidates.push_back(c);
      if (candidates.empty()) return;
      const auto r = philox4x32(o.seed, 0xa5c11e, draws++);
      const int64_t client =
          candidates[size_t(((uint64_t(r[0]) << 32) | r[1]) % uint64_t(candidates.size()))];
      if (!s.population.online(client, now)) {
        ++tally.fates["dropped"];
        continue;
      }
      const ClientTask t = s.task_for(client, next_index++, (uint64_t(r[2]) << 32) | r[3]);
      flights[t.index] = {t, now, version, std::nullopt};
      s.group.submit(t, s.predict(t));
    }
  };
  auto take = [&](double timeout) {
    if (auto r = s.group.next(timeout)) flights.at(r->outcome.task.index).ran = std::move(*r);
  };
  while (version < o.rounds) {
    if (stop_requested()) {
      save_checkpoint(o, version, s.global, s.strategy, s.clock);
      s.result.stopped_early = true;
      return;
    }
    launch();
    if (flights.empty()) {  // nobody online: wait a simulated minute
      s.clock.simulated += 60;
      continue;
    }
    while (s.group.outstanding() > 0) {  // everything finished so far
      const int64_t before = s.group.outstanding();
      take(0);
      if (s.group.outstanding() == before) break;
    }
    // The earliest simulated completion known, if nothing running could beat it.
    const Flight* first = nullptr;
    for (const auto& [index, f] : flights)
      if (f.ran && (!first || completion(f) < completion(*first))) first = &f;
    bool blocked = first == nullptr;
    for (const auto& [index, f] : flights) {
      if (blocked) break;
      if (f.ran) continue;
      const double running = std::max(0.0, s.group.running_for(index).value_or(0.0) - 0.05);
      if (f.start + running < completion(*first)) blocked = true;
    }
    if (blocked) {
      take(0.05);
      continue;
    }
    const Flight f = *first;
    flights.erase(f.task.index);
    const ClientOutcome& out = f.ran->outcome;
    const double done = completion(f);
    s.clock.simulated = std::max(s.clock.simulated, done);
    const std::string fate = fate_of(s, out, f.start, done - f.start);
    record(s, tally, version + 1, *f.ran, fate, done - f.start, version - f.version);
    // No server step can come if no client ever returns an update.
    failed_in_a_row = fate == "ok" ? 0 : failed_in_a_row + 1;
    TURBINE_CHECK(failed_in_a_row < std::max<int64_t>(1000, 10 * o.num_clients),
                  "fedbuff: the last {} clients all failed, dropped out or straggled (see "
                  "clients.jsonl): no server step can come; check the memory caps and the "
                  "availability",
                  failed_in_a_row);
    if (fate == "ok") {
      const std::vector<float>& from = models.at(f.version);
      std::vector<float> delta(out.result.weights.size());
      for (size_t i = 0; i < delta.size(); ++i) delta[i] = out.result.weights[i] - from[i];
      const double loss = out.result.eval_count > 0 ? out.result.eval_loss : out.result.train_loss;
      const std::vector<ClientUpdate> update = {{std::move(delta), out.result.num_examples, loss,
                                                 version - f.version,
                                                 fmt::format("client {}", out.task.client)}};
      s.global = s.strategy.aggregate(s.global, update, version + 1);
      if (++s.clock.updates % o.strategy.buffer_size == 0) {  // a server step
        ++version;
        models[version] = s.global;
        s.group.set_model(s.global);
        close_round(s, version, {{"step", version}, {"round", version}}, tally);
      }
    }
    for (auto it = models.begin(); it != models.end();) {  // versions no flight needs
      bool needed = it->first == version;
      for (const auto& [index, other] : flights) needed = needed || other.version == it->first;
      it = needed ? std::next(it) : models.erase(it);
    }
  }
}

// The task the options describe, its data loaded.
std::unique_ptr<Task> make_task(const SimOptions& o) {
  if (o.text)
    return std::make_unique<TextTask>(o.data_path, o.groups_path, o.seq_len, o.text_model, o.seed);
  return std::make_unique<ImageTask>(data::load_image_split(o.data_path, "train"),
                                     data::load_image_split(o.data_path, "test"), o.model);
}

// The clients' training samples.
std::vector<std::vector<int64_t>> partition_of(const SimOptions& o, const Task& task) {
  if (o.partition.kind == "groups") {
    auto parts = task.natural_partition();
    const auto names = task.group_names();
    TURBINE_CHECK(int64_t(parts.size()) == o.num_clients,
                  "{} groups, {} clients: set federation.num_clients: {}", parts.size(),
                  o.num_clients, parts.size());
    for (size_t i = 0; i < parts.size(); ++i)
      TURBINE_CHECK(!parts[i].empty(),
                    "group '{}' has no training window of data.seq_len {} + 1 tokens, so its "
                    "client has nothing to train on: use a shorter data.seq_len",
                    names[i], o.seq_len);
    return parts;
  }
  std::vector<std::vector<int64_t>> parts;
  if (task.labels().empty()) {  // iid needs no labels
    const std::vector<int32_t> none(static_cast<size_t>(task.train_count()), 0);
    parts = data::partition(none, 1, o.partition);
  } else {
    parts = data::partition(task.labels(), task.num_classes(), o.partition);
  }
  for (size_t i = 0; i < parts.size(); ++i)
    TURBINE_CHECK(!parts[i].empty(),
                  "partition {}: client {} of {} has no sample to train on: set "
                  "partition.min_partition_size to at least 1 (or fewer clients, or a larger "
                  "alpha)",
                  o.partition.kind, i, parts.size());
  return parts;
}

}  // namespace

SimResult simulate(const SimOptions& options, train::Job& job) {
  const SimOptions& o = options;
  dist::Communicator& comm = job.world();
  const Device device = job.pick_device(o.device);
  const std::unique_ptr<Task> task = make_task(o);
  const auto parts = partition_of(o, *task);
  const double cores = worker_cores(o, comm);
  const bool leader = comm.rank() == 0;
  // The clients run on the workers, or on rank 0 itself when it is alone.
  std::optional<ClientPool> pool;
  if (!leader || comm.size() == 1) pool.emplace(*task, device, parts, o.local, cores, o.gpu_share);
  if (!leader) {  // a worker: serves rank 0 until the end of the run
    SimResult result;
    result.stopped_early = serve_clients(comm, *pool);
    return result;
  }
  const std::shared_ptr<const Population> built =
      o.checked_population ? o.checked_population
                           : std::make_shared<const Population>(o.population);
  const Population& population = *built;
  ClientTrainer trainer(*task, device);
  std::unique_ptr<Strategy> strategy = make_strategy(o.strategy);
  if (o.dp) strategy = std::make_unique<DpFixedClippingStrategy>(std::move(strategy), o.dp_config);
  WorkerGroup group(comm, pool ? &*pool : nullptr, trainer.numel(), o.scheduler,
                    o.worker_memory_mb);
  std::vector<float> global = trainer.weights();
  Clock clock;
  int64_t start = 0;
  try {
    fs::create_directories(o.output_dir);
    // Without --resume a folder with checkpoints is refused as it is (none
    // verified, none moved).
    const std::vector<int64_t> rounds = checkpoint_rounds(o);
    TURBINE_CHECK(rounds.empty() || o.resume,
                  "{} holds checkpoints (round {}): continue it with --resume or choose another "
                  "output.dir",
                  o.output_dir, rounds.empty() ? 0 : rounds.back());
    const auto existing = o.resume ? newest_checkpoint(o, rounds) : std::nullopt;
    if (existing) start = load_checkpoint(o, *existing, global, *strategy, clock);
  } catch (...) {
    group.shutdown(false);
    throw;
  }
  std::ofstream(o.output_dir + "/config.yaml") << o.resolved_config_yaml;
  int64_t smallest = INT64_MAX, largest = 0;
  for (const auto& p : parts) {
    smallest = std::min(smallest, int64_t(p.size()));
    largest = std::max(largest, int64_t(p.size()));
  }
  log::info(
      "fedsim: {} clients ({} partition, {} to {} samples each), {} {} for {} {}, strategy {}, "
      "{} scheduler over {} worker(s) of {:g} core(s); task: {} ({} weights)",
      o.num_clients, o.partition.kind, smallest, largest,
      o.asynchronous() ? (o.concurrency > 0 ? o.concurrency : o.clients_per_round())
                       : o.clients_per_round(),
      o.asynchronous() ? "at once" : "a round", o.rounds,
      o.asynchronous() ? "server steps" : "rounds", strategy->name(), o.scheduler, group.workers(),
      cores, task->describe(), trainer.numel());
  if (device.is_cuda()) {
    std::string note;
    gpu_partitions(device, o.gpu_share, &note);
    log::info("fedsim: clients hold their GPU shares as {}", note);
  }
  if (start > 0)
    log::info("resuming after {} {}", o.asynchronous() ? "server step" : "round", start);
  train::MetricsWriter metrics(o.output_dir + "/metrics.jsonl", start);
  train::MetricsWriter client_log(o.output_dir + "/clients.jsonl", start);
  Server server{o,       population,         parts,
                trainer, *strategy,          group,
                metrics, client_log,         std::move(global),
                clock,   RuntimePredictor{}, SimResult{}};
  server.result.rounds = start;
  try {
    if (o.asynchronous())
      run_async(server, start);
    else
      run_rounds(server, start);
  } catch (...) {
    group.shutdown(false);  // the workers return; the error ends the job on every rank
    throw;
  }
  group.drain();
  group.shutdown(server.result.stopped_early);
  return server.result;
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
