// Client-level differential privacy for federated learning: the server-side
// fixed-clipping wrapper around any synchronous strategy (Flower's
// DifferentialPrivacyServerSideFixedClipping, framework/py/flwr/server/
// strategy/dp_fixed_clipping.py, after McMahan et al. 2018, "Learning
// differentially private recurrent language models"), and the RDP accountant
// of the (subsampled) Gaussian mechanism that turns its rounds into
// (epsilon, delta) (TF-privacy's rdp_accountant.py, Mironov et al. 2019).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "fl/strategy.hpp"

namespace turbine::fl {

struct DpConfig {
  double noise_multiplier = 1.0;  // z: noise std = z * C / num_sampled_clients
  double clipping_norm = 1.0;     // C
  int64_t num_sampled_clients = 1;
  uint64_t seed = 0;  // with the round, the Philox counter of the noise
};

// Scales `update` in place to L2 norm at most `clipping_norm` (FlatClip);
// returns the norm before clipping.
double clip_to_norm(std::span<float> update, double clipping_norm);

// Each client's model minus `global` is clipped to norm C and added back,
// the wrapped strategy aggregates the clipped models, and Gaussian noise of
// std z * C / num_sampled_clients is added to every coordinate of its
// result. The noise of round r, coordinate i is philox_normal(seed, r, 0, i):
// the same seed gives the same run. As in Flower, the sensitivity C / m
// holds when the wrapped rule is a uniform mean of the m sampled clients
// (FedAvg with equal num_examples); weighting by num_examples or a server
// optimizer changes it. FedBuff (deltas, asynchronous) is not supported.
class DpFixedClippingStrategy : public Strategy {
 public:
  DpFixedClippingStrategy(std::unique_ptr<Strategy> inner, const DpConfig& config);
  Weights aggregate(const Weights& global, std::span<const ClientUpdate> updates,
                    int64_t round) override;
  StrategyState save_state() const override { return inner_->save_state(); }
  void load_state(const StrategyState& state) override { inner_->load_state(state); }
  std::string name() const override { return "dp_fixed_clipping(" + inner_->name() + ")"; }
  double noise_stddev() const;

 private:
  std::unique_ptr<Strategy> inner_;
  DpConfig config_;
};

// The RDP orders of TF-privacy's compute_dp_sgd_privacy: 1.25 .. 4.5, 5 .. 63,
// 128, 256.
std::vector<double> default_rdp_orders();

// RDP at `order` of one step of the sampled Gaussian mechanism with sampling
// rate q and noise multiplier sigma: q = 1 is the Gaussian mechanism's
// order / (2 sigma^2); 0 < q < 1 is log(A_order) / (order - 1) of Mironov,
// Talwar and Zhang 2019 ("Renyi differential privacy of the sampled Gaussian
// mechanism"): the binomial expansion (their Sec. 3.3) for integer orders,
// the two-sided erfc series (Sec. 3.4) for fractional ones, as TF-privacy.
double sampled_gaussian_rdp(double q, double sigma, double order);

// How RDP converts to (epsilon, delta).
enum class RdpConversion {
  // eps = rdp + log1p(-1/a) - log(delta * a) / (a - 1) (Balle et al. 2020,
  // Prop. 12; what TF-privacy and Opacus report).
  improved,
  // eps = rdp - log(delta) / (a - 1) (Mironov 2017, Prop. 3).
  classic,
};

struct PrivacySpent {
  double epsilon = 0.0;
  double delta = 0.0;
  double order = 0.0;  // the order that gave the smallest epsilon
};

// (epsilon, delta) after `steps` rounds at sampling rate q with noise
// multiplier sigma, minimized over `orders`.
PrivacySpent rdp_privacy_spent(double q, double sigma, int64_t steps, double delta,
                               std::span<const double> orders,
                               RdpConversion conversion = RdpConversion::improved);
PrivacySpent rdp_privacy_spent(double q, double sigma, int64_t steps, double delta);

}  // namespace turbine::fl
