// Client-level DP: fixed clipping wrapper (Flower's dp_fixed_clipping.py and
// common/differential_privacy.py) and the RDP accountant of the sampled
// Gaussian mechanism (TF-privacy's rdp_accountant.py; see privacy.hpp).
#include "fl/privacy.hpp"

#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.hpp"
#include "core/rng.hpp"

namespace turbine::fl {

double clip_to_norm(std::span<float> update, double clipping_norm) {
  double norm2 = 0.0;
  for (const float x : update) norm2 += static_cast<double>(x) * x;
  const double norm = std::sqrt(norm2);
  // Flower's min(1, C / norm); a zero update stays as it is.
  if (norm > clipping_norm) {
    const double scale = clipping_norm / norm;
    for (float& x : update) x = static_cast<float>(x * scale);
  }
  return norm;
}

DpFixedClippingStrategy::DpFixedClippingStrategy(std::unique_ptr<Strategy> inner,
                                                 const DpConfig& config)
    : inner_(std::move(inner)), config_(config) {
  TURBINE_CHECK(inner_ != nullptr, "dp_fixed_clipping needs a strategy to wrap");
  TURBINE_CHECK(!inner_->expects_deltas(),
                "dp_fixed_clipping wraps synchronous strategies; '{}' takes asynchronous "
                "deltas: use fedavg or another round-based strategy",
                inner_->name());
  TURBINE_CHECK(config_.noise_multiplier >= 0.0,
                "dp: noise_multiplier = {} must be >= 0 (1.0 or more for strong privacy)",
                config_.noise_multiplier);
  TURBINE_CHECK(config_.clipping_norm > 0.0, "dp: clipping_norm = {} must be > 0",
                config_.clipping_norm);
  TURBINE_CHECK(config_.num_sampled_clients > 0,
                "dp: num_sampled_clients = {} must be > 0 (the clients sampled each round)",
                config_.num_sampled_clients);
}

double DpFixedClippingStrategy::noise_stddev() const {
  // common/differential_privacy.py's compute_stdv.
  return config_.noise_multiplier * config_.clipping_norm /
         static_cast<double>(config_.num_sampled_clients);
}

Weights DpFixedClippingStrategy::aggregate(const Weights& global,
                                           std::span<const ClientUpdate> updates, int64_t round) {
  check_updates(updates, global.size(), name());
  std::vector<ClientUpdate> clipped(updates.begin(), updates.end());
  for (ClientUpdate& u : clipped) {
    // compute_clip_model_update: clip (model - global), add it back.
    for (size_t i = 0; i < global.size(); ++i) u.weights[i] -= global[i];
    clip_to_norm(u.weights, config_.clipping_norm);
    for (size_t i = 0; i < global.size(); ++i) u.weights[i] += global[i];
  }
  Weights out = inner_->aggregate(global, clipped, round);
  const double stddev = noise_stddev();
  if (stddev > 0.0) {
    const auto stream = static_cast<uint64_t>(round);
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = static_cast<float>(out[i] + stddev * philox_normal(config_.seed, stream, 0, i));
    }
  }
  return out;
}

// ---- RDP accountant ----
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double log_add(double x, double y) {
  const double a = std::min(x, y), b = std::max(x, y);
  if (a == kNegInf) return b;
  return std::log1p(std::exp(a - b)) + b;
}

double log_sub(double x, double y) {
  TURBINE_CHECK(x >= y, "rdp: log-space subtraction went negative ({} - {})", x, y);
  if (y == kNegInf) return x;
  if (x == y) return kNegInf;
  return std::log(std::expm1(x - y)) + y;
}

double log_comb(double n, double k) {
  return std::lgamma(n + 1.0) - std::lgamma(k + 1.0) - std::lgamma(n - k + 1.0);
}

// log(erfc(x)), with the asymptotic series where erfc underflows.
double log_erfc(double x) {
  const double r = std::erfc(x);
  if (r == 0.0) {
    return -std::log(std::numbers::pi) / 2 - std::log(x) - x * x - 0.5 / (x * x) +
           0.625 / std::pow(x, 4) - 37.0 / 24.0 / std::pow(x, 6) + 353.0 / 64.0 / std::pow(x, 8);
  }
  return std::log(r);
}

// Mironov et al. 2019, Sec. 3.3: A_alpha = sum_i C(alpha, i) q^i (1-q)^(alpha-i)
// exp((i^2 - i) / (2 sigma^2)) for integer alpha.
double log_a_int(double q, double sigma, int64_t alpha) {
  double log_a = kNegInf;
  for (int64_t i = 0; i <= alpha; ++i) {
    const auto di = static_cast<double>(i);
    const double log_coef = log_comb(static_cast<double>(alpha), di) + di * std::log(q) +
                            static_cast<double>(alpha - i) * std::log(1.0 - q);
    log_a = log_add(log_a, log_coef + (di * di - di) / (2.0 * sigma * sigma));
  }
  return log_a;
}

// Sec. 3.4: the two integrals over (-inf, z0] and [z0, inf) as series, for
// fractional alpha; stops when both terms fall below exp(-30).
double log_a_frac(double q, double sigma, double alpha) {
  double log_a0 = kNegInf, log_a1 = kNegInf;
  const double z0 = sigma * sigma * std::log(1.0 / q - 1.0) + 0.5;
  double coef = 1.0;  // binom(alpha, i), by the product formula
  for (int64_t i = 0;; ++i) {
    if (i > 0) coef *= (alpha - static_cast<double>(i - 1)) / static_cast<double>(i);
    const auto di = static_cast<double>(i);
    const double log_coef = std::log(std::abs(coef));
    const double j = alpha - di;
    const double log_t0 = log_coef + di * std::log(q) + j * std::log(1.0 - q);
    const double log_t1 = log_coef + j * std::log(q) + di * std::log(1.0 - q);
    const double log_e0 = std::log(0.5) + log_erfc((di - z0) / (std::sqrt(2.0) * sigma));
    const double log_e1 = std::log(0.5) + log_erfc((z0 - j) / (std::sqrt(2.0) * sigma));
    const double log_s0 = log_t0 + (di * di - di) / (2.0 * sigma * sigma) + log_e0;
    const double log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
    if (coef > 0) {
      log_a0 = log_add(log_a0, log_s0);
      log_a1 = log_add(log_a1, log_s1);
    } else {
      log_a0 = log_sub(log_a0, log_s0);
      log_a1 = log_sub(log_a1, log_s1);
    }
    if (std::max(log_s0, log_s1) < -30.0) break;
  }
  return log_add(log_a0, log_a1);
}

}  // namespace

std::vector<double> default_rdp_orders() {
  std::vector<double> orders = {1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5};
  for (int order = 5; order < 64; ++order) orders.push_back(order);
  orders.push_back(128);
  orders.push_back(256);
  return orders;
}

double sampled_gaussian_rdp(double q, double sigma, double order) {
  TURBINE_CHECK(q >= 0.0 && q <= 1.0, "rdp: sampling rate q = {} must be in [0, 1]", q);
  TURBINE_CHECK(sigma > 0.0, "rdp: noise multiplier sigma = {} must be > 0", sigma);
  TURBINE_CHECK(order > 1.0, "rdp: order {} must be > 1", order);
  if (q == 0.0) return 0.0;
  if (q == 1.0) return order / (2.0 * sigma * sigma);
  const double log_a = order == std::floor(order) ? log_a_int(q, sigma, static_cast<int64_t>(order))
                                                  : log_a_frac(q, sigma, order);
  return log_a / (order - 1.0);
}

PrivacySpent rdp_privacy_spent(double q, double sigma, int64_t steps, double delta,
                               std::span<const double> orders, RdpConversion conversion) {
  TURBINE_CHECK(delta > 0.0 && delta < 1.0, "rdp: delta = {} must be in (0, 1)", delta);
  TURBINE_CHECK(steps >= 0, "rdp: steps = {} must be >= 0", steps);
  TURBINE_CHECK(!orders.empty(), "rdp: no orders to minimize over");
  PrivacySpent best{std::numeric_limits<double>::infinity(), delta, 0.0};
  for (const double a : orders) {
    const double rdp = static_cast<double>(steps) * sampled_gaussian_rdp(q, sigma, a);
    double eps = 0.0;
    if (conversion == RdpConversion::classic) {
      eps = rdp - std::log(delta) / (a - 1.0);
    } else if (delta * delta + std::expm1(-rdp) >= 0.0) {
      eps = 0.0;  // the KL bound delta <= sqrt(1 - exp(-rdp)) already holds
    } else if (a > 1.01) {
      eps = rdp + std::log1p(-1.0 / a) - std::log(delta * a) / (a - 1.0);
    } else {
      eps = std::numeric_limits<double>::infinity();  // unstable as a -> 1
    }
    if (eps < best.epsilon) {
      best.epsilon = eps;
      best.order = a;
    }
  }
  best.epsilon = std::max(0.0, best.epsilon);
  return best;
}

PrivacySpent rdp_privacy_spent(double q, double sigma, int64_t steps, double delta) {
  const std::vector<double> orders = default_rdp_orders();
  return rdp_privacy_spent(q, sigma, steps, delta, orders);
}

}  // namespace turbine::fl
