// The image classifiers of lib/nn/vision.hpp against PyTorch
// (tests/golden/vision.h5 from tools/make-golden-vision): an MLP, the CNN and
// ResNet-8 with BatchNorm2d and GroupNorm, a two-block ViT, on every test device: logits and
// loss within 1e-5, every gradient within 1e-4 (normalized error), BatchNorm's
// running statistics after the training forward, and the eval-mode logits.
// Also the configuration's errors.
#define BOOST_TEST_MODULE vision
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <set>

#include "autograd/functions.hpp"
#include "autograd/tape.hpp"
#include "nn/vision.hpp"
#include "tensor/hdf5.hpp"
#include "test_util.hpp"

using namespace turbine;
using namespace turbine::testing;

namespace {

// The configurations tools/make-golden-vision builds.
nn::VisionConfig golden_config(const std::string& name) {
  nn::VisionConfig c;
  c.channels = 1;
  c.height = c.width = 16;
  c.num_classes = 10;
  if (name == "mlp") {
    c.arch = "mlp";
    c.hidden = {32, 16};
  } else if (name == "cnn") {
    c.arch = "cnn";
    c.conv_channels = {4, 8};
    c.hidden = {16};
  } else if (name == "vit") {
    c.arch = "vit";
    c.patch_size = 4;
    c.embed_dim = 16;
    c.heads = 2;
    c.layers = 2;
  } else {
    c.arch = "resnet";
    c.depth = 8;
    c.width_base = 4;
    c.norm = name == "resnet_batch" ? "batch" : "group";
    c.norm_groups = 2;
  }
  return c;
}

void check_model(const H5File& g, const std::string& name, Device device) {
  BOOST_TEST_CONTEXT(name << " on " << device.str()) {
    nn::ImageClassifier model(golden_config(name), device);
    nn::ParameterList params = model.parameters();
    // The same names as PyTorch's state_dict, every one loaded.
    std::set<std::string> ours, theirs;
    for (const nn::Parameter& p : params) ours.insert(p.name);
    for (const std::string& key : g.list(name + "/params")) theirs.insert(key);
    BOOST_TEST_REQUIRE(ours == theirs);
    for (nn::Parameter& p : params)
      p.tensor.copy_from(g.read(name + "/params/" + p.name).to(device));

    const Tensor x = g.read("x").to(device), labels = g.read("labels").to(DType::i64).to(device);
    const Tensor logits = model.forward(x, true);
    const Tensor loss = ag::cross_entropy(logits, labels);
    BOOST_TEST(normalized_error(logits, g.read(name + "/logits")) < 1e-5);
    BOOST_TEST(std::abs(loss.to(Device::cpu()).item() - g.read(name + "/loss").item()) < 1e-5);
    autograd::backward(loss);
    for (const nn::Parameter& p : params)
      BOOST_TEST(normalized_error(p.tensor.grad(), g.read(name + "/grads/" + p.name)) < 1e-4,
                 p.name);
    for (const nn::Parameter& b : model.buffers())
      BOOST_TEST(normalized_error(b.tensor, g.read(name + "/buffers/" + b.name)) < 1e-5, b.name);
    BOOST_TEST(normalized_error(model.forward(x, false), g.read(name + "/logits_eval")) < 1e-5);
  }
}

}  // namespace

BOOST_AUTO_TEST_CASE(classifiers_equal_pytorch) {
  const H5File g(golden("vision.h5"), H5File::Mode::read);
  for (const Device device : test_devices())
    for (const std::string name : {"mlp", "cnn", "resnet_batch", "resnet_group", "vit"})
      check_model(g, name, device);
}

BOOST_AUTO_TEST_CASE(bad_configurations_are_refused) {
  nn::VisionConfig c;
  c.arch = "transformer";
  BOOST_TEST(contains(error_of([&] { c.validate(); }), "mlp, cnn, resnet or vit"));
  c.arch = "vit";
  c.patch_size = 5;
  BOOST_TEST(contains(error_of([&] { c.validate(); }), "does not divide the 28 x 28 images"));
  c.patch_size = 7;
  c.heads = 3;
  BOOST_TEST(contains(error_of([&] { c.validate(); }), "does not divide model.embed_dim 64"));
  c = {};
  BOOST_TEST(contains(error_of([&] {
                        nn::ImageClassifier cnn(c);
                        cnn.features(Tensor::zeros({1, 1, 28, 28}));
                      }),
                      "not a cnn"));
  c = {};
  c.arch = "resnet";
  c.depth = 10;
  BOOST_TEST(contains(error_of([&] { c.validate(); }), "6n + 2"));
  c.depth = 20;
  c.norm = "group";
  c.norm_groups = 3;
  BOOST_TEST(contains(error_of([&] { c.validate(); }), "does not divide"));
  c = {};
  c.conv_channels = {8, 8, 8, 8, 8};
  BOOST_TEST(contains(error_of([&] { c.validate(); }), "leave nothing"));
  c = {};
  nn::ImageClassifier model(c);
  BOOST_TEST(contains(error_of([&] {
                        model.forward(Tensor::zeros({2, 3, 28, 28}), false);
                      }),
                      "(N, 1, 28, 28)"));
}

BOOST_AUTO_TEST_CASE(parameter_counts) {
  nn::VisionConfig c;  // the default CNN: 32 and 64 5x5 channels, 128 hidden
  BOOST_TEST(c.parameter_count() == 832 + 51264 + 3136 * 128 + 128 + 1290);
  c.arch = "resnet";
  c.depth = 20;
  const int64_t resnet20 = c.parameter_count();
  BOOST_TEST(resnet20 > 260000);  // ResNet-20 on CIFAR: 0.27M
  BOOST_TEST(resnet20 < 280000);
}

BOOST_AUTO_TEST_CASE(vit_features_and_size) {
  nn::VisionConfig c;  // 28 x 28 in 7 x 7 patches: 16 tokens of 64
  c.arch = "vit";
  const int64_t E = 64, P = 16,
                block = 2 * 2 * E + (E * 3 * E + 3 * E) + (E * E + E) + (E * 4 * E + 4 * E) +
                        (4 * E * E + E);
  BOOST_TEST(c.parameter_count() == (49 * E + E) + P * E + 2 * block + 2 * E + (E * 10 + 10));
  nn::ImageClassifier model(c);
  const Tensor x = Tensor::randn({3, 1, 28, 28}, 1, 1);
  const Tensor f = model.features(x);
  BOOST_TEST(f.shape() == (Shape{3, P, E}));
  BOOST_TEST(model.forward(x, false).shape() == (Shape{3, 10}));
  const double per_block =
      2.0 * P * E * 3 * E + 4.0 * P * P * E + 2.0 * P * E * E + 4.0 * P * E * 4 * E;
  BOOST_TEST(c.forward_flops() == 2.0 * P * 49 * E + 2 * per_block + 2.0 * E * 10);
}

BOOST_AUTO_TEST_CASE(forward_flops_count_the_products) {
  nn::VisionConfig c;  // cnn: 28x28x1 -> 32 (5x5) -> pool -> 64 (5x5) -> pool -> 128 -> 10
  const double expected = 2.0 * 1 * 32 * 25 * 28 * 28 + 2.0 * 32 * 64 * 25 * 14 * 14 +
                          2.0 * 3136 * 128 + 2.0 * 128 * 10;
  BOOST_TEST(c.forward_flops() == expected);
  c.arch = "mlp";
  c.hidden = {100};
  BOOST_TEST(c.forward_flops() == 2.0 * 784 * 100 + 2.0 * 100 * 10);
}
