// The module interface: trainable flags and frozen parameters, deep and
// frozen copies that share no weights, linear layers wrapped by LoRA, and
// the logits of chosen positions only.
#define BOOST_TEST_MODULE nn
#include <boost/test/unit_test.hpp>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "nn/bloom.hpp"
#include "nn/lora.hpp"
#include "test_util.hpp"

using namespace turbine;

namespace {

nn::BloomConfig tiny() {
  return nn::BloomConfig{48, 16, 2, 2};
}

const Tensor kIds = Tensor::from_vector<int64_t>({2, 5}, {1, 5, 9, 3, 7, 2, 4, 6, 8, 10});
const Tensor kTargets = Tensor::from_vector<int64_t>({2, 5}, {5, 9, 3, 7, 1, 4, 6, 8, 10, 2});

float max_abs_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<float>(), y = b.to_vector<float>();
  BOOST_REQUIRE(x.size() == y.size());
  float worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::abs(x[i] - y[i]));
  return worst;
}

size_t count_trainable(const nn::ParameterList& params) {
  return nn::trainable(params).size();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(modules)

BOOST_AUTO_TEST_CASE(deep_copy_shares_no_weights) {
  nn::Bloom model(tiny(), 1);
  const nn::Bloom copy = model.deep_copy();
  const Tensor before = copy.logits(kIds);
  BOOST_TEST(max_abs_diff(before, model.logits(kIds)) == 0.0f);
  // Changing the original leaves the copy alone.
  model.parameters()[0].tensor.fill(0.5f);
  model.parameter("h.1.mlp.dense_4h_to_h.weight").fill(0.25f);
  BOOST_TEST(max_abs_diff(before, copy.logits(kIds)) == 0.0f);
  BOOST_TEST(max_abs_diff(before, model.logits(kIds)) > 0.0f);
  BOOST_TEST(copy.parameters().size() == model.parameters().size());
  for (size_t i = 0; i < copy.parameters().size(); ++i)
    BOOST_TEST(!copy.parameters()[i].tensor.same_as(model.parameters()[i].tensor));
}

BOOST_AUTO_TEST_CASE(frozen_copy_gets_no_gradients) {
  nn::Bloom model(tiny(), 2);
  const nn::Bloom reference = model.frozen_copy();
  BOOST_TEST(count_trainable(reference.parameters()) == 0u);
  BOOST_TEST(count_trainable(model.parameters()) == model.parameters().size());
  // Both in one graph (as PPO's KL term): only the trained model's
  // parameters receive gradients.
  const Tensor loss = ag::add(model.loss(kIds, kTargets), reference.loss(kIds, kTargets));
  autograd::backward(loss);
  for (const nn::Parameter& p : reference.parameters()) BOOST_TEST(!p.tensor.grad().defined());
  for (const nn::Parameter& p : model.parameters()) BOOST_TEST(p.tensor.grad().defined());
}

BOOST_AUTO_TEST_CASE(set_trainable_by_name) {
  nn::Bloom model(tiny(), 3);
  model.set_trainable(false, [](const std::string& name) { return name.starts_with("h.0."); });
  for (const nn::Parameter& p : model.parameters()) {
    BOOST_TEST(p.trainable == !p.name.starts_with("h.0."), p.name);
    BOOST_TEST(p.tensor.requires_grad() == p.trainable, p.name);
  }
}

BOOST_AUTO_TEST_CASE(lora_starts_as_the_base_and_trains_only_its_adapters) {
  nn::Bloom model(tiny(), 4);
  const Tensor base_logits = model.logits(kIds);
  const int64_t wrapped = nn::apply_lora(model, {4, 2.0f, "self_attention.", 9});
  BOOST_TEST(wrapped == 4);  // query_key_value and dense in each of 2 blocks
  // B starts at zero: the same function as the base.
  BOOST_TEST(max_abs_diff(base_logits, model.logits(kIds)) == 0.0f);
  // The base weights keep their names (base checkpoints load); the adapters
  // are the only trainable parameters.
  const nn::ParameterList trainable = nn::trainable(model.parameters());
  BOOST_TEST(trainable.size() == 8u);
  for (const nn::Parameter& p : trainable)
    BOOST_TEST((p.name.ends_with("lora_A.weight") || p.name.ends_with("lora_B.weight")), p.name);
  BOOST_TEST(model.parameter("h.1.self_attention.dense.weight").defined());
  autograd::backward(model.loss(kIds, kTargets));
  for (const nn::Parameter& p : model.parameters())
    BOOST_TEST(p.tensor.grad().defined() == p.trainable, p.name);
  // B gets a gradient at zero; A's is zero until B moves (dL/dA = s B^T ...).
  BOOST_TEST(std::sqrt(ops::sum_squares(
                 model.parameter("h.0.self_attention.dense.lora_B.weight").grad())) > 0.0);
  // Moving B changes the function by exactly scaling * x A^T B^T.
  model.parameter("h.0.self_attention.query_key_value.lora_B.weight").fill(0.01f);
  BOOST_TEST(max_abs_diff(base_logits, model.logits(kIds)) > 1e-4f);
  // A deep copy of a LoRA model copies the adapters too.
  const nn::Bloom copy = model.deep_copy();
  BOOST_TEST(max_abs_diff(copy.logits(kIds), model.logits(kIds)) == 0.0f);
  BOOST_TEST(count_trainable(copy.parameters()) == 8u);
}

BOOST_AUTO_TEST_CASE(logits_at_chosen_positions) {
  autograd::NoGradGuard no_grad;
  nn::Bloom model(tiny(), 5);
  const auto full = model.logits(kIds).to_vector<float>();  // (2, 5, 48)
  const auto picked =
      model.logits_at(kIds, Tensor::from_vector<int64_t>({2}, {-1, 2})).to_vector<float>();
  BOOST_REQUIRE(picked.size() == 2u * 48u);
  for (int v = 0; v < 48; ++v) {
    BOOST_TEST(picked[v] == full[(0 * 5 + 4) * 48 + v], boost::test_tools::tolerance(1e-5f));
    BOOST_TEST(picked[48 + v] == full[(1 * 5 + 2) * 48 + v], boost::test_tools::tolerance(1e-5f));
  }
  const std::string e = testing::error_of([&] {
    model.logits_at(kIds, Tensor::from_vector<int64_t>({2}, {0, 5}));
  });
  BOOST_TEST(testing::contains(e, "position 5 is outside [0, 5)"), e);
}

BOOST_AUTO_TEST_SUITE_END()
