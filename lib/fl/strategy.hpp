// Server-side aggregation strategies of federated learning (fedsim, issue 17),
// with Flower's names, defaults and formulas (adap/flower,
// framework/py/flwr/server/strategy/*.py): FedAvg, FedAvgM, FedProx, FedAdam,
// FedYogi, FedAdagrad, QFedAvg, FedMedian, FedTrimmedAvg, Krum/Multi-Krum,
// and the asynchronous FedBuff (Nguyen et al. 2022; Flower has none).
//
// A model is one flat host vector of all its parameters (the caller flattens
// and unflattens). A strategy maps the current global model and one round's
// client results to the next global model; what it carries from round to
// round (server optimizer moments, momentum, FedBuff's buffer) goes through
// save_state/load_state, so a resumed run continues exactly.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace turbine::fl {

using Weights = std::vector<float>;

// One client's result of a round.
struct ClientUpdate {
  // The client's model after local training; for strategies whose
  // expects_deltas() is true (FedBuff) the client's delta instead: its model
  // after training minus the global model it started from (with staleness
  // the server's current model is not that starting point).
  Weights weights;
  int64_t num_examples = 0;
  // QFedAvg only: the client's loss F_k(w^t) of the global model it received,
  // on its own training data, measured BEFORE local training (q-FFL, Li et
  // al. 2020). Flower's qfedavg.py uses the server's centralized evaluation
  // loss of the global model for every client; passing that same value for
  // all clients reproduces Flower.
  double loss = 0.0;
  // FedBuff only: how many server updates happened since the client received
  // its starting model.
  int64_t staleness = 0;
  std::string client_id;  // names the client in error messages
};

// State carried between rounds, by name; floats are stored as doubles
// (exact), counters as one-element vectors.
using StrategyState = std::map<std::string, std::vector<double>>;

// Every knob of every strategy, with Flower's names and Flower's defaults.
// Where Flower's defaults differ between strategies (FedOpt's family) the
// field is optional and unset means "that strategy's Flower default".
struct StrategyConfig {
  // fedavg | fedavgm | fedprox | fedadam | fedyogi | fedadagrad | qfedavg |
  // fedmedian | fedtrimmedavg | krum | multikrum | fedbuff
  std::string name = "fedavg";

  // FedAvgM (fedavgm.py).
  double server_learning_rate = 1.0;  // also FedBuff's eta_g
  double server_momentum = 0.0;

  // FedProx (fedprox.py): the server aggregates as FedAvg; the clients add
  // (mu/2) ||w - w_global||^2 to their loss. Flower has no default: required.
  std::optional<double> proximal_mu;

  // FedOpt family (fedopt.py; defaults: FedAdam eta 1e-1, eta_l 1e-1,
  // beta_1 0.9, beta_2 0.99, tau 1e-9; FedYogi 1e-2, 0.0316, 0.9, 0.99, 1e-3;
  // FedAdagrad 1e-1, 1e-1, tau 1e-9, beta_1 = beta_2 = 0 fixed). eta_l is the
  // clients' learning rate: recorded for them, unused by the server.
  std::optional<double> eta, eta_l, beta_1, beta_2, tau;

  // QFedAvg (qfedavg.py).
  double q_param = 0.2;
  double qffl_learning_rate = 0.1;

  // FedTrimmedAvg (fedtrimmedavg.py): fraction cut at each end.
  double beta = 0.2;

  // Krum (krum.py): num_clients_to_keep > 0 is Multi-Krum ("multikrum"
  // requires it).
  int64_t num_malicious_clients = 0;
  int64_t num_clients_to_keep = 0;

  // FedBuff: server step after every buffer_size client deltas.
  int64_t buffer_size = 10;
};

// The effective value of an optional FedOpt knob for `name` (Flower's
// default where unset).
double fedopt_knob(const StrategyConfig& config, const std::string& knob);

class Strategy {
 public:
  virtual ~Strategy() = default;
  // The next global model from `global` (the model the clients of this round
  // started from) and the clients' results. `round` counts from 1, as
  // Flower's server_round. Throws on an empty list, a size that differs from
  // the global model's (naming the client), or no examples in total.
  virtual Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                            int64_t round) = 0;
  // Whatever aggregate() carries between calls; load_state(save_state())
  // makes the next aggregate() equal to the uninterrupted run's.
  virtual StrategyState save_state() const { return {}; }
  virtual void load_state(const StrategyState& /*state*/) {}
  virtual std::string name() const = 0;
  // True when ClientUpdate::weights are deltas, not models (FedBuff).
  virtual bool expects_deltas() const { return false; }
};

// Validates the knobs of config.name (errors name the knob and the fix).
std::unique_ptr<Strategy> make_strategy(const StrategyConfig& config);

// The aggregation rules themselves, stateless (aggregate.py); each checks
// its input as Strategy::aggregate does.
// Weighted by num_examples (aggregate()).
Weights weighted_average(std::span<const ClientUpdate> updates, size_t size);
// Coordinate-wise median; an even count takes the mean of the middle two.
Weights coordinate_median(std::span<const ClientUpdate> updates, size_t size);
// Coordinate-wise mean after cutting int(beta * n) values at each end
// (scipy.stats.trim_mean).
Weights trimmed_mean(std::span<const ClientUpdate> updates, size_t size, double beta);
// Krum's scores: for each client the sum of squared distances to its
// max(1, n - f - 2) nearest other clients.
std::vector<double> krum_scores(std::span<const ClientUpdate> updates, int64_t num_malicious);

// Throws unless `updates` is non-empty and every update has `size` weights.
void check_updates(std::span<const ClientUpdate> updates, size_t size, const std::string& who);

}  // namespace turbine::fl
