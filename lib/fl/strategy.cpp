// Server-side aggregation strategies (see strategy.hpp). Formulas follow
// adap/flower framework/py/flwr/server/strategy/: aggregate.py (the rules),
// fedavgm.py, fedopt.py + fedadam.py / fedyogi.py / fedadagrad.py,
// qfedavg.py, fedmedian.py, fedtrimmedavg.py, krum.py, fedprox.py. Each
// coordinate is computed in double and stored as float, as Flower keeps its
// float32 arrays.
#include "fl/strategy.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.hpp"

namespace turbine::fl {
namespace {

const char* const kStrategyNames =
    "fedavg, fedavgm, fedprox, fedadam, fedyogi, fedadagrad, qfedavg, fedmedian, "
    "fedtrimmedavg, krum, multikrum, fedbuff";

std::vector<double> to_doubles(std::span<const float> values) {
  return std::vector<double>(values.begin(), values.end());
}

// Reads a float buffer saved by to_doubles; empty when the key is absent
// (the buffer was not created yet when the state was saved).
std::vector<float> floats_from_state(const StrategyState& state, const std::string& key) {
  const auto it = state.find(key);
  if (it == state.end()) return {};
  return std::vector<float>(it->second.begin(), it->second.end());
}

// Mean of the updates at `indices`, weighted by num_examples (aggregate.py's
// aggregate()).
Weights weighted_average_of(std::span<const ClientUpdate> updates, std::span<const size_t> indices,
                            size_t size) {
  double total = 0.0;
  for (const size_t k : indices) {
    TURBINE_CHECK(updates[k].num_examples >= 0,
                  "client '{}' reports num_examples = {}: a count cannot be negative",
                  updates[k].client_id, updates[k].num_examples);
    total += static_cast<double>(updates[k].num_examples);
  }
  TURBINE_CHECK(total > 0.0,
                "the weighted average needs num_examples > 0 for at least one of the {} clients",
                indices.size());
  std::vector<double> sum(size, 0.0);
  for (const size_t k : indices) {
    const double n = static_cast<double>(updates[k].num_examples);
    const Weights& w = updates[k].weights;
    for (size_t i = 0; i < size; ++i) sum[i] += n * w[i];
  }
  Weights out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<float>(sum[i] / total);
  return out;
}

std::vector<size_t> all_indices(size_t n) {
  std::vector<size_t> indices(n);
  std::iota(indices.begin(), indices.end(), size_t{0});
  return indices;
}

// One coordinate's values over the clients, for the order statistics.
void gather_coordinate(std::span<const ClientUpdate> updates, size_t i,
                       std::vector<double>& values) {
  for (size_t k = 0; k < updates.size(); ++k) values[k] = updates[k].weights[i];
}

// ---- FedAvg / FedProx (fedavg.py, fedprox.py) ----
class FedAvg : public Strategy {
 public:
  explicit FedAvg(std::string name) : name_(std::move(name)) {}
  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    return weighted_average(updates, global.size());
  }
  std::string name() const override { return name_; }

 private:
  std::string name_;
};

// ---- FedAvgM (fedavgm.py): SGD with momentum on the pseudo-gradient ----
class FedAvgM : public Strategy {
 public:
  FedAvgM(double server_learning_rate, double server_momentum)
      : lr_(server_learning_rate), momentum_(server_momentum) {}

  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    Weights avg = weighted_average(updates, global.size());
    // Flower skips the server optimizer when it is the identity.
    if (momentum_ == 0.0 && lr_ == 1.0) return avg;
    const size_t n = global.size();
    if (momentum_ > 0.0 && buffer_.empty()) buffer_.assign(n, 0.0f);
    // Flower's round 1 sets the buffer to the pseudo-gradient, later rounds
    // to momentum * buffer + pseudo-gradient: the same from a zero buffer.
    for (size_t i = 0; i < n; ++i) {
      double pseudo_gradient = static_cast<double>(global[i]) - avg[i];
      if (momentum_ > 0.0) {
        buffer_[i] = static_cast<float>(momentum_ * buffer_[i] + pseudo_gradient);
        pseudo_gradient = buffer_[i];
      }
      avg[i] = static_cast<float>(global[i] - lr_ * pseudo_gradient);
    }
    return avg;
  }
  StrategyState save_state() const override {
    if (buffer_.empty()) return {};
    return {{"momentum_vector", to_doubles(buffer_)}};
  }
  void load_state(const StrategyState& state) override {
    buffer_ = floats_from_state(state, "momentum_vector");
  }
  std::string name() const override { return "fedavgm"; }

 private:
  double lr_, momentum_;
  std::vector<float> buffer_;
};

// ---- FedAdam / FedYogi / FedAdagrad (fedopt.py and its subclasses) ----
enum class FedOptKind { adam, yogi, adagrad };

class FedOpt : public Strategy {
 public:
  FedOpt(FedOptKind kind, std::string name, double eta, double beta_1, double beta_2, double tau)
      : kind_(kind),
        name_(std::move(name)),
        eta_(eta),
        beta_1_(beta_1),
        beta_2_(beta_2),
        tau_(tau) {}

  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t round) override {
    TURBINE_CHECK(round >= 1, "{}: rounds count from 1 (Flower's server_round), got {}", name_,
                  round);
    const Weights avg = weighted_average(updates, global.size());
    const size_t n = global.size();
    if (m_t_.empty()) m_t_.assign(n, 0.0f);
    if (v_t_.empty()) v_t_.assign(n, 0.0f);
    TURBINE_CHECK(m_t_.size() == n && v_t_.size() == n,
                  "{}: the restored moments hold {} values, the model {}: resume with the "
                  "model the state was saved with",
                  name_, m_t_.size(), n);
    double step = eta_;
    if (kind_ == FedOptKind::adam) {
      // fedadam.py's bias correction uses server_round + 1 (not Adam's t = 1
      // on the first step); kept for equality with Flower.
      const double t = static_cast<double>(round) + 1.0;
      step = eta_ * std::sqrt(1.0 - std::pow(beta_2_, t)) / (1.0 - std::pow(beta_1_, t));
    }
    Weights out(n);
    for (size_t i = 0; i < n; ++i) {
      // delta_t is the aggregate minus the current model: a step direction.
      const double delta = static_cast<double>(avg[i]) - global[i];
      const double d2 = delta * delta;
      m_t_[i] = static_cast<float>(beta_1_ * m_t_[i] + (1.0 - beta_1_) * delta);
      const double v = v_t_[i];
      switch (kind_) {
        case FedOptKind::adam:
          v_t_[i] = static_cast<float>(beta_2_ * v + (1.0 - beta_2_) * d2);
          break;
        case FedOptKind::yogi: {
          const double sign = (v - d2 > 0.0) - (v - d2 < 0.0);
          v_t_[i] = static_cast<float>(v - (1.0 - beta_2_) * d2 * sign);
          break;
        }
        case FedOptKind::adagrad:
          v_t_[i] = static_cast<float>(v + d2);
          break;
      }
      out[i] = static_cast<float>(global[i] + step * m_t_[i] /
                                                  (std::sqrt(static_cast<double>(v_t_[i])) + tau_));
    }
    return out;
  }
  StrategyState save_state() const override {
    if (m_t_.empty()) return {};
    return {{"m_t", to_doubles(m_t_)}, {"v_t", to_doubles(v_t_)}};
  }
  void load_state(const StrategyState& state) override {
    m_t_ = floats_from_state(state, "m_t");
    v_t_ = floats_from_state(state, "v_t");
  }
  std::string name() const override { return name_; }

 private:
  FedOptKind kind_;
  std::string name_;
  double eta_, beta_1_, beta_2_, tau_;
  std::vector<float> m_t_, v_t_;
};

// ---- QFedAvg (qfedavg.py, aggregate.py's aggregate_qffl) ----
class QFedAvg : public Strategy {
 public:
  QFedAvg(double q_param, double learning_rate) : q_(q_param), lr_(learning_rate) {}

  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    const size_t n = global.size();
    check_updates(updates, n, "qfedavg");
    std::vector<double> delta_sum(n, 0.0);
    double h_sum = 0.0;
    for (const ClientUpdate& u : updates) {
      const double loss = u.loss + 1e-10;
      TURBINE_CHECK(std::isfinite(loss) && loss > 0.0,
                    "qfedavg: client '{}' reports loss {}; q-FFL needs the client's (non-negative) "
                    "loss of the global model before local training",
                    u.client_id, u.loss);
      // grad = (global - local) / lr: the update read as a gradient.
      double grad_norm2 = 0.0;
      const double loss_q = std::pow(loss, q_);
      for (size_t i = 0; i < n; ++i) {
        const double grad = (static_cast<double>(global[i]) - u.weights[i]) / lr_;
        grad_norm2 += grad * grad;
        delta_sum[i] += loss_q * grad;
      }
      // h_k estimates the local Lipschitz constant.
      h_sum += q_ * std::pow(loss, q_ - 1.0) * grad_norm2 + loss_q / lr_;
    }
    Weights out(n);
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(global[i] - delta_sum[i] / h_sum);
    return out;
  }
  std::string name() const override { return "qfedavg"; }

 private:
  double q_, lr_;
};

// ---- FedMedian (fedmedian.py) / FedTrimmedAvg (fedtrimmedavg.py) ----
class FedMedian : public Strategy {
 public:
  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    return coordinate_median(updates, global.size());
  }
  std::string name() const override { return "fedmedian"; }
};

class FedTrimmedAvg : public Strategy {
 public:
  explicit FedTrimmedAvg(double beta) : beta_(beta) {}
  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    return trimmed_mean(updates, global.size(), beta_);
  }
  std::string name() const override { return "fedtrimmedavg"; }

 private:
  double beta_;
};

// ---- Krum / Multi-Krum (krum.py, aggregate.py's aggregate_krum) ----
class Krum : public Strategy {
 public:
  Krum(int64_t num_malicious, int64_t to_keep) : f_(num_malicious), to_keep_(to_keep) {}

  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    check_updates(updates, global.size(), name());
    const auto n = static_cast<int64_t>(updates.size());
    TURBINE_CHECK(f_ == 0 || n > 2 * f_ + 2,
                  "krum: num_malicious_clients = {} needs more than 2 * {} + 2 = {} clients per "
                  "round (Blanchard et al. 2017), got {}: sample more clients or lower "
                  "num_malicious_clients",
                  f_, f_, 2 * f_ + 2, n);
    TURBINE_CHECK(to_keep_ <= n,
                  "multikrum: num_clients_to_keep = {} but only {} clients sent updates this "
                  "round: lower num_clients_to_keep",
                  to_keep_, n);
    const std::vector<double> scores = krum_scores(updates, f_);
    std::vector<size_t> order = all_indices(updates.size());
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return scores[a] < scores[b]; });
    if (to_keep_ > 0) {
      order.resize(static_cast<size_t>(to_keep_));
      return weighted_average_of(updates, order, global.size());
    }
    return updates[order.front()].weights;
  }
  std::string name() const override { return to_keep_ > 0 ? "multikrum" : "krum"; }

 private:
  int64_t f_, to_keep_;
};

// ---- FedBuff (Nguyen et al. 2022, "Federated learning with buffered
// asynchronous aggregation", Algorithm 1; not in Flower) ----
// Client deltas arrive one by one; each is weighted by 1 / sqrt(1 +
// staleness) and added to a buffer; after every buffer_size deltas the
// server steps w += eta_g * buffer / buffer_size and empties the buffer.
// State: "buffer", "count" (deltas in the buffer), "server_steps" (the model
// version, from which the caller measures staleness).
class FedBuff : public Strategy {
 public:
  FedBuff(int64_t buffer_size, double server_learning_rate)
      : k_(buffer_size), lr_(server_learning_rate) {}

  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t /*round*/) override {
    const size_t n = global.size();
    check_updates(updates, n, "fedbuff");
    if (buffer_.empty()) buffer_.assign(n, 0.0);
    TURBINE_CHECK(buffer_.size() == n,
                  "fedbuff: the restored buffer holds {} values, the model {}: resume with the "
                  "model the state was saved with",
                  buffer_.size(), n);
    Weights model = global;
    for (const ClientUpdate& u : updates) {
      TURBINE_CHECK(u.staleness >= 0, "fedbuff: client '{}' reports staleness {}, must be >= 0",
                    u.client_id, u.staleness);
      const double weight = 1.0 / std::sqrt(1.0 + static_cast<double>(u.staleness));
      for (size_t i = 0; i < n; ++i) buffer_[i] += weight * u.weights[i];
      if (++count_ < k_) continue;
      const double scale = lr_ / static_cast<double>(k_);
      for (size_t i = 0; i < n; ++i) model[i] = static_cast<float>(model[i] + scale * buffer_[i]);
      std::fill(buffer_.begin(), buffer_.end(), 0.0);
      count_ = 0;
      ++server_steps_;
    }
    return model;
  }
  StrategyState save_state() const override {
    return {{"buffer", buffer_},
            {"count", {static_cast<double>(count_)}},
            {"server_steps", {static_cast<double>(server_steps_)}}};
  }
  void load_state(const StrategyState& state) override {
    const auto scalar = [&](const char* key) -> int64_t {
      const auto it = state.find(key);
      TURBINE_CHECK(it != state.end() && it->second.size() == 1,
                    "fedbuff: the saved state lacks '{}': was it saved by another strategy?", key);
      return static_cast<int64_t>(it->second[0]);
    };
    const auto it = state.find("buffer");
    buffer_ = it == state.end() ? std::vector<double>{} : it->second;
    count_ = scalar("count");
    server_steps_ = scalar("server_steps");
  }
  std::string name() const override { return "fedbuff"; }
  bool expects_deltas() const override { return true; }

 private:
  int64_t k_;
  double lr_;
  std::vector<double> buffer_;
  int64_t count_ = 0;
  int64_t server_steps_ = 0;
};

void check_trim_beta(double beta) {
  TURBINE_CHECK(beta >= 0.0 && beta < 0.5,
                "fedtrimmedavg: beta = {} must be in [0, 0.5): it is the fraction cut at EACH "
                "end, so 0.5 or more would cut every value",
                beta);
}

void check_fedopt_knobs(const StrategyConfig& c) {
  const double eta = fedopt_knob(c, "eta"), tau = fedopt_knob(c, "tau");
  const double beta_1 = fedopt_knob(c, "beta_1"), beta_2 = fedopt_knob(c, "beta_2");
  TURBINE_CHECK(eta > 0.0, "{}: eta = {} must be > 0 (the server learning rate)", c.name, eta);
  TURBINE_CHECK(tau > 0.0, "{}: tau = {} must be > 0 (it keeps the division finite)", c.name, tau);
  TURBINE_CHECK(beta_1 >= 0.0 && beta_1 < 1.0, "{}: beta_1 = {} must be in [0, 1)", c.name, beta_1);
  TURBINE_CHECK(beta_2 >= 0.0 && beta_2 < 1.0, "{}: beta_2 = {} must be in [0, 1)", c.name, beta_2);
}

}  // namespace

void check_updates(std::span<const ClientUpdate> updates, size_t size, const std::string& who) {
  TURBINE_CHECK(!updates.empty(),
                "{}: no client updates to aggregate this round: every sampled client failed or "
                "none was sampled",
                who);
  for (size_t k = 0; k < updates.size(); ++k) {
    TURBINE_CHECK(updates[k].weights.size() == size,
                  "{}: client '{}' (update {}) sent {} weights, the global model has {}: the "
                  "client trained another model shape",
                  who, updates[k].client_id, k, updates[k].weights.size(), size);
  }
}

Weights weighted_average(std::span<const ClientUpdate> updates, size_t size) {
  check_updates(updates, size, "weighted average");
  const std::vector<size_t> indices = all_indices(updates.size());
  return weighted_average_of(updates, indices, size);
}

Weights coordinate_median(std::span<const ClientUpdate> updates, size_t size) {
  check_updates(updates, size, "fedmedian");
  const size_t n = updates.size();
  std::vector<double> values(n);
  Weights out(size);
  for (size_t i = 0; i < size; ++i) {
    gather_coordinate(updates, i, values);
    std::sort(values.begin(), values.end());
    const double median = n % 2 == 1 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
    out[i] = static_cast<float>(median);
  }
  return out;
}

Weights trimmed_mean(std::span<const ClientUpdate> updates, size_t size, double beta) {
  check_trim_beta(beta);
  check_updates(updates, size, "fedtrimmedavg");
  const size_t n = updates.size();
  const auto cut = static_cast<size_t>(beta * static_cast<double>(n));
  std::vector<double> values(n);
  Weights out(size);
  for (size_t i = 0; i < size; ++i) {
    gather_coordinate(updates, i, values);
    std::sort(values.begin(), values.end());
    const double sum = std::accumulate(values.begin() + static_cast<std::ptrdiff_t>(cut),
                                       values.end() - static_cast<std::ptrdiff_t>(cut), 0.0);
    out[i] = static_cast<float>(sum / static_cast<double>(n - 2 * cut));
  }
  return out;
}

std::vector<double> krum_scores(std::span<const ClientUpdate> updates, int64_t num_malicious) {
  const size_t n = updates.size();
  std::vector<double> distance(n * n, 0.0);
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = a + 1; b < n; ++b) {
      const Weights& wa = updates[a].weights;
      const Weights& wb = updates[b].weights;
      double d2 = 0.0;
      for (size_t i = 0; i < wa.size(); ++i) {
        const double d = static_cast<double>(wa[i]) - wb[i];
        d2 += d * d;
      }
      distance[a * n + b] = distance[b * n + a] = d2;
    }
  }
  // Flower: argsort(distance)[1 : num_closest + 1], skipping the client itself.
  const auto num_closest =
      static_cast<size_t>(std::max<int64_t>(1, static_cast<int64_t>(n) - num_malicious - 2));
  std::vector<double> scores(n, 0.0);
  std::vector<double> others;
  for (size_t a = 0; a < n; ++a) {
    others.clear();
    for (size_t b = 0; b < n; ++b) {
      if (b != a) others.push_back(distance[a * n + b]);
    }
    std::sort(others.begin(), others.end());
    const size_t take = std::min(num_closest, others.size());
    scores[a] =
        std::accumulate(others.begin(), others.begin() + static_cast<std::ptrdiff_t>(take), 0.0);
  }
  return scores;
}

double fedopt_knob(const StrategyConfig& config, const std::string& knob) {
  struct Defaults {
    double eta, eta_l, beta_1, beta_2, tau;
  };
  Defaults d{1e-1, 1e-1, 0.9, 0.99, 1e-9};                            // fedadam.py
  if (config.name == "fedyogi") d = {1e-2, 0.0316, 0.9, 0.99, 1e-3};  // fedyogi.py
  if (config.name == "fedadagrad") d = {1e-1, 1e-1, 0.0, 0.0, 1e-9};  // fedadagrad.py
  if (knob == "eta") return config.eta.value_or(d.eta);
  if (knob == "eta_l") return config.eta_l.value_or(d.eta_l);
  if (knob == "beta_1") return config.beta_1.value_or(d.beta_1);
  if (knob == "beta_2") return config.beta_2.value_or(d.beta_2);
  if (knob == "tau") return config.tau.value_or(d.tau);
  TURBINE_FAIL("no FedOpt knob '{}': the knobs are eta, eta_l, beta_1, beta_2, tau", knob);
}

std::unique_ptr<Strategy> make_strategy(const StrategyConfig& c) {
  const std::string& name = c.name;
  if (name == "fedavg") return std::make_unique<FedAvg>("fedavg");
  if (name == "fedprox") {
    TURBINE_CHECK(c.proximal_mu.has_value(),
                  "fedprox needs proximal_mu (the clients' proximal term weight; Flower has no "
                  "default): set it, e.g. 0.01");
    TURBINE_CHECK(*c.proximal_mu >= 0.0, "fedprox: proximal_mu = {} must be >= 0", *c.proximal_mu);
    return std::make_unique<FedAvg>("fedprox");
  }
  if (name == "fedavgm") {
    TURBINE_CHECK(c.server_learning_rate > 0.0, "fedavgm: server_learning_rate = {} must be > 0",
                  c.server_learning_rate);
    TURBINE_CHECK(c.server_momentum >= 0.0 && c.server_momentum < 1.0,
                  "fedavgm: server_momentum = {} must be in [0, 1)", c.server_momentum);
    return std::make_unique<FedAvgM>(c.server_learning_rate, c.server_momentum);
  }
  if (name == "fedadam" || name == "fedyogi" || name == "fedadagrad") {
    if (name == "fedadagrad") {
      TURBINE_CHECK(c.beta_1.value_or(0.0) == 0.0 && c.beta_2.value_or(0.0) == 0.0,
                    "fedadagrad has no beta_1/beta_2 (Flower fixes both at 0): unset them or use "
                    "fedadam");
    }
    check_fedopt_knobs(c);
    const FedOptKind kind = name == "fedadam"   ? FedOptKind::adam
                            : name == "fedyogi" ? FedOptKind::yogi
                                                : FedOptKind::adagrad;
    return std::make_unique<FedOpt>(kind, name, fedopt_knob(c, "eta"), fedopt_knob(c, "beta_1"),
                                    fedopt_knob(c, "beta_2"), fedopt_knob(c, "tau"));
  }
  if (name == "qfedavg") {
    TURBINE_CHECK(c.q_param >= 0.0,
                  "qfedavg: q_param = {} must be >= 0 (q = 0 is FedAvg-like, larger q favours "
                  "the clients with higher loss)",
                  c.q_param);
    TURBINE_CHECK(c.qffl_learning_rate > 0.0, "qfedavg: qffl_learning_rate = {} must be > 0",
                  c.qffl_learning_rate);
    return std::make_unique<QFedAvg>(c.q_param, c.qffl_learning_rate);
  }
  if (name == "fedmedian") return std::make_unique<FedMedian>();
  if (name == "fedtrimmedavg") {
    check_trim_beta(c.beta);
    return std::make_unique<FedTrimmedAvg>(c.beta);
  }
  if (name == "krum" || name == "multikrum") {
    TURBINE_CHECK(c.num_malicious_clients >= 0, "{}: num_malicious_clients = {} must be >= 0", name,
                  c.num_malicious_clients);
    TURBINE_CHECK(c.num_clients_to_keep >= 0, "{}: num_clients_to_keep = {} must be >= 0", name,
                  c.num_clients_to_keep);
    TURBINE_CHECK(name == "krum" || c.num_clients_to_keep > 0,
                  "multikrum needs num_clients_to_keep > 0 (how many of the best-scored clients "
                  "to average)");
    return std::make_unique<Krum>(c.num_malicious_clients, c.num_clients_to_keep);
  }
  if (name == "fedbuff") {
    TURBINE_CHECK(c.buffer_size >= 1, "fedbuff: buffer_size = {} must be >= 1", c.buffer_size);
    TURBINE_CHECK(c.server_learning_rate > 0.0, "fedbuff: server_learning_rate = {} must be > 0",
                  c.server_learning_rate);
    return std::make_unique<FedBuff>(c.buffer_size, c.server_learning_rate);
  }
  TURBINE_FAIL("unknown strategy '{}': choose one of {}", name, kStrategyNames);
}

}  // namespace turbine::fl
