// fedsim's federated simulation (issue 17): rank 0 is the server (client
// selection, aggregation by a Flower strategy, evaluation, metrics,
// checkpoints); the other ranks are persistent workers (lib/fl/workers.hpp)
// that run many clients at once, each in a reused ClientTrainer slot of
// their ClientPool (lib/fl/pool.hpp). With one rank the server runs the
// clients itself. What the clients learn is a Task (lib/fl/task.hpp: an
// image classifier, or a BLOOM on text grouped by book).
//
// Every client has a device (lib/fl/population.hpp: a compute share of a
// worker, a memory cap, a bandwidth; drawn or from a trace), a workload and
// online windows. Every round the server samples clients (uniformly or among
// those online, seeded by round), and hands them out to run under their
// budgets: `dynamic` (FedHC's scheduler) packs them onto workers longest
// predicted runtime first, as many at once as the worker's compute (and
// memory) holds, and fills a worker again the moment a client returns;
// `naive` runs each worker's clients (dealt round robin) one at a time, as a
// framework without packing would. A client's simulated time is its
// measured compute under its budget plus its model download and upload over
// its bandwidth; it drops out if it goes offline before that, straggles past
// the round deadline, or fails past its memory cap. The accepted updates are
// aggregated in selection order, so the result does not depend on the
// scheduler or the number of workers. strategy fedbuff runs asynchronously
// instead (sim.cpp's run_async): a server step every buffer_size updates,
// taken in the order of simulated completion.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data/partition.hpp"
#include "fl/client.hpp"
#include "fl/pool.hpp"
#include "fl/population.hpp"
#include "fl/privacy.hpp"
#include "fl/strategy.hpp"
#include "io/config.hpp"
#include "train/job.hpp"

namespace turbine::fl {

struct SimOptions {
  int64_t rounds = 10;
  int64_t num_clients = 100;
  double fraction_fit = 0.1;
  int64_t min_fit_clients = 2;
  std::string scheduler = "dynamic";  // dynamic | naive
  std::string sampling = "uniform";   // uniform | available
  double round_deadline_s = 0;        // simulated; 0: none
  PopulationConfig population;
  // The population built from it when the options were read (its traces
  // checked then): simulate uses it instead of building it again.
  std::shared_ptr<const Population> checked_population;
  double worker_cores = 0;                   // what shares are of; 0: the node's cores / its ranks
  double worker_memory_mb = 0;               // what caps running together may sum to; 0: no limit
  GpuShare gpu_share = GpuShare::automatic;  // how clients hold shares of a GPU
  data::PartitionConfig partition;
  LocalTraining local;
  StrategyConfig strategy;
  // Client-level differential privacy: the strategy wrapped in fixed
  // clipping with Gaussian noise, and (epsilon, delta) reported every round.
  bool dp = false;
  DpConfig dp_config;
  double dp_delta = 0;
  nn::VisionConfig model;  // the image classifier, unless text
  // model.arch bloom: a language model on token windows, partitioned by group.
  bool text = false;
  nn::BloomConfig text_model;
  int64_t seq_len = 64;
  std::string groups_path;
  std::string data_path;
  uint64_t seed = 1234;
  std::string device = "cpu";
  int64_t eval_interval = 1;  // rounds; 0: the last only
  int64_t eval_batch = 256;
  int64_t checkpoint_interval = 0;  // rounds; 0: the last only
  int64_t checkpoint_keep = 2;
  std::string output_dir;
  bool resume = false;
  std::string resolved_config_yaml;
  int64_t concurrency = 0;  // fedbuff: clients training at once; 0: clients_per_round()
  // FedBuff runs asynchronously: a "round" is a server step.
  bool asynchronous() const { return strategy.name == "fedbuff"; }
  // Clients each round.
  int64_t clients_per_round() const;
};

io::ConfigSchema sim_schema();
SimOptions sim_options(const io::Config& c, int world_size);

struct SimResult {
  int64_t rounds = 0;
  double accuracy = 0, loss = 0;  // the last evaluation's
  bool stopped_early = false;
};
// Collective: every rank calls it.
SimResult simulate(const SimOptions& options, train::Job& job);
int report_sim(const SimOptions& options, const SimResult& result);

// The clients of round `round`: `count` distinct ids of [0, clients), seeded.
std::vector<int64_t> select_clients(int64_t clients, int64_t count, uint64_t seed, int64_t round);

}  // namespace turbine::fl
