// Activation checkpointing and the tiled LM-head loss against the plain
// model: the same loss and gradients (1e-6), and a lower peak of the
// tensor allocator over a forward and backward.
#define BOOST_TEST_MODULE activation_memory
#include <boost/test/unit_test.hpp>

#include "autograd/checkpoint.hpp"
#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "nn/bloom.hpp"
#include "test_util.hpp"

using namespace turbine;

namespace {

nn::BloomConfig config() {
  nn::BloomConfig c;
  c.vocab_size = 2048;
  c.hidden_size = 32;
  c.n_head = 4;
  c.n_layer = 6;
  c.hidden_dropout = 0.1f;  // recomputation must draw the same masks
  return c;
}

struct Run {
  double loss = 0;
  std::vector<Tensor> grads;
  int64_t peak_bytes = 0;  // over forward and backward, above what was live before
};

Run run(const nn::ActivationCheckpointing& checkpointing, int64_t tile_tokens,
        DType activations = DType::f32) {
  nn::Bloom model(config(), 9);
  model.set_activation_dtype(activations);
  model.set_activation_checkpointing(checkpointing);
  model.set_loss_tile_tokens(tile_tokens);
  model.set_dropout_step(3);
  const int64_t batch = 2, seq = 96;
  const Tensor ids = turbine::testing::random_ids(batch, seq, config().vocab_size, 17, 4);
  const Tensor targets = turbine::testing::random_ids(batch, seq, config().vocab_size, 17, 5);
  const int64_t live = memory_stats(Device::cpu()).current_bytes;
  reset_peak_memory(Device::cpu());
  Run r;
  const Tensor loss = model.loss(ids, targets);
  autograd::backward(loss);
  r.peak_bytes = memory_stats(Device::cpu()).peak_bytes - live;
  r.loss = loss.item();
  for (const nn::Parameter& p : model.parameters()) r.grads.push_back(p.tensor.grad().clone());
  return r;
}

void check_same(const Run& a, const Run& plain) {
  BOOST_TEST(std::abs(a.loss - plain.loss) <= 1e-6 * plain.loss);
  BOOST_REQUIRE(a.grads.size() == plain.grads.size());
  for (size_t i = 0; i < a.grads.size(); ++i)
    BOOST_TEST(turbine::testing::normalized_error(a.grads[i], plain.grads[i]) < 1e-6, "grad " << i);
}

}  // namespace

BOOST_AUTO_TEST_CASE(tiled_loss_gives_the_same_loss_and_gradients_in_less_memory) {
  const Run plain = run({}, 0);
  const Run whole = run({}, 1 << 20);  // one tile over every token: the plain path, bit for bit
  BOOST_TEST(whole.loss == plain.loss);
  const Run tiled = run({}, 16);
  check_same(tiled, plain);
  // The (192 x 2048) logits and their gradient no longer exist whole.
  BOOST_TEST(tiled.peak_bytes < plain.peak_bytes - 2 * 192 * 2048 * 4 * 3 / 4,
             tiled.peak_bytes << " vs " << plain.peak_bytes);
}

BOOST_AUTO_TEST_CASE(activation_checkpointing_gives_the_same_loss_and_gradients_in_less_memory) {
  const Run plain = run({}, 0);
  const Run each = run({true, 0, false}, 0);  // one checkpoint per layer
  check_same(each, plain);
  const Run pairs = run({true, 3, false}, 0);  // three chunks of two layers
  check_same(pairs, plain);
  const Run both = run({true, 0, false}, 16);
  check_same(both, plain);
  BOOST_TEST(each.peak_bytes < plain.peak_bytes, each.peak_bytes << " vs " << plain.peak_bytes);
  BOOST_TEST(pairs.peak_bytes < plain.peak_bytes);
  BOOST_TEST(both.peak_bytes < each.peak_bytes);
  BOOST_TEST_MESSAGE("peak bytes: plain " << plain.peak_bytes << ", checkpointed "
                                          << each.peak_bytes << ", in pairs " << pairs.peak_bytes
                                          << ", checkpointed + tiled " << both.peak_bytes);
}

BOOST_AUTO_TEST_CASE(bf16_activations_keep_about_half_the_bytes) {
  const Run plain = run({}, 0);
  const Run half = run({}, 0, DType::bf16);
  BOOST_TEST(std::abs(half.loss - plain.loss) <= 1e-3 * plain.loss);
  BOOST_TEST_MESSAGE("peak bytes: f32 activations " << plain.peak_bytes << ", bf16 "
                                                    << half.peak_bytes);
  // Everything backward keeps is 16-bit; the f32 parameter gradients and the
  // CPU's f32 scratch of one kernel at a time are not.
  BOOST_TEST(half.peak_bytes < plain.peak_bytes * 6 / 10,
             half.peak_bytes << " vs " << plain.peak_bytes);
}

BOOST_AUTO_TEST_CASE(checkpoint_adds_to_an_input_gradient_and_skips_recording_without_grad) {
  Tensor x = Tensor::randn({3, 4}, 1, 0);
  x.set_requires_grad(true);
  Tensor w = Tensor::randn({4, 4}, 1, 1);
  w.set_requires_grad(true);
  const auto segment = [&w](const Tensor& in) { return ag::gelu(ag::linear(in, w, Tensor())); };
  // x feeds the checkpoint and a plain branch: both gradients add up.
  const Tensor y = ag::add(autograd::checkpoint(segment, x, {&w}), x);
  autograd::backward(ag::sum(y));
  const Tensor dx = x.grad().clone(), dw = w.grad().clone();
  Tensor x2 = x.clone(), w2 = w.clone();
  x2.set_requires_grad(true);
  w2.set_requires_grad(true);
  autograd::backward(ag::sum(ag::add(ag::gelu(ag::linear(x2, w2, Tensor())), x2)));
  BOOST_TEST(turbine::testing::normalized_error(dx, x2.grad()) < 1e-7);
  BOOST_TEST(turbine::testing::normalized_error(dw, w2.grad()) < 1e-7);
  BOOST_TEST(autograd::tape_size() == 0u);
  autograd::NoGradGuard no_grad;
  autograd::checkpoint(segment, x, {&w});
  BOOST_TEST(autograd::tape_size() == 0u);
}
