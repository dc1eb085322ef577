// A federated client's local training (lib/fl/client.hpp) against SGD by
// hand: one full-batch step; two steps with momentum and FedProx's proximal
// term; a persistent trainer reused for another client equals a fresh one
// (nothing leaks between clients); evaluation counts; bad weights refused;
// FedAvg of one client and one step, and of clients holding identical data,
// equals centralized SGD; a pool runs budgeted clients together with the
// results they give alone, and a client past its memory cap fails alone.
#define BOOST_TEST_MODULE fl_client
#include <boost/test/unit_test.hpp>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "fl/client.hpp"
#include "fl/pool.hpp"
#include "fl/strategy.hpp"
#include "fl_fixtures.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

// The parameters' gradient of the mean loss over `rows` at weights w (flat).
std::vector<float> gradient(const nn::VisionConfig& c, const std::vector<float>& w,
                            const data::ImageSet& set, const std::vector<int64_t>& rows) {
  const fl::ImageTask task(set, set, c);
  fl::ClientTrainer t(task, Device::cpu());
  t.set_weights(w);
  autograd::backward(t.model().train_loss(rows, 0));
  std::vector<float> g;
  for (const nn::Parameter& p : t.model().parameters()) {
    const auto v = p.tensor.grad().to_vector<float>();
    g.insert(g.end(), v.begin(), v.end());
  }
  return g;
}

double max_diff(const std::vector<float>& a, const std::vector<float>& b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

}  // namespace

BOOST_AUTO_TEST_CASE(one_full_batch_step_is_sgd) {
  const data::ImageSet set = tiny_set();
  const std::vector<int64_t> rows = {0, 2, 3, 5, 7, 8, 11};
  for (const std::string arch : {"mlp", "cnn"}) {
    const nn::VisionConfig c = tiny_config(arch);
    const fl::ImageTask task(set, set, c);
    fl::ClientTrainer client(task, Device::cpu());
    const std::vector<float> w0 = client.weights();
    fl::LocalTraining local;
    local.batch_size = int64_t(rows.size());
    local.lr = 0.1;
    const fl::LocalResult r = client.train(w0, rows, local, 42);
    BOOST_TEST(r.steps == 1);
    BOOST_TEST(r.num_examples == 7);
    const std::vector<float> g = gradient(c, w0, set, rows);
    std::vector<float> expected = w0;
    for (size_t i = 0; i < g.size(); ++i) expected[i] -= 0.1f * g[i];
    BOOST_TEST(max_diff(r.weights, expected, g.size()) < 1e-6, arch);
  }
}

BOOST_AUTO_TEST_CASE(momentum_and_proximal_term_over_two_steps) {
  const data::ImageSet set = tiny_set();
  const std::vector<int64_t> rows = {1, 4, 6, 9, 10};
  const nn::VisionConfig c = tiny_config("mlp");
  const fl::ImageTask task(set, set, c);
  fl::ClientTrainer client(task, Device::cpu());
  const std::vector<float> w0 = client.weights();
  fl::LocalTraining local;
  local.batch_size = 5;
  local.epochs = 2;
  local.lr = 0.2;
  local.momentum = 0.9;
  local.proximal_mu = 0.5;
  const fl::LocalResult r = client.train(w0, rows, local, 1);
  BOOST_TEST(r.steps == 2);
  // Step 1: v = g(w0) (no pull yet); w1 = w0 - lr v.
  const std::vector<float> g0 = gradient(c, w0, set, rows);
  std::vector<float> w1 = w0, v = g0;
  for (size_t i = 0; i < g0.size(); ++i) w1[i] -= 0.2f * v[i];
  // Step 2: v = 0.9 v + g(w1) + mu (w1 - w0); w2 = w1 - lr v.
  const std::vector<float> g1 = gradient(c, w1, set, rows);
  std::vector<float> w2 = w1;
  for (size_t i = 0; i < g1.size(); ++i) {
    v[i] = 0.9f * v[i] + (g1[i] + 0.5f * (w1[i] - w0[i]));
    w2[i] -= 0.2f * v[i];
  }
  BOOST_TEST(max_diff(r.weights, w2, g1.size()) < 1e-6);
}

BOOST_AUTO_TEST_CASE(a_reused_trainer_equals_a_fresh_one) {
  const data::ImageSet set = tiny_set();
  const nn::VisionConfig c = tiny_config("resnet");  // BatchNorm: buffers travel in the weights
  const fl::ImageTask task(set, set, c);
  fl::ClientTrainer worker(task, Device::cpu());
  const std::vector<float> global = worker.weights();
  BOOST_TEST(worker.numel() > worker.parameter_numel());  // running statistics at the end
  fl::LocalTraining local;
  local.batch_size = 3;
  local.momentum = 0.5;
  worker.train(global, std::vector<int64_t>{0, 1, 2, 3, 4, 5}, local, 7);
  const fl::LocalResult second =
      worker.train(global, std::vector<int64_t>{6, 7, 8, 9, 10, 11}, local, 8);
  fl::ClientTrainer fresh(task, Device::cpu());
  const fl::LocalResult alone =
      fresh.train(global, std::vector<int64_t>{6, 7, 8, 9, 10, 11}, local, 8);
  BOOST_TEST(second.weights == alone.weights);
  BOOST_TEST(second.train_loss == alone.train_loss);
  // The running statistics moved during training.
  BOOST_TEST(max_diff(std::vector<float>(alone.weights.begin() + worker.parameter_numel(),
                                         alone.weights.end()),
                      std::vector<float>(global.begin() + worker.parameter_numel(), global.end()),
                      size_t(worker.numel() - worker.parameter_numel())) > 1e-4);
}

BOOST_AUTO_TEST_CASE(evaluation_and_bad_weights) {
  const data::ImageSet set = tiny_set();
  const fl::ImageTask task(set, set, tiny_config("cnn"));
  fl::ClientTrainer client(task, Device::cpu());
  const std::vector<float> w = client.weights();
  const std::vector<int64_t> rows = {2, 3, 4, 5, 6, 7, 8, 9, 10};
  const fl::EvalResult r = client.evaluate(w, true, rows, 4);
  BOOST_TEST(r.count == 9);
  BOOST_TEST(r.accuracy >= 0.0);
  BOOST_TEST(r.accuracy <= 1.0);
  BOOST_TEST(r.loss > 0.0);
  BOOST_TEST(contains(error_of([&] { client.set_weights(std::vector<float>(5)); }),
                      "5 weights for a model of"));
  BOOST_TEST(
      contains(error_of([&] { client.train(w, {}, fl::LocalTraining{}, 1); }), "no samples"));
}

BOOST_AUTO_TEST_CASE(fedavg_of_one_client_and_one_step_is_centralized_sgd) {
  const data::ImageSet set = tiny_set();
  const std::vector<int64_t> rows = {0, 1, 2, 3, 4, 5, 6, 7};
  const nn::VisionConfig c = tiny_config("cnn");
  const fl::ImageTask task(set, set, c);
  fl::ClientTrainer client(task, Device::cpu());
  const std::vector<float> w0 = client.weights();
  fl::LocalTraining local;
  local.batch_size = 8;
  local.max_steps = 1;
  local.lr = 0.05;
  const fl::LocalResult r = client.train(w0, rows, local, 3);
  const auto fedavg = fl::make_strategy(fl::StrategyConfig{});
  const std::vector<fl::ClientUpdate> one = {{r.weights, r.num_examples, 0, 0, "client 0"}};
  const fl::Weights next = fedavg->aggregate(w0, one, 1);
  const std::vector<float> g = gradient(c, w0, set, rows);
  std::vector<float> sgd = w0;
  for (size_t i = 0; i < g.size(); ++i) sgd[i] -= 0.05f * g[i];
  BOOST_TEST(max_diff(next, sgd, g.size()) < 1e-6);
}

BOOST_AUTO_TEST_CASE(fedavg_of_clients_holding_identical_data_is_the_centralized_run) {
  // Three clients with the same samples train 3 full-batch steps from the
  // same global model; FedAvg of them is 3 centralized SGD steps.
  const data::ImageSet set = tiny_set();
  const std::vector<int64_t> rows = {1, 3, 5, 7, 9, 11};
  const nn::VisionConfig c = tiny_config("mlp");
  const fl::ImageTask task(set, set, c);
  fl::ClientTrainer worker(task, Device::cpu());
  const std::vector<float> w0 = worker.weights();
  fl::LocalTraining local;
  local.batch_size = 6;
  local.epochs = 3;
  local.lr = 0.1;
  std::vector<fl::ClientUpdate> updates;
  for (uint64_t seed : {11, 12, 13}) {
    const fl::LocalResult r = worker.train(w0, rows, local, seed);
    updates.push_back({r.weights, r.num_examples, 0, 0, "client"});
  }
  const fl::Weights next = fl::make_strategy(fl::StrategyConfig{})->aggregate(w0, updates, 1);
  std::vector<float> w = w0;
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> g = gradient(c, w, set, rows);
    for (size_t i = 0; i < g.size(); ++i) w[i] -= 0.1f * g[i];
  }
  BOOST_TEST(max_diff(next, w, size_t(worker.parameter_numel())) < 1e-6);
}

BOOST_AUTO_TEST_CASE(a_pool_runs_budgeted_clients_together_as_they_run_alone) {
  const data::ImageSet set = tiny_set();
  const std::vector<std::vector<int64_t>> parts = {{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}};
  const nn::VisionConfig c = tiny_config("cnn");
  fl::LocalTraining local;
  local.batch_size = 2;
  local.epochs = 2;
  const fl::ImageTask task(set, set, c);
  fl::ClientPool pool(task, Device::cpu(), parts, local, 1);
  fl::ClientTrainer alone(task, Device::cpu());
  const std::vector<float> global = alone.weights();
  pool.set_global(global);
  // Three clients at once (a third of the worker each), one with a cap
  // smaller than the model it must hold.
  for (int64_t client = 0; client < 3; ++client) {
    fl::ClientTask t;
    t.client = t.index = client;
    t.share = 1.0 / 3;
    t.seed = 100 + uint64_t(client);
    t.memory_mb = client == 2 ? 0.001 : 0;
    t.batch_size = client == 1 ? 4 : 0;  // its own workload
    pool.start(t);
  }
  BOOST_TEST(pool.running() <= 3);
  BOOST_TEST(pool.slots() == 3);
  int seen = 0;
  while (seen < 3) {
    const auto out = pool.finished(1.0);
    if (!out) continue;
    ++seen;
    const int64_t client = out->task.client;
    if (client == 2) {
      BOOST_TEST(int(out->status) == int(fl::ClientStatus::out_of_memory));
      BOOST_TEST(contains(out->error, "client 2: out of memory"));
      continue;
    }
    BOOST_TEST(int(out->status) == int(fl::ClientStatus::ok));
    BOOST_TEST(out->threads == 1);
    const fl::LocalResult r =
        alone.train(global, parts[size_t(client)], fl::local_for(local, out->task), out->task.seed);
    BOOST_TEST(out->result.weights == r.weights, "client " << client);
    BOOST_TEST(out->result.steps == (client == 1 ? 2 : 4));
  }
  BOOST_TEST(pool.running() == 0);
  BOOST_TEST(pool.slots() == 3);  // kept for the next round
}
