// The golden BLOOM comparison shared by test_bloom_golden (CPU) and
// test_bloom_golden_cuda: tests/golden/bloom_tiny.h5, written by
// tools/make-golden-bloom from tools/bloom_ref.py (a transcription of Hugging
// Face's modeling_bloom in f32), against the model on a given device and in a
// given math mode: logits, loss, every gradient, and ten AdamW steps with
// warmup + cosine and gradient clipping. Include after <boost/test/unit_test.hpp>.
#pragma once

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "autograd/tape.hpp"
#include "grad_check.hpp"
#include "kernels/backend.hpp"
#include "nn/bloom.hpp"
#include "optim/adamw.hpp"
#include "optim/schedule.hpp"
#include "tensor/hdf5.hpp"

namespace turbine::testing {

struct Golden {
  H5File file;
  nn::BloomConfig config;
  std::map<std::string, Tensor> params;
  Tensor ids, targets;

  Golden()
      : file(std::string(std::getenv("TURBINE_SOURCE_ROOT") ? std::getenv("TURBINE_SOURCE_ROOT")
                                                            : ".") +
                 "/tests/golden/bloom_tiny.h5",
             H5File::Mode::read) {
    config.vocab_size = file.attribute_int("vocab");
    config.hidden_size = file.attribute_int("hidden");
    config.n_head = file.attribute_int("n_head");
    config.n_layer = file.attribute_int("n_layer");
    config.layer_norm_epsilon = static_cast<float>(file.attribute_double("layer_norm_eps"));
    for (const std::string& name : file.list("params")) params[name] = file.read("params/" + name);
    ids = file.read("input_ids");
    targets = file.read("targets");
  }

  nn::Bloom model(Device device) const {
    nn::Bloom m(config, 1, device);
    m.load_state(params);
    return m;
  }
};

// Largest normalized errors (norm_error: ||ours - ref|| / ||ref||) accepted;
// the defaults are f32 math's (measured ~1e-7 everywhere on the CPU).
struct GoldenTolerance {
  double logits = 1e-5;
  double loss = 1e-5;  // relative
  double grads = 1e-4;
};

// bf16 math against the f32 reference: GEMM and attention inputs are rounded
// to bf16 (8 significant bits, rms ~1.6e-3 relative per value) and accumulated
// in f32, so errors of a few 1e-3 are the mode working as designed. The CPU's
// emulation measures logits 2.0e-3, loss 6e-6, worst gradient 5.9e-3
// (h.0.input_layernorm.bias) on this model; a GPU also rounds attention's
// probabilities to bf16, about as much again, so the limits leave ~3-5x. A
// wrong conversion or a dropped term shows errors of order 1.
constexpr GoldenTolerance kBf16Tolerance{.logits = 1e-2, .loss = 1e-3, .grads = 3e-2};

inline void check_logits_loss_and_gradients(Device device, kernels::MathMode mode,
                                            const GoldenTolerance& tol) {
  const std::string where =
      fmt::format("{} in {} math", device.str(), kernels::math_mode_name(mode));
  Golden g;
  BOOST_TEST(g.config.n_head == 6);  // not a power of two: ALiBi's extra-slope path
  kernels::MathModeGuard math(backend_for(device), mode);
  nn::Bloom model = g.model(device);
  BOOST_TEST(model.parameters().size() == g.params.size());
  const Tensor ids = g.ids.to(device), targets = g.targets.to(device);

  const Tensor logits = model.logits(ids);
  autograd::clear_tape();
  BOOST_TEST(logits.device().str() == device.str());
  const double logits_err =
      norm_error(logits.to_vector<float>(), g.file.read("logits").to_vector<float>());
  BOOST_TEST_MESSAGE(where << ": logits normalized error " << logits_err);
  BOOST_TEST(logits_err < tol.logits, where << ": logits error " << logits_err);

  const Tensor loss = model.loss(ids, targets);
  const float ref_loss = g.file.read("loss").to_vector<float>()[0];
  const double loss_err = std::abs(loss.item() - ref_loss) / std::abs(ref_loss);
  BOOST_TEST_MESSAGE(where << ": loss " << loss.item() << " reference " << ref_loss
                           << " relative error " << loss_err);
  BOOST_TEST(loss_err < tol.loss, where << ": loss " << loss.item() << " vs " << ref_loss);

  autograd::backward(loss);
  double worst = 0;
  for (const nn::Parameter& p : model.parameters()) {
    const Tensor grad = p.tensor.grad();
    BOOST_TEST_REQUIRE(grad.defined(), where << ": no gradient for " << p.name);
    const double err =
        norm_error(grad.to_vector<float>(), g.file.read("grads/" + p.name).to_vector<float>());
    worst = std::max(worst, err);
    BOOST_TEST_MESSAGE(where << ": grad " << p.name << " normalized error " << err);
    BOOST_TEST(err < tol.grads, where << ": " << p.name << " gradient error " << err);
  }
  BOOST_TEST_MESSAGE(where << ": worst gradient error " << worst);
}

// Ten AdamW steps: losses, learning rates and clipped gradient norms.
inline void check_ten_adamw_steps(Device device, kernels::MathMode mode, double loss_tol,
                                  double norm_tol) {
  const std::string where =
      fmt::format("{} in {} math", device.str(), kernels::math_mode_name(mode));
  Golden g;
  kernels::MathModeGuard math(backend_for(device), mode);
  nn::Bloom model = g.model(device);
  const Tensor ids = g.ids.to(device), targets = g.targets.to(device);
  optim::AdamWConfig config;
  config.beta1 = float(g.file.attribute_double("beta1"));
  config.beta2 = float(g.file.attribute_double("beta2"));
  config.eps = float(g.file.attribute_double("adam_eps"));
  config.weight_decay = float(g.file.attribute_double("weight_decay"));
  optim::AdamW opt(model.parameters(), config);
  optim::LRSchedule schedule{optim::LRSchedule::Decay::cosine, g.file.attribute_double("max_lr"),
                             g.file.attribute_double("min_lr"),
                             g.file.attribute_int("warmup_steps"),
                             g.file.attribute_int("total_steps")};
  const double clip = g.file.attribute_double("clip_norm");
  const auto ref_losses = g.file.read("train_losses").to_vector<float>();
  const auto ref_lrs = g.file.read("train_lrs").to_vector<float>();
  const auto ref_norms = g.file.read("train_grad_norms").to_vector<float>();
  std::vector<float> losses;
  for (int step = 0; step < 10; ++step) {
    const Tensor loss = model.loss(ids, targets);
    losses.push_back(loss.item());
    autograd::backward(loss);
    const double norm = optim::clip_grad_norm(model.parameters(), clip);
    BOOST_TEST(
        std::abs(norm - ref_norms[step]) / ref_norms[step] < norm_tol,
        where << ": step " << step << " gradient norm " << norm << " vs " << ref_norms[step]);
    const double lr = schedule.at(step);
    BOOST_TEST(std::abs(lr - ref_lrs[step]) / ref_lrs[step] < 1e-6);
    opt.step(static_cast<float>(lr));
    opt.zero_grad();
    BOOST_TEST_MESSAGE(where << ": step " << step << " loss " << losses.back() << " reference "
                             << ref_losses[step]);
  }
  for (int step = 0; step < 10; ++step)
    BOOST_TEST(std::abs(losses[step] - ref_losses[step]) / ref_losses[step] < loss_tol,
               where << ": step " << step << ": " << losses[step] << " vs " << ref_losses[step]);
}

}  // namespace turbine::testing
