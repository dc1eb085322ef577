// AdamW against a hand computation, schedules against their formulas,
// clipping against the global norm; loss scaling against its rules.
#define BOOST_TEST_MODULE optim
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <numbers>

#include "core/error.hpp"
#include "kernels/backend.hpp"
#include "optim/adamw.hpp"
#include "optim/loss_scaler.hpp"
#include "optim/schedule.hpp"

using namespace turbine;

BOOST_AUTO_TEST_CASE(adamw_matches_hand_computation) {
  Tensor w = Tensor::from_vector<float>({2}, std::vector<float>{1.0f, -2.0f});
  Tensor b = Tensor::from_vector<float>({1}, std::vector<float>{0.5f});
  w.set_requires_grad(true);
  b.set_requires_grad(true);
  optim::AdamW opt({{"w", w, true}, {"b", b, false}}, {0.1f, 0.9f, 0.99f, 1e-8f, 0.5f});
  double pw = 1.0, pb = 0.5, m = 0, v = 0, mb = 0, vb = 0;
  for (int step = 1; step <= 3; ++step) {
    const float g = 0.3f * step, gb = -0.2f;
    // The optimizer flattened w and b: their gradients are views to write into.
    w.grad().copy_from(Tensor::from_vector<float>({2}, std::vector<float>{g, g}));
    b.grad().copy_from(Tensor::from_vector<float>({1}, std::vector<float>{gb}));
    opt.step(0.1f);
    m = 0.9 * m + 0.1 * g;
    v = 0.99 * v + 0.01 * g * g;
    mb = 0.9 * mb + 0.1 * gb;
    vb = 0.99 * vb + 0.01 * gb * gb;
    const double bc1 = 1 - std::pow(0.9, step), bc2 = 1 - std::pow(0.99, step);
    pw = pw * (1 - 0.1 * 0.5) - 0.1 * (m / bc1) / (std::sqrt(v / bc2) + 1e-8);
    pb = pb - 0.1 * (mb / bc1) / (std::sqrt(vb / bc2) + 1e-8);  // no decay on biases
    BOOST_TEST(std::abs(w.to_vector<float>()[0] - pw) < 1e-6);
    BOOST_TEST(std::abs(b.to_vector<float>()[0] - pb) < 1e-6);
  }
  BOOST_TEST(opt.steps_taken() == 3);
  BOOST_TEST(opt.state_bytes() == 2 * (2 + 1) * 4);
}

BOOST_AUTO_TEST_CASE(shards_update_only_their_range) {
  // Two optimizers over halves of one flat buffer equal one over all of it.
  auto make = [](uint64_t stream) {
    Tensor t = Tensor::randn({3, 5}, 4, stream);
    t.set_requires_grad(true);
    return t;
  };
  Tensor a1 = make(1), b1 = make(2), a2 = make(1), b2 = make(2);
  optim::FlatParameters whole({{"a", a1, true}, {"b", b1, false}}, 2);
  optim::FlatParameters halves({{"a", a2, true}, {"b", b2, false}}, 2);
  const auto [lo, hi] = halves.shard(0, 2);
  BOOST_TEST(lo == 0);
  BOOST_TEST(hi == 15);
  const optim::AdamWConfig config{0.1f, 0.9f, 0.99f, 1e-8f, 0.5f};
  optim::AdamW full(whole, config), first(halves, config, 0, 15), second(halves, config, 15, 30);
  const Tensor g = Tensor::randn({30}, 4, 3);
  for (int step = 0; step < 3; ++step) {
    whole.grads().copy_from(g);
    halves.grads().copy_from(g);
    full.step(0.1f);
    first.step(0.1f);
    second.step(0.1f);
  }
  BOOST_TEST(whole.values().to_vector<float>() == halves.values().to_vector<float>());
  BOOST_TEST(a1.to_vector<float>() == a2.to_vector<float>());
}

BOOST_AUTO_TEST_CASE(schedules_follow_their_formulas) {
  optim::LRSchedule s{optim::LRSchedule::Decay::cosine, 1e-2, 1e-3, 3, 10};
  BOOST_TEST(s.at(0) == 1e-2 / 3, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.at(2) == 1e-2, boost::test_tools::tolerance(1e-12));
  const double mid = 1e-3 + 0.5 * 9e-3 * (1 + std::cos(std::numbers::pi * 3.0 / 7.0));
  BOOST_TEST(s.at(6) == mid, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.at(10) == 1e-3, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(s.at(1000) == 1e-3, boost::test_tools::tolerance(1e-12));
  optim::LRSchedule lin{optim::LRSchedule::Decay::linear, 1.0, 0.0, 0, 4};
  BOOST_TEST(lin.at(2) == 0.5, boost::test_tools::tolerance(1e-12));
  optim::LRSchedule flat{optim::LRSchedule::Decay::constant, 0.3, 0.0, 2, 4};
  BOOST_TEST(flat.at(0) == 0.15, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(flat.at(3) == 0.3, boost::test_tools::tolerance(1e-12));
  BOOST_CHECK_THROW(optim::LRSchedule::parse_decay("exp"), Error);
  optim::LRSchedule bad{optim::LRSchedule::Decay::cosine, 1e-3, 1e-2, 0, 10};
  BOOST_CHECK_THROW(bad.validate(), Error);
}

BOOST_AUTO_TEST_CASE(clipping_scales_to_max_norm) {
  Tensor a = Tensor::zeros({2}), b = Tensor::zeros({1});
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  a.set_grad(Tensor::from_vector<float>({2}, std::vector<float>{3, 0}));
  b.set_grad(Tensor::from_vector<float>({1}, std::vector<float>{4}));
  const nn::ParameterList params{{"a", a, true}, {"b", b, false}};
  BOOST_TEST(optim::clip_grad_norm(params, 10.0) == 5.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(a.grad().to_vector<float>()[0] == 3.0f);  // under the limit: untouched
  BOOST_TEST(optim::clip_grad_norm(params, 1.0) == 5.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(a.grad().to_vector<float>()[0] == 0.6f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(b.grad().to_vector<float>()[0] == 0.8f, boost::test_tools::tolerance(1e-5f));
  b.set_grad(Tensor::from_vector<float>({1}, std::vector<float>{NAN}));
  BOOST_CHECK_THROW(optim::clip_grad_norm(params, 1.0), Error);
}

BOOST_AUTO_TEST_CASE(bad_hyperparameters_are_errors) {
  Tensor w = Tensor::zeros({2});
  w.set_requires_grad(true);
  const nn::ParameterList params{{"w", w, true}};
  BOOST_CHECK_THROW((optim::AdamW(params, {0.1f, 1.0f, 0.99f, 1e-8f, 0.0f})), Error);
  BOOST_CHECK_THROW((optim::AdamW(params, {-0.1f, 0.9f, 0.99f, 1e-8f, 0.0f})), Error);
  BOOST_CHECK_THROW((optim::AdamW(nn::ParameterList{}, optim::AdamWConfig{})), Error);
}

BOOST_AUTO_TEST_CASE(dynamic_loss_scale_backs_off_and_grows) {
  optim::LossScaler scaler({0, 4, 3, 2, 2});  // 2^4, window 3, hysteresis 2, min 2
  BOOST_TEST(scaler.scale() == 16.0);
  BOOST_TEST(!scaler.update(true));  // first overflow: hysteresis absorbs it
  BOOST_TEST(scaler.scale() == 16.0);
  BOOST_TEST(!scaler.update(true));  // second in a row: halve
  BOOST_TEST(scaler.scale() == 8.0);
  for (int i = 0; i < 2; ++i) BOOST_TEST(scaler.update(false));
  BOOST_TEST(scaler.scale() == 8.0);
  BOOST_TEST(scaler.update(false));  // third clean step: double
  BOOST_TEST(scaler.scale() == 16.0);
  for (int i = 0; i < 20; ++i) scaler.update(true);
  BOOST_TEST(scaler.scale() == 2.0);  // never below min_loss_scale
  BOOST_TEST(scaler.overflows() == 22);

  optim::LossScaler fixed({128, 16, 1, 1, 1});
  BOOST_TEST(!fixed.update(true));
  for (int i = 0; i < 3; ++i) fixed.update(false);
  BOOST_TEST(fixed.scale() == 128.0);
  BOOST_CHECK_THROW(optim::LossScaler({0, 16, 0, 2, 1}), Error);
}

// DeepSpeed's DynamicLossScaler rules: the hysteresis is not restored by a
// halving, nor (by default) by clean steps, only when the scale doubles.
BOOST_AUTO_TEST_CASE(loss_scale_hysteresis_follows_deepspeed) {
  optim::LossScaleConfig config{0, 4, 3, 2, 1};  // 2^4, window 3, hysteresis 2
  optim::LossScaler scaler(config);
  const std::vector<std::pair<bool, double>> steps{
      {true, 16},   // absorbed: one overflow of tolerance left
      {false, 16},  // a clean step does not restore it
      {true, 8},    // so this one halves
      {true, 4},    // and so does the next: a halving does not restore it either
      {false, 4},  {false, 4},
      {false, 8},  // the third clean step since the overflow doubles, restoring it
      {true, 8},   // absorbed again
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    BOOST_TEST(scaler.update(steps[i].first) == !steps[i].first);
    BOOST_TEST(scaler.scale() == steps[i].second, "step " << i);
  }
  config.consecutive_hysteresis = true;  // every clean step restores it
  optim::LossScaler consecutive(config);
  for (bool overflow : {true, false, true}) consecutive.update(overflow);
  BOOST_TEST(consecutive.scale() == 16.0);
  consecutive.update(true);
  BOOST_TEST(consecutive.scale() == 8.0);
  consecutive.update(true);
  BOOST_TEST(consecutive.scale() == 4.0);
}

BOOST_AUTO_TEST_CASE(restored_loss_scaler_continues_like_an_uninterrupted_one) {
  const optim::LossScaleConfig config{0, 4, 5, 3, 1};  // 2^4, window 5, hysteresis 3
  // Overflows, clean steps and a halving, with a "checkpoint" after each
  // step: the restored twin must then agree with the straight run for good.
  const std::vector<bool> overflows{false, false, true,  false, true,  true, true,  false,
                                    false, false, false, false, false, true, false, false};
  for (size_t cut = 0; cut < overflows.size(); ++cut) {
    optim::LossScaler straight(config), first(config);
    for (size_t i = 0; i < cut; ++i) {
      straight.update(overflows[i]);
      first.update(overflows[i]);
    }
    optim::LossScaler resumed(config);
    resumed.restore(first.state());
    for (size_t i = cut; i < overflows.size(); ++i) {
      BOOST_TEST(resumed.update(overflows[i]) == straight.update(overflows[i]));
      BOOST_TEST(resumed.scale() == straight.scale(), "cut " << cut << ", step " << i);
    }
  }
  optim::LossScaler scaler(config);
  BOOST_CHECK_THROW(scaler.restore({0.0, 0, 1}), Error);
  scaler.restore({64.0, 4, 0});  // a checkpoint without hysteresis: the configured one
  BOOST_TEST(scaler.update(false));
  BOOST_TEST(scaler.scale() == 128.0);  // the fifth clean step doubles
}

BOOST_AUTO_TEST_CASE(unscale_reports_non_finite_values) {
  kernels::Backend& be = kernels::cpu_backend();
  std::vector<float> x{2.0f, -4.0f, 8.0f};
  BOOST_TEST(be.unscale_and_check(x.data(), x.size(), 0.5f));
  BOOST_TEST(x[1] == -2.0f);
  x[2] = std::numeric_limits<float>::infinity();
  BOOST_TEST(!be.unscale_and_check(x.data(), x.size(), 0.5f));
  x[2] = std::nanf("");
  BOOST_TEST(!be.unscale_and_check(x.data(), x.size(), 1.0f));
}
