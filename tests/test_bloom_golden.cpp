// BLOOM against the PyTorch reference (tools/make-golden-bloom writes
// tests/golden/bloom_tiny.h5 from tools/bloom_ref.py, a transcription of
// Hugging Face's modeling_bloom): logits, loss, every gradient, and ten
// AdamW steps with warmup + cosine and gradient clipping.
#define BOOST_TEST_MODULE bloom_golden
#include <boost/test/unit_test.hpp>

#include <cstdlib>

#include "autograd/tape.hpp"
#include "grad_check.hpp"
#include "tensor/hdf5.hpp"
#include "nn/bloom.hpp"
#include "optim/adamw.hpp"
#include "optim/schedule.hpp"

using namespace turbine;
using testing::norm_error;

namespace {

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

  nn::Bloom model() const {
    nn::Bloom m(config, 1);
    m.load_state(params);
    return m;
  }
};

}  // namespace

BOOST_AUTO_TEST_CASE(logits_loss_and_gradients_match_pytorch) {
  Golden g;
  BOOST_TEST(g.config.n_head == 6);  // not a power of two: ALiBi's extra-slope path
  nn::Bloom model = g.model();
  BOOST_TEST(model.parameters().size() == g.params.size());

  const Tensor logits = model.logits(g.ids);
  autograd::clear_tape();
  const double logits_err =
      norm_error(logits.to_vector<float>(), g.file.read("logits").to_vector<float>());
  BOOST_TEST_MESSAGE("logits normalized error " << logits_err);
  BOOST_TEST(logits_err < 1e-5);

  const Tensor loss = model.loss(g.ids, g.targets);
  const float ref_loss = g.file.read("loss").to_vector<float>()[0];
  BOOST_TEST_MESSAGE("loss " << loss.item() << " reference " << ref_loss);
  BOOST_TEST(std::abs(loss.item() - ref_loss) / std::abs(ref_loss) < 1e-5);

  autograd::backward(loss);
  for (const nn::Parameter& p : model.parameters()) {
    const double err = norm_error(p.tensor.grad().to_vector<float>(),
                                  g.file.read("grads/" + p.name).to_vector<float>());
    BOOST_TEST_MESSAGE("grad " << p.name << " normalized error " << err);
    BOOST_TEST(err < 1e-4, p.name << " gradient error " << err);
  }
}

BOOST_AUTO_TEST_CASE(ten_adamw_steps_match_pytorch) {
  Golden g;
  nn::Bloom model = g.model();
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
    const Tensor loss = model.loss(g.ids, g.targets);
    losses.push_back(loss.item());
    autograd::backward(loss);
    const double norm = optim::clip_grad_norm(model.parameters(), clip);
    BOOST_TEST(std::abs(norm - ref_norms[step]) / ref_norms[step] < 1e-4);
    const double lr = schedule.at(step);
    BOOST_TEST(std::abs(lr - ref_lrs[step]) / ref_lrs[step] < 1e-6);
    opt.step(static_cast<float>(lr));
    opt.zero_grad();
    BOOST_TEST_MESSAGE("step " << step << " loss " << losses.back() << " reference "
                               << ref_losses[step]);
  }
  for (int step = 0; step < 10; ++step)
    BOOST_TEST(std::abs(losses[step] - ref_losses[step]) / ref_losses[step] < 1e-5,
               "step " << step << ": " << losses[step] << " vs " << ref_losses[step]);
}
