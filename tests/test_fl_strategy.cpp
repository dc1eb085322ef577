// The server-side federated strategies (lib/fl/strategy.hpp) and client-level
// DP (lib/fl/privacy.hpp): every strategy's aggregate on hand-made client
// updates equals its formula written out here (Flower's, per coordinate in
// double); saving and loading the state mid-run gives the same next
// aggregate; DP clipping bounds each client's contribution and its noise is
// reproducible by seed; the RDP accountant gives TF-privacy's figures; bad
// knobs are refused by name.
#define BOOST_TEST_MODULE fl_strategy
#include <boost/test/unit_test.hpp>
#include <cmath>

#include "core/rng.hpp"
#include "fl/privacy.hpp"
#include "fl/strategy.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::fl;
using namespace turbine::testing;

namespace {

ClientUpdate update(Weights w, int64_t num_examples, std::string id, double loss = 0.0,
                    int64_t staleness = 0) {
  ClientUpdate u;
  u.weights = std::move(w);
  u.num_examples = num_examples;
  u.loss = loss;
  u.staleness = staleness;
  u.client_id = std::move(id);
  return u;
}

void check_close(const Weights& got, const std::vector<double>& want, double tol = 1e-5) {
  BOOST_REQUIRE_EQUAL(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    BOOST_TEST(std::abs(got[i] - want[i]) <= tol * (1.0 + std::abs(want[i])),
               "coordinate " << i << ": got " << got[i] << ", want " << want[i]);
  }
}

const Weights kGlobal = {1.0f, -2.0f, 0.5f};

// Three clients of a round, unequal example counts.
std::vector<ClientUpdate> round_updates(float shift) {
  return {update({1.5f + shift, -1.0f, 0.0f}, 10, "a", 0.8),
          update({0.5f, -2.5f + shift, 1.0f}, 30, "b", 1.6),
          update({2.0f, -2.0f, 0.25f + shift}, 60, "c", 0.4)};
}

std::vector<double> fedavg_by_hand(const std::vector<ClientUpdate>& updates) {
  double total = 0.0;
  std::vector<double> sum(updates[0].weights.size(), 0.0);
  for (const auto& u : updates) {
    total += double(u.num_examples);
    for (size_t i = 0; i < sum.size(); ++i) sum[i] += double(u.num_examples) * u.weights[i];
  }
  for (double& s : sum) s /= total;
  return sum;
}

StrategyConfig config_of(const std::string& name) {
  StrategyConfig c;
  c.name = name;
  return c;
}

}  // namespace

BOOST_AUTO_TEST_CASE(fedavg_and_fedprox_weight_by_examples) {
  const auto updates = round_updates(0.0f);
  // (10 * 1.5 + 30 * 0.5 + 60 * 2) / 100 = 1.5, (-10 - 75 - 120) / 100 = -2.05, ...
  check_close(make_strategy(config_of("fedavg"))->aggregate(kGlobal, updates, 1),
              {1.5, -2.05, 0.45});
  StrategyConfig prox = config_of("fedprox");
  prox.proximal_mu = 0.1;
  check_close(make_strategy(prox)->aggregate(kGlobal, updates, 1), fedavg_by_hand(updates));
}

BOOST_AUTO_TEST_CASE(fedavgm_momentum_over_two_rounds) {
  StrategyConfig c = config_of("fedavgm");
  c.server_learning_rate = 0.5;
  c.server_momentum = 0.9;
  auto strategy = make_strategy(c);
  // fedavgm.py: pseudo-gradient g - avg; round 1 momentum = it; round 2
  // momentum = 0.9 momentum + it; g' = g - lr momentum.
  const auto r1 = round_updates(0.0f), r2 = round_updates(0.3f);
  const Weights g1 = strategy->aggregate(kGlobal, r1, 1);
  const auto a1 = fedavg_by_hand(r1);
  std::vector<double> mom(3), want1(3);
  for (size_t i = 0; i < 3; ++i) {
    mom[i] = kGlobal[i] - a1[i];
    want1[i] = kGlobal[i] - 0.5 * mom[i];
  }
  check_close(g1, want1);
  const Weights g2 = strategy->aggregate(g1, r2, 2);
  const auto a2 = fedavg_by_hand(r2);
  std::vector<double> want2(3);
  for (size_t i = 0; i < 3; ++i) {
    mom[i] = 0.9 * mom[i] + (g1[i] - a2[i]);
    want2[i] = g1[i] - 0.5 * mom[i];
  }
  check_close(g2, want2);
}

BOOST_AUTO_TEST_CASE(fedadam_moments_over_two_rounds) {
  StrategyConfig c = config_of("fedadam");  // Flower's defaults
  BOOST_TEST(fedopt_knob(c, "eta") == 0.1);
  BOOST_TEST(fedopt_knob(c, "beta_1") == 0.9);
  BOOST_TEST(fedopt_knob(c, "beta_2") == 0.99);
  BOOST_TEST(fedopt_knob(c, "tau") == 1e-9);
  auto strategy = make_strategy(c);
  std::vector<double> m(3, 0.0), v(3, 0.0);
  Weights global = kGlobal;
  for (int64_t round = 1; round <= 2; ++round) {
    const auto updates = round_updates(0.2f * float(round));
    const auto avg = fedavg_by_hand(updates);
    // fedadam.py: bias correction with server_round + 1.
    const double eta_norm =
        0.1 * std::sqrt(1 - std::pow(0.99, round + 1.0)) / (1 - std::pow(0.9, round + 1.0));
    std::vector<double> want(3);
    for (size_t i = 0; i < 3; ++i) {
      const double delta = avg[i] - global[i];
      m[i] = 0.9 * m[i] + 0.1 * delta;
      v[i] = 0.99 * v[i] + 0.01 * delta * delta;
      want[i] = global[i] + eta_norm * m[i] / (std::sqrt(v[i]) + 1e-9);
    }
    const Weights next = strategy->aggregate(global, updates, round);
    check_close(next, want);
    global = next;
  }
}

BOOST_AUTO_TEST_CASE(fedyogi_and_fedadagrad_second_moments) {
  const auto r1 = round_updates(0.0f), r2 = round_updates(0.5f);
  for (const std::string name : {"fedyogi", "fedadagrad"}) {
    StrategyConfig c = config_of(name);
    const double eta = fedopt_knob(c, "eta"), tau = fedopt_knob(c, "tau");
    const double b1 = fedopt_knob(c, "beta_1"), b2 = fedopt_knob(c, "beta_2");
    auto strategy = make_strategy(c);
    std::vector<double> m(3, 0.0), v(3, 0.0);
    Weights global = kGlobal;
    for (int64_t round = 1; round <= 2; ++round) {
      const auto& updates = round == 1 ? r1 : r2;
      const auto avg = fedavg_by_hand(updates);
      std::vector<double> want(3);
      for (size_t i = 0; i < 3; ++i) {
        const double d = avg[i] - global[i];
        m[i] = b1 * m[i] + (1 - b1) * d;
        if (name == "fedyogi") {
          const double diff = v[i] - d * d;
          v[i] = v[i] - (1 - b2) * d * d * (diff > 0 ? 1.0 : diff < 0 ? -1.0 : 0.0);
        } else {
          v[i] += d * d;
        }
        want[i] = global[i] + eta * m[i] / (std::sqrt(v[i]) + tau);
      }
      const Weights next = strategy->aggregate(global, updates, round);
      BOOST_TEST_CONTEXT(name << " round " << round) {
        check_close(next, want);
      }
      global = next;
    }
  }
  BOOST_TEST(fedopt_knob(config_of("fedyogi"), "eta_l") == 0.0316);
}

BOOST_AUTO_TEST_CASE(qfedavg_weights_by_loss) {
  StrategyConfig c = config_of("qfedavg");
  c.q_param = 0.5;
  c.qffl_learning_rate = 0.1;
  const auto updates = round_updates(0.0f);
  // qfedavg.py / aggregate_qffl: grad_k = (g - w_k) / lr,
  // delta_k = L^q grad_k, h_k = q L^(q-1) |grad_k|^2 + L^q / lr,
  // g' = g - sum delta_k / sum h_k.
  std::vector<double> delta(3, 0.0);
  double h = 0.0;
  for (const auto& u : updates) {
    const double loss = u.loss + 1e-10;
    double norm2 = 0.0;
    for (size_t i = 0; i < 3; ++i) {
      const double grad = (kGlobal[i] - double(u.weights[i])) / 0.1;
      norm2 += grad * grad;
      delta[i] += std::pow(loss, 0.5) * grad;
    }
    h += 0.5 * std::pow(loss, -0.5) * norm2 + std::pow(loss, 0.5) / 0.1;
  }
  std::vector<double> want(3);
  for (size_t i = 0; i < 3; ++i) want[i] = kGlobal[i] - delta[i] / h;
  check_close(make_strategy(c)->aggregate(kGlobal, updates, 1), want);

  // Higher loss, more pull: with q large the lossiest client ("b", 1.6)
  // dominates the direction of the step.
  c.q_param = 5.0;
  const Weights out = make_strategy(c)->aggregate(kGlobal, updates, 1);
  BOOST_TEST(out[1] < kGlobal[1]);  // b moved coordinate 1 down by 0.5
}

BOOST_AUTO_TEST_CASE(fedmedian_odd_and_even_counts) {
  auto median = make_strategy(config_of("fedmedian"));
  const Weights g = {0.0f, 0.0f};
  std::vector<ClientUpdate> odd = {update({3.0f, -1.0f}, 1, "a"), update({1.0f, 7.0f}, 100, "b"),
                                   update({2.0f, 5.0f}, 1, "c")};
  check_close(median->aggregate(g, odd, 1), {2.0, 5.0});
  odd.push_back(update({10.0f, 0.0f}, 1, "d"));
  // Even: the mean of the middle two, {2, 3} and {0, 5}.
  check_close(median->aggregate(g, odd, 1), {2.5, 2.5});
}

BOOST_AUTO_TEST_CASE(fedtrimmedavg_cuts_both_ends) {
  StrategyConfig c = config_of("fedtrimmedavg");
  BOOST_TEST(c.beta == 0.2);
  const Weights g = {0.0f};
  std::vector<ClientUpdate> updates;
  for (const float x : {100.0f, 1.0f, 2.0f, -50.0f, 3.0f}) {
    updates.push_back(update({x}, 1, "c"));
  }
  // int(0.2 * 5) = 1 cut at each end: mean of {1, 2, 3}.
  check_close(make_strategy(c)->aggregate(g, updates, 1), {2.0});
  // int(0.2 * 4) = 0: a plain mean.
  updates.pop_back();
  check_close(make_strategy(c)->aggregate(g, updates, 1), {53.0 / 4.0});
  c.beta = 0.3;  // int(0.3 * 4) = 1: mean of {1, 2}
  check_close(make_strategy(c)->aggregate(g, updates, 1), {1.5});
}

BOOST_AUTO_TEST_CASE(krum_rejects_the_outlier) {
  const Weights g = {0.0f, 0.0f};
  const std::vector<ClientUpdate> updates = {
      update({1.0f, 0.0f}, 1, "east"),  update({50.0f, 50.0f}, 1, "attacker"),
      update({0.0f, 1.0f}, 2, "north"), update({0.0f, 0.0f}, 3, "center"),
      update({-1.0f, 0.0f}, 4, "west"), update({0.0f, -1.0f}, 5, "south")};
  // n = 6, f = 1: each score sums the 3 nearest squared distances; the
  // center's is 1 + 1 + 1, a neighbour's 1 + 2 + 2, the attacker's huge.
  const auto scores = krum_scores(updates, 1);
  BOOST_TEST(scores[3] == 3.0);
  BOOST_TEST(scores[0] == 5.0);
  BOOST_TEST(scores[1] > 4000.0);
  StrategyConfig c = config_of("krum");
  c.num_malicious_clients = 1;
  check_close(make_strategy(c)->aggregate(g, updates, 1), {0.0, 0.0});
  // Multi-Krum keeping 5: the weighted mean of all but the attacker.
  c.name = "multikrum";
  c.num_clients_to_keep = 5;
  std::vector<ClientUpdate> honest = updates;
  honest.erase(honest.begin() + 1);
  check_close(make_strategy(c)->aggregate(g, updates, 1), fedavg_by_hand(honest));
}

BOOST_AUTO_TEST_CASE(fedbuff_staleness_weights) {
  StrategyConfig c = config_of("fedbuff");
  c.buffer_size = 3;
  c.server_learning_rate = 2.0;
  auto strategy = make_strategy(c);
  BOOST_TEST(strategy->expects_deltas());
  const Weights g = {1.0f, 1.0f};
  const std::vector<ClientUpdate> first = {update({0.3f, -0.6f}, 1, "a", 0.0, 0),
                                           update({0.4f, 0.8f}, 1, "b", 0.0, 3)};
  // Two of three buffered: the model does not move yet.
  check_close(strategy->aggregate(g, first, 1), {1.0, 1.0});
  const std::vector<ClientUpdate> second = {update({0.9f, 0.3f}, 1, "c", 0.0, 8)};
  // g + eta_g / K * sum delta / sqrt(1 + staleness).
  std::vector<double> want(2);
  for (size_t i = 0; i < 2; ++i) {
    want[i] = 1.0 + 2.0 / 3.0 *
                        (double(first[0].weights[i]) + double(first[1].weights[i]) / 2.0 +
                         double(second[0].weights[i]) / 3.0);
  }
  const Weights stepped = strategy->aggregate(g, second, 2);
  check_close(stepped, want);
  const StrategyState state = strategy->save_state();
  BOOST_TEST(state.at("count")[0] == 0.0);
  BOOST_TEST(state.at("server_steps")[0] == 1.0);
}

BOOST_AUTO_TEST_CASE(save_and_load_state_resume_exactly) {
  for (const std::string name : {"fedavgm", "fedadam", "fedyogi", "fedadagrad", "fedbuff"}) {
    BOOST_TEST_CONTEXT(name) {
      StrategyConfig c = config_of(name);
      c.server_momentum = 0.9;
      c.buffer_size = 2;
      auto run = make_strategy(c);
      const auto r1 = round_updates(0.1f), r2 = round_updates(-0.4f), r3 = round_updates(0.7f);
      const Weights g1 = run->aggregate(kGlobal, r1, 1);
      // A fresh strategy restored from the state after round 1 (FedBuff:
      // with one delta in its buffer, as 3 updates with K = 2 leave one).
      auto resumed = make_strategy(c);
      resumed->load_state(run->save_state());
      const Weights g2 = run->aggregate(g1, r2, 2);
      const Weights g2_resumed = resumed->aggregate(g1, r2, 2);
      BOOST_TEST(g2 == g2_resumed, boost::test_tools::per_element());
      const Weights g3 = run->aggregate(g2, r3, 3);
      const Weights g3_resumed = resumed->aggregate(g2_resumed, r3, 3);
      BOOST_TEST(g3 == g3_resumed, boost::test_tools::per_element());
      // The state did matter: a strategy that lost it gives another model.
      auto forgot = make_strategy(c);
      BOOST_TEST(forgot->aggregate(g1, r2, 2) != g2);
    }
  }
}

BOOST_AUTO_TEST_CASE(dp_clipping_bounds_each_contribution) {
  DpConfig dp;
  dp.noise_multiplier = 0.0;
  dp.clipping_norm = 1.0;
  dp.num_sampled_clients = 3;
  DpFixedClippingStrategy strategy(make_strategy(config_of("fedavg")), dp);
  const Weights g = {1.0f, 1.0f, 1.0f, 1.0f};
  // One client alone: its delta (norm 20) lands at norm exactly C.
  const std::vector<ClientUpdate> alone = {update({11.0f, 1.0f, 1.0f, -9.0f}, 1, "big")};
  const Weights one = strategy.aggregate(g, alone, 1);
  double norm2 = 0.0;
  for (size_t i = 0; i < 4; ++i) norm2 += (double(one[i]) - g[i]) * (double(one[i]) - g[i]);
  BOOST_TEST(std::sqrt(norm2) == 1.0, boost::test_tools::tolerance(1e-6));
  check_close(one, {1.0 + 10.0 / std::sqrt(200.0), 1.0, 1.0, 1.0 - 10.0 / std::sqrt(200.0)});
  // Three equal-weight clients: the two big ones are cut to norm 1, the
  // small one (norm 0.5) passes unchanged; the mean is their mean.
  const std::vector<ClientUpdate> three = {update({101.0f, 1.0f, 1.0f, 1.0f}, 5, "x"),
                                           update({1.0f, -99.0f, 1.0f, 1.0f}, 5, "y"),
                                           update({1.0f, 1.0f, 1.5f, 1.0f}, 5, "z")};
  check_close(strategy.aggregate(g, three, 1), {1.0 + 1.0 / 3, 1.0 - 1.0 / 3, 1.0 + 0.5 / 3, 1.0});
  // No client moves the mean by more than C / m, however large its update.
  std::vector<ClientUpdate> attack = three;
  attack[0].weights = {1e6f, -1e6f, 1e6f, 1e6f};
  const Weights attacked = strategy.aggregate(g, attack, 1);
  const Weights honest = strategy.aggregate(g, three, 1);
  double shift2 = 0.0;
  for (size_t i = 0; i < 4; ++i) {
    shift2 += (double(attacked[i]) - honest[i]) * (double(attacked[i]) - honest[i]);
  }
  BOOST_TEST(std::sqrt(shift2) <= 2.0 / 3.0 + 1e-6);
  Weights update_copy = {3.0f, 4.0f};
  BOOST_TEST(clip_to_norm(update_copy, 1.0) == 5.0);
  check_close(update_copy, {0.6, 0.8});
}

BOOST_AUTO_TEST_CASE(dp_noise_is_gaussian_and_reproducible_by_seed) {
  DpConfig dp;
  dp.noise_multiplier = 1.5;
  dp.clipping_norm = 2.0;
  dp.num_sampled_clients = 4;
  dp.seed = 1234;
  const size_t n = 20000;
  const Weights g(n, 0.5f);
  const std::vector<ClientUpdate> updates = {update(Weights(n, 0.5f), 1, "a"),
                                             update(Weights(n, 0.5f), 1, "b")};
  DpFixedClippingStrategy first(make_strategy(config_of("fedavg")), dp);
  DpFixedClippingStrategy second(make_strategy(config_of("fedavg")), dp);
  BOOST_TEST(first.noise_stddev() == 1.5 * 2.0 / 4.0);
  const Weights a = first.aggregate(g, updates, 7);
  const Weights b = second.aggregate(g, updates, 7);
  BOOST_TEST(a == b, boost::test_tools::per_element());
  // The noise is stddev * philox_normal(seed, round, 0, i).
  for (size_t i = 0; i < 4; ++i) {
    BOOST_TEST(a[i] == float(0.5f + 0.75 * philox_normal(1234, 7, 0, i)));
  }
  double sum = 0.0, sum2 = 0.0;
  for (const float x : a) {
    sum += x - 0.5;
    sum2 += (x - 0.5) * (x - 0.5);
  }
  const double mean = sum / double(n), stddev = std::sqrt(sum2 / double(n) - mean * mean);
  BOOST_TEST(std::abs(mean) < 0.03);                // 5 sigma of the mean: 0.027
  BOOST_TEST(std::abs(stddev - 0.75) < 0.03);       // about 5 sigma
  BOOST_TEST(first.aggregate(g, updates, 8) != a);  // another round, other noise
  dp.seed = 1235;
  DpFixedClippingStrategy other(make_strategy(config_of("fedavg")), dp);
  BOOST_TEST(other.aggregate(g, updates, 7) != a);  // another seed, other noise
}

// Golden figures: TF-privacy's compute_dp_sgd_privacy_test.py ('Test1': n
// 100000, batch 100, sigma 1.0, 30 epochs, delta 1e-7 gives eps
// 1.4154988495444842 at order 13); the rest from the same formulas
// (research/hyperparameters_2022/rdp_accountant.py) in python, incl. Abadi et
// al. 2016's q 0.01, sigma 4, 10^4 steps, delta 1e-5: eps 1.26 (classic).
BOOST_AUTO_TEST_CASE(rdp_accountant_matches_tf_privacy) {
  const auto check = [](PrivacySpent got, double eps, double order) {
    BOOST_TEST(got.epsilon == eps, boost::test_tools::tolerance(1e-9));
    BOOST_TEST(got.order == order);
  };
  check(rdp_privacy_spent(0.001, 1.0, 30000, 1e-7), 1.4154988495444842, 13);
  check(rdp_privacy_spent(0.01, 1.1, 10000, 1e-5), 5.6387499426127725, 4.5);  // fractional
  check(rdp_privacy_spent(0.1, 1.0, 100, 1e-5), 7.9729215103805533, 3.0);
  check(rdp_privacy_spent(0.5, 2.0, 50, 1e-6), 11.333403819589972, 3.5);
  const auto orders = default_rdp_orders();
  BOOST_TEST(orders.size() == 71u);
  check(rdp_privacy_spent(0.01, 4.0, 10000, 1e-5, orders, RdpConversion::classic),
        1.2585747412526791, 20);
  // q = 1: the Gaussian mechanism's alpha / (2 sigma^2).
  BOOST_TEST(sampled_gaussian_rdp(1.0, 2.0, 3.0) == 3.0 / 8.0);
  check(rdp_privacy_spent(1.0, 1.0, 10, 1e-5), 19.053597531631389, 2.5);
  BOOST_TEST(sampled_gaussian_rdp(0.01, 1.1, 2.0) == 0.00012851008160513766,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(sampled_gaussian_rdp(0.01, 1.1, 1.5) == 9.5545285576849421e-05,
             boost::test_tools::tolerance(1e-9));
  BOOST_TEST(rdp_privacy_spent(0.0, 1.0, 1000, 1e-5).epsilon == 0.0);
}

BOOST_AUTO_TEST_CASE(bad_knobs_are_refused_by_name) {
  const Weights g = {0.0f, 0.0f};
  const std::vector<ClientUpdate> two = {update({1.0f, 1.0f}, 1, "a"),
                                         update({2.0f, 2.0f}, 1, "b")};
  StrategyConfig c = config_of("fedtrimmedavg");
  c.beta = 0.5;
  BOOST_TEST(contains(error_of([&] { make_strategy(c); }), "beta = 0.5 must be in [0, 0.5)"));
  c = config_of("krum");
  c.num_malicious_clients = 1;
  BOOST_TEST(contains(error_of([&] { make_strategy(c)->aggregate(g, two, 1); }),
                      "needs more than 2 * 1 + 2 = 4 clients per round"));
  c = config_of("qfedavg");
  c.q_param = -0.1;
  BOOST_TEST(contains(error_of([&] { make_strategy(c); }), "q_param = -0.1 must be >= 0"));
  BOOST_TEST(contains(error_of([&] { make_strategy(config_of("fedavg"))->aggregate(g, {}, 1); }),
                      "no client updates to aggregate"));
  std::vector<ClientUpdate> mismatched = two;
  mismatched[1].weights.push_back(3.0f);
  mismatched[1].client_id = "client-17";
  for (const std::string name : {"fedavg", "fedmedian", "krum", "qfedavg", "fedadam"}) {
    BOOST_TEST(
        contains(error_of([&] { make_strategy(config_of(name))->aggregate(g, mismatched, 1); }),
                 "client 'client-17' (update 1) sent 3 weights, the global model has 2"),
        name);
  }
  BOOST_TEST(contains(error_of([&] { make_strategy(config_of("fedprox")); }), "proximal_mu"));
  BOOST_TEST(
      contains(error_of([&] { make_strategy(config_of("fedsgd")); }), "unknown strategy 'fedsgd'"));
  BOOST_TEST(contains(error_of([&] { make_strategy(config_of("multikrum")); }),
                      "num_clients_to_keep > 0"));
  c = config_of("multikrum");
  c.num_clients_to_keep = 3;
  BOOST_TEST(contains(error_of([&] { make_strategy(c)->aggregate(g, two, 1); }),
                      "num_clients_to_keep = 3 but only 2 clients"));
  std::vector<ClientUpdate> no_examples = two;
  no_examples[0].num_examples = no_examples[1].num_examples = 0;
  BOOST_TEST(
      contains(error_of([&] { make_strategy(config_of("fedavg"))->aggregate(g, no_examples, 1); }),
               "num_examples > 0"));
  DpConfig dp;
  dp.clipping_norm = 0.0;
  BOOST_TEST(
      contains(error_of([&] { DpFixedClippingStrategy(make_strategy(config_of("fedavg")), dp); }),
               "clipping_norm = 0 must be > 0"));
  BOOST_TEST(contains(
      error_of([&] { DpFixedClippingStrategy(make_strategy(config_of("fedbuff")), DpConfig{}); }),
      "asynchronous"));
}
