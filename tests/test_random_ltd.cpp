// Random-LTD: the token subsets, gradients through dropping layers by finite
// differences, and a model that drops nothing equals the baseline.
#define BOOST_TEST_MODULE random_ltd
#include <boost/test/unit_test.hpp>

#include <set>

#include "autograd/functions.hpp"
#include "grad_check.hpp"
#include "nn/bloom.hpp"

using namespace turbine;
using testing::grad_check;
using testing::param;

BOOST_AUTO_TEST_CASE(subsets_are_sorted_distinct_and_fresh_each_step) {
  const auto a = nn::random_ltd_indices(3, 50, 20, 9, 1, 2).to_vector<int64_t>();
  const auto again = nn::random_ltd_indices(3, 50, 20, 9, 1, 2).to_vector<int64_t>();
  const auto next_step = nn::random_ltd_indices(3, 50, 20, 9, 2, 2).to_vector<int64_t>();
  const auto other_layer = nn::random_ltd_indices(3, 50, 20, 9, 1, 3).to_vector<int64_t>();
  BOOST_TEST(a == again);
  BOOST_TEST(a != next_step);
  BOOST_TEST(a != other_layer);
  for (int b = 0; b < 3; ++b) {
    std::set<int64_t> row(a.begin() + b * 20, a.begin() + (b + 1) * 20);
    BOOST_TEST(row.size() == 20u);
    BOOST_TEST(*row.begin() >= 0);
    BOOST_TEST(*row.rbegin() < 50);
    BOOST_TEST(std::is_sorted(a.begin() + b * 20, a.begin() + (b + 1) * 20));
  }
  // Rows differ from each other (a subset per sample).
  BOOST_TEST(!std::equal(a.begin(), a.begin() + 20, a.begin() + 20));
  // Uniform: every position is kept about kept/seq of the time.
  std::vector<int> count(50, 0);
  for (uint64_t step = 0; step < 400; ++step)
    for (int64_t i : nn::random_ltd_indices(1, 50, 10, 3, step, 1).to_vector<int64_t>()) ++count[i];
  for (int c : count) BOOST_TEST((c > 40 && c < 120));  // expectation 80
}

BOOST_AUTO_TEST_CASE(gradient_through_a_dropping_layer) {
  nn::BloomConfig config{31, 12, 3, 1};
  nn::Init init{5, 0, 0.3f, Device::cpu()};
  nn::BloomBlock block(config, init);
  const Tensor kept = nn::random_ltd_indices(2, 9, 5, 4, 0, 0);
  const auto slopes = ops::alibi_slopes(3);
  auto f = [&](const std::vector<Tensor>& in) {
    const Tensor through = block.forward(ag::gather_rows(in[0], kept), slopes, 0, 0, kept);
    return std::vector<Tensor>{ag::scatter_rows(in[0], kept, through)};
  };
  BOOST_TEST(grad_check(f, {param({2, 9, 12}, 1)}) < 1e-2);
}

BOOST_AUTO_TEST_CASE(model_gradients_with_dropping_match_finite_differences) {
  nn::BloomConfig config{23, 16, 4, 3};
  nn::Bloom model(config, 3);
  model.set_token_dropping({{1}, 6, 7, 5});
  std::vector<int64_t> ids(2 * 10), targets(2 * 10);
  for (size_t i = 0; i < ids.size(); ++i) {
    ids[i] = int64_t(philox4x32(1, 0, i)[0] % 23);
    targets[i] = int64_t(philox4x32(1, 1, i)[0] % 23);
  }
  const Tensor x = Tensor::from_vector<int64_t>({2, 10}, ids);
  const Tensor y = Tensor::from_vector<int64_t>({2, 10}, targets);
  autograd::backward(model.loss(x, y));
  BOOST_TEST(autograd::tape_size() == 0u);  // every node of the model reached the loss
  // Central differences of the loss on a sample of each dropping-layer parameter.
  std::vector<float> analytic, numeric;
  for (const nn::Parameter& p : model.parameters()) {
    if (p.name.rfind("h.1.", 0) != 0) continue;
    const auto grad = p.tensor.grad().to_vector<float>();
    for (int64_t i = 0; i < p.tensor.numel(); i += std::max<int64_t>(1, p.tensor.numel() / 6)) {
      float* w = p.tensor.data<float>() + i;
      const float saved = *w, eps = 1e-2f;
      autograd::NoGradGuard no_grad;
      *w = saved + eps;
      const double up = model.loss(x, y).item();
      *w = saved - eps;
      const double down = model.loss(x, y).item();
      *w = saved;
      numeric.push_back(float((up - down) / (2 * eps)));
      analytic.push_back(grad[i]);
    }
  }
  BOOST_TEST(analytic.size() > 30u);
  BOOST_TEST(testing::norm_error(analytic, numeric) < 2e-2);
}

BOOST_AUTO_TEST_CASE(keeping_every_token_is_the_baseline) {
  nn::BloomConfig config{29, 16, 4, 3};
  nn::Bloom plain(config, 8), keeping_all(config, 8), dropping(config, 8);
  keeping_all.set_token_dropping({{1}, 12, 7, 0});  // kept == seq_len: nothing dropped
  dropping.set_token_dropping({{1}, 6, 7, 0});
  std::vector<int64_t> ids(24);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = int64_t(i * 7 % 29);
  const Tensor x = Tensor::from_vector<int64_t>({2, 12}, ids);
  autograd::NoGradGuard no_grad;
  const float base = plain.loss(x, x).item();
  BOOST_TEST(keeping_all.loss(x, x).item() == base);
  BOOST_TEST(dropping.loss(x, x).item() != base);
  // Evaluation never drops.
  dropping.set_training(false);
  BOOST_TEST(dropping.loss(x, x).item() == base);
}
