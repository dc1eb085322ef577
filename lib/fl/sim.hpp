// fedsim's federated simulation (issue 17): rank 0 is the server (client
// selection, aggregation by a Flower strategy, evaluation, metrics,
// checkpoints); the other ranks are persistent workers, each with one
// ClientTrainer reused for every client it runs. With one rank the server
// runs the clients itself.
//
// Every round the server samples clients (seeded by round), sends the
// global weights to the workers and deals the clients out: `dynamic` hands
// a worker its next client the moment it returns a result (FedHC's
// scheduler without budget packing yet), `naive` deals them round robin in
// advance, each worker running its list in turn. The updates are aggregated
// in selection order, so the result does not depend on the scheduler or the
// number of workers. Resource budgets, device and availability traces,
// and asynchronous FedBuff are still to come.
#pragma once

#include <string>
#include <vector>

#include "data/partition.hpp"
#include "fl/client.hpp"
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
  data::PartitionConfig partition;
  LocalTraining local;
  StrategyConfig strategy;
  // Client-level differential privacy: the strategy wrapped in fixed
  // clipping with Gaussian noise, and (epsilon, delta) reported every round.
  bool dp = false;
  DpConfig dp_config;
  double dp_delta = 0;
  nn::VisionConfig model;
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
